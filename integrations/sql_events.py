"""An event sink on the local database: one row per processed lead, for reporting.

    sqlite3 .leadflow/leadflow.db \
      "select tier, rep, count(*) from lead_events group by 1, 2"

The event id is the once-only key, so storing the same event again changes nothing.
The `lead_events` table is the sink's own (an adapter concern, not one of leadflow's
migrated tables): it is created on the sink's first write when missing.
"""

from __future__ import annotations

from typing import Self

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.db import ensure_tables, insert_ignoring_duplicates
from leadflow.integrations.base import EventSink, LeadEvent
from leadflow.settings import Settings

metadata = MetaData()

lead_events = Table(
    "lead_events",
    metadata,
    Column("event_id", String, primary_key=True),
    Column("type", String, nullable=False),
    Column("lead_id", String, nullable=False, index=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("score", Integer, nullable=False),
    Column("tier", String, nullable=False),
    Column("follow_up", String, nullable=False),
    Column("rep", String, nullable=False),
    Column("assignment_rule", String, nullable=False),
    Column("decision", JSON, nullable=False),
)


class SqlEventSink(EventSink[None]):
    name = "sqlite"

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._ready: AsyncEngine | None = None

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.database_url}"

    @classmethod
    def from_settings(cls, settings: Settings, own: None) -> Self:
        return cls(settings.database_url)

    async def _engine(self) -> AsyncEngine:
        """The sink's own table (not one of leadflow's migrated ones) is created on the
        first write of this instance; later writes skip the check."""
        if self._ready is None:
            self._ready = await ensure_tables(self.database_url, metadata)
        return self._ready

    async def record(self, event: LeadEvent) -> None:
        await self.record_many([event])

    async def record_many(self, events) -> None:
        if not events:
            return
        engine = await self._engine()
        rows = [
            {
                "event_id": event.event_id,
                "type": event.type,
                "lead_id": event.lead_id,
                "occurred_at": event.occurred_at,
                "score": event.decision.score,
                "tier": event.decision.tier,
                "follow_up": event.decision.follow_up.value,
                "rep": event.decision.rep,
                "assignment_rule": event.decision.assignment_rule,
                "decision": event.decision.model_dump(mode="json"),
            }
            for event in events
        ]
        async with engine.begin() as connection:
            await connection.execute(
                insert_ignoring_duplicates(engine, lead_events, ["event_id"]), rows
            )
