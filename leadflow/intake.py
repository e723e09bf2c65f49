"""Taking records in: validation, and the quarantine where bad records wait.

A record that cannot become a Lead is not dropped: it is stored in the quarantine
table with where it came from (file and row), the lead it seems to be, and a reason
that names the field. `leadflow quarantine list` shows them, `export` writes them
out for fixing, and `replay` sends them (or the fixed copies) through again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, select, update

from leadflow.db import ensure_tables, insert_ignoring_duplicates
from leadflow.models import Lead


class RawRecord(BaseModel):
    """One record as a source read it, before validation.

    `position` is the row (CSV, counting the header as row 1) or line (JSONL) number
    and `origin` the file or source, so a set-aside record can be found again; `error`
    is set when the source could not even parse the record into fields.
    """

    origin: str = ""
    position: int = 0
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class Rejection(BaseModel):
    """A record set aside, with the reason."""

    key: str
    origin: str
    position: int
    lead_ref: str
    reason: str
    data: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.origin or 'record'} row {self.position}"


def validate_record(record: RawRecord) -> Lead | Rejection:
    """A Lead, or a Rejection naming the record and the field."""
    if record.error:
        return _reject(record, record.error)
    try:
        return Lead.from_record(record.data)
    except ValidationError as exc:
        return _reject(record, describe_validation_error(exc))


# Derived from the email: when the email is wrong, their absence is not news.
_DERIVED = {"id", "domain"}


def describe_validation_error(exc: ValidationError) -> str:
    errors = exc.errors()
    email_bad = any(error["loc"][:1] == ("email",) for error in errors)
    parts = []
    for error in errors:
        field = ".".join(str(part) for part in error["loc"]) or "record"
        if email_bad and error["type"] == "missing" and field in _DERIVED:
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            parts.append(f"{field}: required, missing")
        elif "is not an email address" in message:
            parts.append(f"{field}: {message}")
        else:
            parts.append(f"{field}: {message} (got {_shown(error.get('input'))})")
    return "; ".join(parts)


SHOWN_CHARS = 80  # of a bad value, in a reason: enough to find it, never a 50 MB cell


def _shown(value: object) -> str:
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def rejection_key(record: RawRecord) -> str:
    """The quarantine key of a record: the same record set aside again is stored once."""
    text = json.dumps([record.origin, record.position, record.data], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _reject(record: RawRecord, reason: str) -> Rejection:
    lead_ref = str(record.data.get("email") or record.data.get("id") or "").strip() or "?"
    return Rejection(
        key=rejection_key(record),
        origin=record.origin,
        position=record.position,
        lead_ref=lead_ref,
        reason=reason,
        data=record.data,
    )


metadata = MetaData()

quarantine = Table(
    "quarantine",
    metadata,
    Column("key", String, primary_key=True),
    Column("origin", String, nullable=False),
    Column("position", Integer, nullable=False),
    Column("lead_ref", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("data", JSON, nullable=False),
    Column("status", String, nullable=False, default="pending"),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True)),
)


class Quarantine:
    """The quarantine table. A record set aside twice (a rerun) is stored once."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def put(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        engine = await ensure_tables(self.database_url, metadata)
        now = datetime.now(UTC)
        rows = [{**r.model_dump(), "status": "pending", "quarantined_at": now} for r in rejections]
        async with engine.begin() as connection:
            await connection.execute(insert_ignoring_duplicates(engine, quarantine, ["key"]), rows)

    async def pending(self) -> list[Rejection]:
        engine = await ensure_tables(self.database_url, metadata)
        query = (
            select(quarantine)
            .where(quarantine.c.status == "pending")
            .order_by(quarantine.c.quarantined_at, quarantine.c.origin, quarantine.c.position)
        )
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [Rejection.model_validate(dict(row)) for row in rows]

    async def mark_replayed(self, keys: list[str]) -> None:
        if not keys:
            return
        engine = await ensure_tables(self.database_url, metadata)
        async with engine.begin() as connection:
            await connection.execute(
                update(quarantine)
                .where(quarantine.c.key.in_(keys))
                .values(status="replayed", replayed_at=datetime.now(UTC))
            )
