"""Side effects that failed after their retries, kept so they can be replayed.

A failed branch leaves its lead's other side effects done; what it needs is to be
done later, once, with the same decision. Both paths (one task per lead, and the
micro-batch path) record each failure here: the side effect, where it lands (the
adapter's scope), its once-only key, the reason, and the lead and decision it was
for. `leadflow replay` reads the failures still open and does each side effect
again under the same key, then closes it: `replayed` when it went through, `done
before` when a later run had already done it.

One row per (once-only key, scope): a side effect that fails again updates its
row (reason, time, attempts), so the table says how often each has failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, ColumnElement, DateTime, Integer, String, Table, Text, select, update

from leadflow.db import dialect_insert, get_engine
from leadflow.models import Decision, Lead
from leadflow.schema import metadata

OPEN, REPLAYED, DONE_BEFORE = "open", "replayed", "done before"
HANDED_BACK = "handed back"  # a pilot lead leadflow failed: the current process has it
REASON_LIMIT = 1000  # characters of the error kept; a vendor's body can be long

failed_side_effects = Table(
    "failed_side_effects",
    metadata,
    Column("once_key", String, primary_key=True),
    Column("scope", String, primary_key=True),
    Column("branch", String, nullable=False),
    Column("lead_id", String, nullable=False),
    Column("email", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("lead", Text, nullable=False),
    Column("decision", Text, nullable=False),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class FailedEffect:
    branch: str  # update_crm | notify_team | log_event
    once_key: str
    scope: str
    reason: str
    lead: Lead
    decision: Decision
    attempts: int = 1
    status: str = OPEN


class FailedEffects:
    """The `failed_side_effects` table in the leadflow database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def record(self, failures: Iterable[FailedEffect]) -> None:
        rows = [
            {
                "once_key": f.once_key,
                "scope": f.scope,
                "branch": f.branch,
                "lead_id": f.lead.id,
                "email": f.lead.email,
                "reason": f.reason[:REASON_LIMIT],
                "lead": f.lead.model_dump_json(),
                "decision": f.decision.model_dump_json(),
                "status": OPEN,
                "attempts": 1,
                "failed_at": datetime.now(UTC),
            }
            for f in failures
        ]
        if not rows:
            return
        engine = get_engine(self.database_url)
        insert = dialect_insert(engine, failed_side_effects)
        statement = insert.on_conflict_do_update(
            index_elements=["once_key", "scope"],
            set_={
                "reason": insert.excluded.reason,
                "failed_at": insert.excluded.failed_at,
                "status": OPEN,
                "closed_at": None,
                "attempts": failed_side_effects.c.attempts + 1,
                "lead": insert.excluded.lead,
                "decision": insert.excluded.decision,
            },
        )
        async with engine.begin() as connection:
            for row in rows:
                await connection.execute(statement, row)

    async def open(self) -> list[FailedEffect]:
        """The failures not yet replayed, oldest first."""
        return await self._select(failed_side_effects.c.status == OPEN)

    async def all(self) -> list[FailedEffect]:
        return await self._select(None)

    async def _select(self, where: ColumnElement[bool] | None) -> list[FailedEffect]:
        engine = get_engine(self.database_url)
        query = select(failed_side_effects).order_by(failed_side_effects.c.failed_at)
        if where is not None:
            query = query.where(where)
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [
            FailedEffect(
                branch=row["branch"],
                once_key=row["once_key"],
                scope=row["scope"],
                reason=row["reason"],
                lead=Lead.model_validate_json(row["lead"]),
                decision=Decision.model_validate_json(row["decision"]),
                attempts=row["attempts"],
                status=row["status"],
            )
            for row in rows
        ]

    async def hand_back(self, lead_ids: Sequence[str]) -> None:
        """Close the open failures of leads handed back to the current process (pilot
        leads leadflow failed, flows/cutover.py): the current process does what they
        were for, so `leadflow replay` must not do it again."""
        if not lead_ids:
            return
        table = failed_side_effects
        async with get_engine(self.database_url).begin() as connection:
            await connection.execute(
                update(table)
                .where(table.c.lead_id.in_(list(lead_ids)), table.c.status == OPEN)
                .values(status=HANDED_BACK, closed_at=datetime.now(UTC))
            )

    async def close(self, closed: Sequence[tuple[FailedEffect, str]]) -> None:
        """Mark failures `replayed` or `done before`."""
        if not closed:
            return
        engine = get_engine(self.database_url)
        table = failed_side_effects
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            for failure, status in closed:
                await connection.execute(
                    update(table)
                    .where(table.c.once_key == failure.once_key, table.c.scope == failure.scope)
                    .values(status=status, closed_at=now)
                )
