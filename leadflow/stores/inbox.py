"""The inbox: leads accepted in real time, kept until the pipeline has finished them.

The webhook receiver answers 202 and a polled source moves its watermark only after
the lead is written here, so "accepted" means "kept": a receiver or worker that is
killed the moment after leaves its leads in the inbox, and the next one to start (or
the next poll) takes them and finishes them.

A row is held by the process working on it (`holder`) under a lease it renews while
it works (leadflow.stores.leases); a holder that dies stops renewing, and once the
lease has run out `take` hands the row to whoever asks next. A holder shutting down
hands its unfinished rows back at once (`release`). Finishing a lead twice is
harmless: the decisions store and the once-only store see to it that the second time
sends nothing again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, func, or_, select, update
from sqlalchemy.engine import RowMapping

from leadflow.db import get_engine, serialise
from leadflow.schema import metadata
from leadflow.stores.leases import LeaseKeeper

ACCEPTED, FINISHED, FAILED, LEFT = "accepted", "finished", "failed", "left"

lead_inbox = Table(
    "lead_inbox",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("lead_id", String, nullable=False),
    Column("origin", String, nullable=False),
    Column("position", Integer, nullable=False),
    Column("record", Text, nullable=False),
    Column("status", String, nullable=False, index=True),
    Column("holder", String),
    Column("lease_until", DateTime(timezone=True)),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("detail", Text),
)

_CHUNK = 500


@dataclass(frozen=True)
class InboxEntry:
    """One accepted record: where it came from and the record as received."""

    id: str
    lead_id: str
    origin: str
    position: int
    record: dict[str, Any]


def _entry(row: RowMapping) -> InboxEntry:
    return InboxEntry(
        id=row["id"],
        lead_id=row["lead_id"],
        origin=row["origin"],
        position=row["position"],
        record=json.loads(row["record"]),
    )


class Inbox:
    """The `lead_inbox` table. `holder` names this process's claim on the rows it
    accepts or takes; leases last `lease`."""

    def __init__(
        self, database_url: str, *, holder: str | None = None, lease: timedelta | None = None
    ) -> None:
        self.database_url = database_url
        self.holder = holder or uuid.uuid4().hex
        self.lease = lease or timedelta(seconds=20)
        self._leases = LeaseKeeper(self._renew, self.lease.total_seconds())

    async def accept(
        self, items: Sequence[tuple[str, str, int, dict[str, Any]]]
    ) -> list[InboxEntry]:
        """Keep (lead id, origin, position, record) items, held by this process; returns
        them as entries once committed."""
        now = datetime.now(UTC)
        entries = [
            InboxEntry(uuid.uuid4().hex, lead_id, origin, position, record)
            for lead_id, origin, position, record in items
        ]
        if not entries:
            return []
        rows = [
            {
                "id": e.id,
                "lead_id": e.lead_id,
                "origin": e.origin,
                "position": e.position,
                "record": json.dumps(e.record, default=str),
                "status": ACCEPTED,
                "holder": self.holder,
                "lease_until": now + self.lease,
                "accepted_at": now,
            }
            for e in entries
        ]
        async with get_engine(self.database_url).begin() as connection:
            for start in range(0, len(rows), _CHUNK):
                await connection.execute(lead_inbox.insert(), rows[start : start + _CHUNK])
        return entries

    async def take(self, limit: int = 1000) -> list[InboxEntry]:
        """Hold up to `limit` unfinished rows nobody live holds (oldest first): the
        leads of a holder that died, or was stopped before it finished them."""
        now = datetime.now(UTC)
        table = lead_inbox
        free = or_(table.c.holder.is_(None), table.c.lease_until < now)
        async with get_engine(self.database_url).begin() as connection:
            await serialise(connection, "leadflow-inbox")
            ids = (
                (
                    await connection.execute(
                        select(table.c.id)
                        .where(table.c.status == ACCEPTED, free)
                        .order_by(table.c.accepted_at)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            if not ids:
                return []
            await connection.execute(
                update(table)
                .where(table.c.id.in_(ids))
                .values(holder=self.holder, lease_until=now + self.lease)
            )
            rows = await connection.execute(
                select(table).where(table.c.id.in_(ids)).order_by(table.c.accepted_at)
            )
            return [_entry(row) for row in rows.mappings()]

    def holding(self) -> AbstractAsyncContextManager[None]:
        """Renew this process's leases on its rows while the block runs."""
        return self._leases.holding(self.holder)

    async def _renew(self, holders: Sequence[str]) -> None:
        async with get_engine(self.database_url).begin() as connection:
            await connection.execute(
                update(lead_inbox)
                .where(lead_inbox.c.holder.in_(list(holders)), lead_inbox.c.status == ACCEPTED)
                .values(lease_until=datetime.now(UTC) + self.lease)
            )

    async def finish(
        self, ids: Iterable[str], status: str = FINISHED, detail: str | None = None
    ) -> None:
        """Close rows: `finished` (every side effect done, or the lead answered from
        the decisions store), `failed` (kept for `leadflow replay`), `left` (the
        cut-over mode left it to the current process)."""
        wanted = list(ids)
        if not wanted:
            return
        now = datetime.now(UTC)
        async with get_engine(self.database_url).begin() as connection:
            for start in range(0, len(wanted), _CHUNK):
                await connection.execute(
                    update(lead_inbox)
                    .where(lead_inbox.c.id.in_(wanted[start : start + _CHUNK]))
                    .values(status=status, finished_at=now, holder=None, detail=detail)
                )

    async def release(self) -> int:
        """Hand this process's unfinished rows back at once (a clean shutdown): the
        next process to start takes them without waiting for the lease."""
        async with get_engine(self.database_url).begin() as connection:
            result = await connection.execute(
                update(lead_inbox)
                .where(lead_inbox.c.holder == self.holder, lead_inbox.c.status == ACCEPTED)
                .values(holder=None, lease_until=None)
            )
            return result.rowcount or 0

    async def counts(self) -> dict[str, int]:
        """{status: rows}."""
        async with get_engine(self.database_url).connect() as connection:
            rows = await connection.execute(
                select(lead_inbox.c.status, func.count()).group_by(lead_inbox.c.status)
            )
            return {status: count for status, count in rows}
