"""Once-only state for the micro-batch path: one row per lead and side effect.

The per-lead flow keeps its once-only record in Prefect's result storage (a cached
task per side effect); at volume that is three files per lead. The batch path keeps
it here instead, in leadflow's own database, one row per (side effect, where it
lands, lead):

- `claim` takes the rows for a batch before the vendor is called, in one
  transaction: a row nobody holds, a row whose earlier attempt failed, or a claim
  older than `stale_after` (its process died) is taken; a row done, or claimed by a
  live attempt, is not. The caller calls the vendor for what it took only.
- `finish` marks what it took done or failed after the call.

A retried batch (a task retry, a rerun of the file, another process on the same
file) therefore repeats nothing that finished, and retries exactly what failed. The
adapters still receive the per-lead key and enforce it themselves, which covers a
crash between the vendor's answer and `finish`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, String, Table, and_, or_, select, update

from leadflow.db import get_engine, insert_ignoring_duplicates, serialise
from leadflow.schema import metadata

CLAIMED, DONE, FAILED = "claimed", "done", "failed"


side_effects_done = Table(
    "side_effects_done",
    metadata,
    Column("effect", String, primary_key=True),
    Column("scope", String, primary_key=True),
    Column("lead_id", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("claim", String, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("detail", String),
)

# SQLite allows 32,766 bound parameters per statement; keep well under it.
_CHUNK = 500


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class OnceStore:
    """The `side_effects_done` table in the leadflow database."""

    def __init__(self, database_url: str, *, stale_after: timedelta = timedelta(minutes=30)):
        self.database_url = database_url
        self.stale_after = stale_after

    async def claim(self, effect: str, scope: str, lead_ids: Sequence[str]) -> tuple[str, set[str]]:
        """Take the rows of `lead_ids` for this side effect. Returns the claim token
        and the ids taken: the caller does the side effect for those only."""
        token = uuid.uuid4().hex
        if not lead_ids:
            return token, set()
        engine = get_engine(self.database_url)
        now = datetime.now(UTC)
        table = side_effects_done
        async with engine.begin() as connection:
            await serialise(connection, "leadflow-once")
            rows = [
                {
                    "effect": effect,
                    "scope": scope,
                    "lead_id": lead_id,
                    "status": CLAIMED,
                    "claim": token,
                    "updated_at": now,
                }
                for lead_id in lead_ids
            ]
            await connection.execute(
                insert_ignoring_duplicates(engine, table, ["effect", "scope", "lead_id"]), rows
            )
            taken: set[str] = set()
            for chunk in _chunks(list(lead_ids)):
                mine = and_(
                    table.c.effect == effect, table.c.scope == scope, table.c.lead_id.in_(chunk)
                )
                await connection.execute(
                    update(table)
                    .where(
                        mine,
                        or_(
                            table.c.status == FAILED,
                            and_(
                                table.c.status == CLAIMED,
                                table.c.updated_at < now - self.stale_after,
                            ),
                        ),
                    )
                    .values(status=CLAIMED, claim=token, updated_at=now)
                )
                result = await connection.execute(
                    select(table.c.lead_id).where(
                        mine, table.c.claim == token, table.c.status == CLAIMED
                    )
                )
                taken.update(result.scalars())
        return token, taken

    async def finish(
        self,
        effect: str,
        scope: str,
        token: str,
        *,
        done: Iterable[str] = (),
        failed: dict[str, str] | None = None,
    ) -> None:
        """Mark this claim's rows done, or failed with a reason (retried next time)."""
        done, failed = list(done), failed or {}
        if not done and not failed:
            return
        engine = get_engine(self.database_url)
        table = side_effects_done
        now = datetime.now(UTC)
        ours = and_(table.c.effect == effect, table.c.scope == scope, table.c.claim == token)
        async with engine.begin() as connection:
            for chunk in _chunks(done):
                await connection.execute(
                    update(table)
                    .where(ours, table.c.lead_id.in_(chunk))
                    .values(status=DONE, updated_at=now)
                )
            for lead_id, reason in failed.items():
                await connection.execute(
                    update(table)
                    .where(ours, table.c.lead_id == lead_id)
                    .values(status=FAILED, updated_at=now, detail=reason[:500])
                )

    async def status(self, effect: str, scope: str, lead_id: str) -> str | None:
        engine = get_engine(self.database_url)
        table = side_effects_done
        async with engine.connect() as connection:
            return (
                await connection.execute(
                    select(table.c.status).where(
                        table.c.effect == effect, table.c.scope == scope, table.c.lead_id == lead_id
                    )
                )
            ).scalar_one_or_none()
