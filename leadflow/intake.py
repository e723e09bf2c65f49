"""Taking records in: validation, and the quarantine where bad records wait.

A record is set aside only when it cannot be a lead: it has no usable email (or the
source could not read it into fields at all). It is not dropped: it is stored in the
quarantine table with where it came from (file and row), the lead it seems to be, and
a reason that names the field. `leadflow quarantine list` shows them, `export` writes
them out for fixing, and `replay` sends them (or the fixed copies) through again.

Any other field that cannot be read (a date, a company size, a number, a yes/no
column a scoring rule reads, a value past a field's limit) is dropped from that lead
with a `FieldWarning` naming the row, the field and the value, and the lead goes on:
a lead without its company size is still a lead to call. A country that is not one is
kept as written, with a warning (it earns no country points and matches no
territory). The caller counts the warnings (a file run's summary) or, when it passes
no list, they are logged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import JSON, Column, DateTime, Integer, String, Table, select, update

from leadflow.db import get_engine, insert_ignoring_duplicates
from leadflow.logging import get_logger
from leadflow.models import LEAD_FIELDS, Lead
from leadflow.rules import ScoringRules
from leadflow.schema import metadata
from leadflow.validation import describe_errors, dotted, is_secret_name, shown_value
from leadflow.values import DateOrder, country_code, parse_bool, parse_number

log = get_logger(__name__)


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
    # The columns a short row lacked (a spreadsheet trims trailing empty cells): read
    # as empty, said in a warning.
    missing: list[str] = Field(default_factory=list)


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


class FieldWarning(BaseModel):
    """A field a lead went on without (`dropped`), or kept though it means nothing to
    leadflow (`kept as written`): which row, which lead, which field and value."""

    origin: str
    position: int
    lead_ref: str
    field: str
    value: str  # as shown: cut to 80 characters, hidden for a secret-like column
    problem: str
    outcome: str = "dropped, the lead goes on"

    @property
    def where(self) -> str:
        return f"{self.origin or 'record'} row {self.position}"

    @property
    def text(self) -> str:
        """One line: `leads.csv row 7 (jo@acme.test): employee_count 'lots': not a
        number or a range such as 51-200; dropped, the lead goes on`."""
        value = f" {self.value}" if self.value else ""
        return (
            f"{self.where} ({self.lead_ref}): {self.field}{value}: {self.problem}; {self.outcome}"
        )


@dataclass(frozen=True)
class Reading:
    """How a source writes the values it holds: the order of its `d/m/y` dates
    (decided per file from the column, leadflow.values.DateColumn), and which extra
    columns the scoring rules read as yes/no (`flags`) or as numbers (`numbers`), so
    that one they cannot read is dropped with a warning, not silently scored 0."""

    date_order: DateOrder | None = None
    flags: frozenset[str] = frozenset()
    numbers: frozenset[str] = frozenset()

    @classmethod
    def for_rules(cls, rules: ScoringRules, date_order: DateOrder | None = None) -> Reading:
        """The columns `rules` read as yes/no (`equals = true`) or as numbers
        (`at_least`)."""
        engagement = rules.engagement.rules
        return cls(
            date_order=date_order,
            flags=frozenset(r.attribute for r in engagement if isinstance(r.equals, bool)),
            numbers=frozenset(r.attribute for r in engagement if r.at_least is not None),
        )


_DROPS = 64  # fields dropped from one record at most before it is set aside whole


def validate_record(
    record: RawRecord, warnings: list[FieldWarning] | None = None, reading: Reading | None = None
) -> Lead | Rejection:
    """A Lead, or a Rejection naming the record and the field: only a record without
    a usable email (or one its source could not read) is set aside. Fields that
    cannot be read are dropped with a FieldWarning each, appended to `warnings`, or
    logged when no list is given (see the module docstring)."""
    if record.error:
        return _reject(record, record.error)
    reading = reading or Reading()
    data = dict(record.data)
    found: list[FieldWarning] = []
    ref = _lead_ref(data)
    _read_rule_columns(record, data, reading, found, ref)
    for _ in range(_DROPS):
        try:
            lead = Lead.from_record(data, date_order=reading.date_order)
            break
        except ValidationError as exc:
            errors = exc.errors()
            if any(_blocks_the_lead(error) for error in errors):
                reason = describe_validation_error(exc)
                if record.missing:
                    reason += f" (the row lacks {', '.join(record.missing)})"
                return _reject(record, reason)
            for error in errors:
                found.append(_drop(record, data, error, ref))
    else:  # pragma: no cover - every round drops a field; no record has this many
        return _reject(record, "too many fields that cannot be read")
    if record.missing:
        found.append(_warning(record, ref, ", ".join(record.missing), "", *_MISSING))
    if lead.country and country_code(lead.country) is None:
        found.append(
            _warning(
                record, ref, "country", shown_value(lead.country),
                "not a country leadflow knows (no country points, no territory)",
                "kept as written",
            )
        )  # fmt: skip
    if warnings is None:
        for warning in found:
            log.warning("field not read", detail=warning.text)
    else:
        warnings += found
    return lead


_MISSING = ("not in the row (a short row: the cells after its last were left out)", "read as empty")


def _blocks_the_lead(error: ErrorDetails) -> bool:
    """An error no dropped field can cure: the email's, or a record that is not an
    object at all."""
    loc = error["loc"]
    return not loc or loc[0] == "email" or not isinstance(loc[0], str)


def _read_rule_columns(
    record: RawRecord, data: dict[str, Any], reading: Reading, found: list[FieldWarning], ref: str
) -> None:
    """Drop a yes/no or numeric column a scoring rule reads when its value is neither
    (a rule would silently not match it)."""
    for key in list(data):
        name = key.strip() if isinstance(key, str) else key
        value = data[key]
        if value is None or value == "" or name not in reading.flags | reading.numbers:
            continue
        try:
            parse_bool(value) if name in reading.flags else parse_number(value)
        except ValueError as exc:
            found.append(_warning(record, ref, name, _shown(name, value), str(exc)))
            del data[key]


def _drop(record: RawRecord, data: dict[str, Any], error: ErrorDetails, ref: str) -> FieldWarning:
    """Take the field of one validation error out of `data`; the warning that says so."""
    name = str(error["loc"][0])
    message = error["msg"].removeprefix("Value error, ")
    if name == "attributes":  # one extra column too long, or all of them together
        name = _largest_attribute(data)
        value = data.pop(name, None) if name in data else _pop_nested(data, name)
        return _warning(record, ref, name, _shown(name, value), message)
    value = error.get("input")
    for key in [k for k in data if isinstance(k, str) and k.strip() == name]:
        value = data.pop(key)
    if name in ("id", "domain"):
        outcome = f"dropped, the lead goes on with the {name} its email gives"
        return _warning(record, ref, name, _shown(name, value), message, outcome)
    return _warning(record, ref, name, _shown(name, value), message)


def _largest_attribute(data: dict[str, Any]) -> str:
    extra = {k: v for k, v in data.items() if isinstance(k, str) and k.strip() not in LEAD_FIELDS}
    nested = extra.pop("attributes", None)
    if isinstance(nested, dict):
        extra = {**{str(k): v for k, v in nested.items()}, **extra}
    return max(extra, key=lambda k: len(json.dumps(extra[k], default=str)))


def _pop_nested(data: dict[str, Any], name: str) -> Any:
    nested = dict(data["attributes"])
    value = nested.pop(name)
    data["attributes"] = nested
    return value


def _shown(name: str, value: Any) -> str:
    return "(hidden)" if is_secret_name(name) else shown_value(value)


def _warning(
    record: RawRecord,
    ref: str,
    field: str,
    value: str,
    problem: str,
    outcome: str = "dropped, the lead goes on",
) -> FieldWarning:
    return FieldWarning(
        origin=record.origin,
        position=record.position,
        lead_ref=ref,
        field=field,
        value=value,
        problem=problem,
        outcome=outcome,
    )


def _lead_ref(data: dict[str, Any]) -> str:
    return str(data.get("email") or data.get("id") or "").strip() or "?"


# Derived from the email: when the email is wrong, their absence is not news.
_DERIVED = {"id", "domain"}


def describe_validation_error(exc: ValidationError) -> str:
    errors = exc.errors()
    email_bad = any(error["loc"][:1] == ("email",) for error in errors)
    shown = [
        error
        for error in errors
        if not (email_bad and error["type"] == "missing" and dotted(error["loc"]) in _DERIVED)
    ]
    return "; ".join(describe_errors(shown, name=lambda loc: dotted(loc) or "record"))


def rejection_key(record: RawRecord) -> str:
    """The quarantine key of a record: the same record set aside again is stored once."""
    text = json.dumps([record.origin, record.position, record.data], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _reject(record: RawRecord, reason: str) -> Rejection:
    return Rejection(
        key=rejection_key(record),
        origin=record.origin,
        position=record.position,
        lead_ref=_lead_ref(record.data),
        reason=reason,
        data=record.data,
    )


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
        engine = get_engine(self.database_url)
        now = datetime.now(UTC)
        rows = [{**r.model_dump(), "status": "pending", "quarantined_at": now} for r in rejections]
        async with engine.begin() as connection:
            await connection.execute(insert_ignoring_duplicates(engine, quarantine, ["key"]), rows)

    async def pending(self) -> list[Rejection]:
        engine = get_engine(self.database_url)
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
        engine = get_engine(self.database_url)
        async with engine.begin() as connection:
            await connection.execute(
                update(quarantine)
                .where(quarantine.c.key.in_(keys))
                .values(status="replayed", replayed_at=datetime.now(UTC))
            )
