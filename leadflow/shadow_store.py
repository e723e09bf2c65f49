"""The comparison store: one row per lead per shadow (or pilot, or baseline) run, with
both sides' decisions, the per-field outcomes, errors, timings, the intended side
effects and the raw record, so runs over days accumulate and the report can show any
of it again.

SQLite by default (`LEADFLOW_SHADOW__DATABASE_URL`, a file of its own beside
leadflow's database), PostgreSQL by URL; the engine comes from leadflow.db and the
table from leadflow.schema's migrations, like every other store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    select,
)

from leadflow.compare import Comparison, Outcome
from leadflow.db import get_engine
from leadflow.models import Decision, StepTiming
from leadflow.schema import metadata

comparisons = Table(
    "shadow_comparisons",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String, nullable=False, index=True),
    Column("kind", String, nullable=False),  # shadow | baseline | pilot
    Column("legacy", String, nullable=False),  # the spec of the current process
    Column("lead_id", String, nullable=False, index=True),
    Column("email", String),
    Column("compared_at", DateTime(timezone=True), nullable=False, index=True),
    Column("outcome", String, nullable=False),
    Column("fields", JSON, nullable=False),
    Column("control", JSON),
    Column("candidate", JSON),
    Column("control_error", Text),
    Column("candidate_error", Text),
    Column("control_ms", Float),
    Column("candidate_ms", Float),
    Column("control_steps", JSON),
    Column("candidate_steps", JSON),
    Column("intended", JSON),
    Column("record", JSON),
    Column("fallback", Boolean, nullable=False, default=False),
)


class ComparisonRecord(BaseModel):
    """One stored comparison."""

    run_id: str
    kind: str = "shadow"
    legacy: str = ""
    lead_id: str
    email: str | None = None
    compared_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    comparison: Comparison
    control: Decision | None = None
    candidate: Decision | None = None
    control_error: str | None = None
    candidate_error: str | None = None
    control_ms: float | None = None
    candidate_ms: float | None = None
    control_steps: list[StepTiming] = Field(default_factory=list)
    candidate_steps: list[StepTiming] = Field(default_factory=list)
    intended: dict[str, Any] = Field(default_factory=dict)
    record: dict[str, Any] = Field(default_factory=dict)
    fallback: bool = False

    @property
    def outcome(self) -> Outcome:
        return self.comparison.outcome

    def as_row(self) -> dict[str, Any]:
        dump = self.model_dump(mode="json")
        return {
            **{k: v for k, v in dump.items() if k not in ("comparison", "compared_at")},
            "compared_at": self.compared_at,
            "outcome": self.comparison.outcome.value,
            # effects ("crm.owner", ...) share the column: their names have a dot
            "fields": {**dump["comparison"]["fields"], **dump["comparison"]["effects"]},
        }

    @classmethod
    def from_row(cls, row: Any) -> ComparisonRecord:
        data = dict(row._mapping)
        data.pop("id", None)
        outcome, both = data.pop("outcome"), data.pop("fields")
        fields = {k: v for k, v in both.items() if "." not in k}
        effects = {k: v for k, v in both.items() if "." in k}
        if data["compared_at"].tzinfo is None:  # SQLite keeps no zone; we store UTC
            data["compared_at"] = data["compared_at"].replace(tzinfo=UTC)
        data = {k: v for k, v in data.items() if v is not None}
        comparison = {"outcome": outcome, "fields": fields, "effects": effects}
        return cls.model_validate({**data, "comparison": comparison})


class ComparisonStore:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def add_many(self, records: Sequence[ComparisonRecord]) -> None:
        if not records:
            return
        engine = get_engine(self.database_url)
        async with engine.begin() as connection:
            await connection.execute(comparisons.insert(), [r.as_row() for r in records])

    async def in_window(
        self, since: datetime, until: datetime | None = None, *, kinds: Sequence[str] | None = None
    ) -> list[ComparisonRecord]:
        """Comparisons from `since` (inclusive) to `until` (exclusive), oldest first."""
        engine = get_engine(self.database_url)
        query = select(comparisons).where(comparisons.c.compared_at >= since)
        if until is not None:
            query = query.where(comparisons.c.compared_at < until)
        if kinds:
            query = query.where(comparisons.c.kind.in_(list(kinds)))
        async with engine.connect() as connection:
            rows = (await connection.execute(query.order_by(comparisons.c.id))).all()
        return [ComparisonRecord.from_row(row) for row in rows]
