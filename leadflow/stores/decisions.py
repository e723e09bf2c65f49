"""The decisions store: what leadflow decided for each version of each lead.

One row per (where the side effects land, lead id, version of its data), written in
the same transaction that claims the lead's side effects (`leadflow.once`), so:

- a rerun of a lead whose side effects are all done (`done_at` set) is answered from
  here without a look-up, a decision or a task: a rerun of a finished file takes
  seconds, and the round robin is not moved again;
- a rerun of a lead that was decided but not finished (a crash, a failed side
  effect) sends the missing side effects with the decision already made, so the
  repeat is the same idempotent call, never a second rep for the same lead;
- `leadflow why`, the SLA watcher and `leadflow backtest` read the decision, the lead
  and the CRM match it was made from, for as long as the table is kept, independent of
  Prefect's run history.

A changed row is a new version, decided and sent again (the CRM is updated once per
version; notifications and events are once per person, by their keys).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import Column, DateTime, String, Table, Text, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.db import dialect_insert, get_engine
from leadflow.models import CrmMatch, Decision, Lead, lead_version
from leadflow.schema import metadata

lead_decisions = Table(
    "lead_decisions",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("scope", String, nullable=False),
    Column("lead_id", String, nullable=False, index=True),
    Column("email", String, nullable=False, index=True),
    Column("version", String, nullable=False),
    Column("lead", Text, nullable=False),
    Column("match", Text),
    Column("decision", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False, index=True),
    Column("done_at", DateTime(timezone=True)),
)

_CHUNK = 500  # keys per IN (...): well under SQLite's variable limit


class StoredDecision(BaseModel):
    """One lead version's decision as stored."""

    lead: Lead
    match: CrmMatch | None
    decision: Decision
    decided_at: datetime
    done_at: datetime | None = None

    @property
    def done(self) -> bool:
        """Every side effect of this lead version is done."""
        return self.done_at is not None


def decision_key(scope: str, lead: Lead) -> str:
    return hashlib.sha256(f"{scope}|{lead.id}|{lead_version(lead)}".encode()).hexdigest()


def _stored(row: RowMapping) -> StoredDecision:
    return StoredDecision(
        lead=Lead.model_validate_json(row["lead"]),
        match=CrmMatch.model_validate_json(row["match"]) if row["match"] else None,
        decision=Decision.model_validate_json(row["decision"]),
        decided_at=row["decided_at"],
        done_at=row["done_at"],
    )


class DecisionStore:
    """The `lead_decisions` table, for the side effects' destinations `scope`."""

    def __init__(self, database_url: str, scope: str) -> None:
        self.database_url = database_url
        self.scope = scope

    async def find(self, leads: Iterable[Lead]) -> dict[str, StoredDecision]:
        """{lead id: stored decision} for the leads whose exact version is stored."""
        keys = {decision_key(self.scope, lead): lead.id for lead in leads}
        stored = await self.by_key(keys)
        return {keys[key]: item for key, item in stored.items()}

    async def by_key(self, keys: Iterable[str]) -> dict[str, StoredDecision]:
        """{key: stored decision} for the `decision_key`s that are stored (the SLA
        watcher keeps the key of the decision it watches)."""
        wanted = sorted(set(keys))
        found: dict[str, StoredDecision] = {}
        if not wanted:
            return found
        async with get_engine(self.database_url).connect() as connection:
            for start in range(0, len(wanted), _CHUNK):
                query = select(lead_decisions).where(
                    lead_decisions.c.key.in_(wanted[start : start + _CHUNK])
                )
                for row in (await connection.execute(query)).mappings():
                    found[row["key"]] = _stored(row)
        return found

    async def add(
        self,
        items: Iterable[tuple[Lead, CrmMatch | None, Decision]],
        *,
        connection: AsyncConnection | None = None,
    ) -> None:
        """Store each (lead, match, decision); a version already stored keeps its first
        decision. `connection`: inside the caller's transaction."""
        now = datetime.now(UTC)
        rows = [
            {
                "key": decision_key(self.scope, lead),
                "scope": self.scope,
                "lead_id": lead.id,
                "email": lead.email,
                "version": lead_version(lead),
                "lead": lead.model_dump_json(),
                "match": match.model_dump_json() if match is not None else None,
                "decision": decision.model_dump_json(),
                "decided_at": now,
            }
            for lead, match, decision in items
        ]
        if not rows:
            return
        if connection is None:
            async with get_engine(self.database_url).begin() as own:
                await self._insert(own, rows)
        else:
            await self._insert(connection, rows)

    async def _insert(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, object]]
    ) -> None:
        statement = dialect_insert(connection.engine, lead_decisions).on_conflict_do_nothing(
            index_elements=["key"]
        )
        for start in range(0, len(rows), _CHUNK):
            await connection.execute(statement, rows[start : start + _CHUNK])

    async def mark_done(self, leads: Iterable[Lead]) -> None:
        """Record that every side effect of these lead versions is done."""
        keys = [decision_key(self.scope, lead) for lead in leads]
        if not keys:
            return
        now = datetime.now(UTC)
        async with get_engine(self.database_url).begin() as connection:
            for start in range(0, len(keys), _CHUNK):
                await connection.execute(
                    update(lead_decisions)
                    .where(
                        lead_decisions.c.key.in_(keys[start : start + _CHUNK]),
                        lead_decisions.c.done_at.is_(None),
                    )
                    .values(done_at=now)
                )

    async def between(self, start: datetime, end: datetime) -> AsyncIterator[StoredDecision]:
        """The decisions made in [start, end), oldest first, a page at a time."""
        query = (
            select(lead_decisions)
            .where(
                lead_decisions.c.scope == self.scope,
                lead_decisions.c.decided_at >= start,
                lead_decisions.c.decided_at < end,
            )
            .order_by(lead_decisions.c.decided_at, lead_decisions.c.key)
            .execution_options(yield_per=_CHUNK)
        )
        async with get_engine(self.database_url).connect() as connection:
            result = await connection.stream(query)
            async for row in result.mappings():
                yield _stored(row)

    async def unfinished(self, *, before: datetime) -> list[StoredDecision]:
        """Decisions made before `before` whose side effects were never all confirmed."""
        query = (
            select(lead_decisions)
            .where(
                lead_decisions.c.scope == self.scope,
                lead_decisions.c.done_at.is_(None),
                lead_decisions.c.decided_at < before,
            )
            .order_by(lead_decisions.c.decided_at)
        )
        async with get_engine(self.database_url).connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_stored(row) for row in rows]

    async def for_email(self, email: str) -> list[StoredDecision]:
        """Every stored decision for a person (any scope), newest first."""
        query = (
            select(lead_decisions)
            .where(lead_decisions.c.email == email.strip().lower())
            .order_by(lead_decisions.c.decided_at.desc())
        )
        async with get_engine(self.database_url).connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_stored(row) for row in rows]
