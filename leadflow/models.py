"""The records the pipeline passes along: a Lead in, a Decision made, a LeadOutcome out.

They are plain pydantic models with no behaviour beyond validation, so that every
adapter, flow and report speaks the same language, and so that a Decision from the
new pipeline can be compared field by field with one from the current process.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from leadflow.values import DateOrder, country_code, parse_count, parse_datetime

# A deliberately small email check: one @, a dot in the domain, no spaces. The
# vendors validate further; here we only need to reject what cannot be an address.
# An address as people type it: a local part without the characters only a quoted
# local part may hold (`,;<>()[]:"\`: a CSV cell split in the wrong place gives them
# away), and a domain of dot-separated labels ending in one of two or more characters.
_EMAIL = re.compile(r'^[^@\s,;<>()\[\]:"\\]+@(?:[\w-]+\.)+[\w-]{2,}$')

# Fields that map onto Lead attributes; everything else in a raw record lands in
# `attributes` so that engagement rules can score it.
LEAD_FIELDS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "company",
    "domain",
    "title",
    "country",
    "source",
    "employee_count",
    "created_at",
)


# Limits on what one lead may carry. CRMs cap their fields (Salesforce's Company, a
# HubSpot single-line property: 255 characters), chat blocks and events cap their
# size, so a longer value is refused at intake, naming the field, instead of being
# cut silently or refused later by one vendor after the others took it whole.
MAX_FIELD_CHARS = 255
MAX_EMAIL_CHARS = 254  # RFC 5321's longest forward path, less the brackets
MAX_ATTRIBUTE_CHARS = 10_000  # one extra column (a form's free-text message)
MAX_ATTRIBUTES_CHARS = 50_000  # every extra column together, as JSON
MAX_EMPLOYEES = 10_000_000  # more than the largest employer has


def derive_lead_id(email: str, source: str | None) -> str:
    """A stable id for a record that brings none: the same person from the same
    source is the same lead, so reruns and retries find the work already done."""
    digest = hashlib.sha256(f"{source or ''}|{email}".encode()).hexdigest()
    return f"lead_{digest[:16]}"


def person_id(email: str) -> str:
    """One id per person: the hash of the normalised email. Notifications and events
    are once per person, whatever id or source a record brings."""
    return f"person_{hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]}"


def lead_version(lead: Lead) -> str:
    """A hash of everything a lead says: a row with the same data is the same version,
    a row with new data (a later export) is a new one."""
    return hashlib.sha256(lead.model_dump_json().encode()).hexdigest()[:16]


class Lead(BaseModel):
    """A validated lead. Build one with `Lead.from_record(raw)`."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    email: str = Field(max_length=MAX_EMAIL_CHARS)
    first_name: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    last_name: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    company: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    domain: str = Field(max_length=MAX_FIELD_CHARS)
    title: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    country: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    source: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    employee_count: int | None = Field(default=None, ge=0, le=MAX_EMPLOYEES)
    created_at: datetime | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _attributes_within_limits(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_CHARS:
                raise ValueError(
                    f"column {key[:60]!r} has {len(item)} characters, "
                    f"at most {MAX_ATTRIBUTE_CHARS} allowed"
                )
        size = len(json.dumps(value, default=str))
        if size > MAX_ATTRIBUTES_CHARS:
            raise ValueError(
                f"the extra columns take {size} characters, at most {MAX_ATTRIBUTES_CHARS}"
            )
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # JSON sources send numeric ids; 42 and "42" are the same lead.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("email", mode="before")
    @classmethod
    def _normalise_email(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        email = value.strip().lower()
        if not _EMAIL.match(email):
            raise ValueError(f"{value!r} is not an email address")
        return email

    @field_validator("domain", mode="before")
    @classmethod
    def _normalise_domain(cls, value: Any) -> Any:
        return value.strip().lower().removeprefix("www.") if isinstance(value, str) else value

    @field_validator("country", mode="before")
    @classmethod
    def _normalise_country(cls, value: Any) -> Any:
        """The ISO 3166 code of a country name or code; anything else as written."""
        if not isinstance(value, str):
            return value
        return country_code(value) or value.strip()

    @field_validator("employee_count", mode="before")
    @classmethod
    def _read_count(cls, value: Any) -> Any:
        """`1,250`, `250.0` or a range (`51-200`, `10,001+`: its lower bound)."""
        return parse_count(value) if value is not None else value

    @field_validator("created_at", mode="before")
    @classmethod
    def _read_date(cls, value: Any, info: ValidationInfo) -> Any:
        """ISO 8601, US and European forms; a `01/02/2026` is read in the order the
        file's column was found to use (leadflow.values.DateColumn), else month first.
        No time zone: UTC."""
        if value is None:
            return value
        order = (info.context or {}).get("date_order")
        return parse_datetime(value, order)

    @field_validator("source", mode="before")
    @classmethod
    def _normalise_source(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @classmethod
    def from_record(cls, raw: dict[str, Any], *, date_order: DateOrder | None = None) -> Lead:
        """Validate a raw record (a CSV row, a JSON object, a webhook body).

        Empty strings count as absent, the domain defaults to the email's, the id
        defaults to `derive_lead_id`, and unknown keys become `attributes`; values are
        read as exports write them (leadflow.values), `date_order` deciding a date
        that could be either. Raises pydantic.ValidationError naming the field.
        """
        record = {k.strip(): v for k, v in raw.items() if isinstance(k, str)}
        cleaned = {k: v for k, v in record.items() if v is not None and v != ""}
        fields = {k: cleaned[k] for k in LEAD_FIELDS if k in cleaned}
        fields.update(_names_from_full_name(cleaned, fields))
        extra = {k: v for k, v in cleaned.items() if k not in LEAD_FIELDS and k != "attributes"}
        nested = cleaned.get("attributes")
        fields["attributes"] = {**extra, **(nested if isinstance(nested, dict) else {})}
        return cls.model_validate(fields, context={"date_order": date_order})

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_email(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        email = data.get("email")
        if isinstance(email, str) and "@" in email:
            data = dict(data)
            data.setdefault("domain", email.strip().lower().rsplit("@", 1)[1])
            if not data.get("id"):
                data["id"] = lead_id_of(data)
        return data


def _names_from_full_name(record: dict[str, Any], fields: dict[str, Any]) -> dict[str, str]:
    """First and last name from a `full_name` column (leadflow.columns maps `Name`,
    `Full Name`, Pipedrive's `Person - Name` to it) when the record has neither: the
    last word is the last name. The full name stays on the lead as an attribute."""
    full = record.get("full_name")
    if not isinstance(full, str) or "first_name" in fields or "last_name" in fields:
        return {}
    words = full.split()
    if len(words) < 2:
        return {"first_name": full.strip()} if words else {}
    return {"first_name": " ".join(words[:-1]), "last_name": words[-1]}


def lead_id_of(raw: dict[str, Any]) -> str | None:
    """The id a raw record will have once validated, or None if it has no usable email."""
    if raw.get("id"):
        return str(raw["id"]).strip()
    email = raw.get("email")
    if isinstance(email, str) and "@" in email:
        return derive_lead_id(email.strip().lower(), _lower(raw.get("source")))
    return None


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


class CrmMatch(BaseModel):
    """What the CRM look-up found: an existing contact and/or account, with owners."""

    contact_id: str | None = None
    contact_owner: str | None = None
    account_id: str | None = None
    account_owner: str | None = None
    enrichment: dict[str, Any] = Field(default_factory=dict)

    @property
    def owners(self) -> list[tuple[str, str]]:
        """Owners to route to, in order, with where each came from: contact, account."""
        found = [(self.contact_owner, "contact"), (self.account_owner, "account")]
        return [(owner, where) for owner, where in found if owner]


class ScoreReason(BaseModel):
    """One line of the score's arithmetic, so a rep (or a shadow report) can see why."""

    model_config = ConfigDict(frozen=True)

    group: str
    rule: str
    points: int


class Score(BaseModel):
    value: int
    reasons: list[ScoreReason] = Field(default_factory=list)


class FollowUpType(StrEnum):
    CALL = "call"
    EMAIL_SEQUENCE = "email_sequence"
    NURTURE = "nurture"
    NONE = "none"


class SkippedRep(BaseModel):
    """A rep (or a CRM owner) the waterfall passed over, and why."""

    rep: str
    reason: str
    territory: str | None = None


class RoutingFacts(BaseModel):
    """What an assignment was decided from, kept with it (`leadflow why`): the clock,
    the lead's tier and SLA, the territory and team, the round robin's weights and
    credits before and after the pick, and everyone skipped with the reason."""

    at: datetime
    tier: str | None = None
    sla_minutes: int | None = None
    territory: str | None = None
    team: str | None = None
    weights: dict[str, int] = Field(default_factory=dict)
    credits_before: dict[str, int] = Field(default_factory=dict)
    credits_after: dict[str, int] = Field(default_factory=dict)
    skipped: list[SkippedRep] = Field(default_factory=list)
    held_until: datetime | None = None
    note: str | None = None


class Assignment(BaseModel):
    rep: str
    rule: str
    facts: RoutingFacts | None = None


class Decision(BaseModel):
    """Everything the pipeline decided about one lead.

    It is the unit shadow mode compares with the current process, so every field is
    a plain value with a stable meaning: `COMPARED_FIELDS` names those a comparison
    should look at (timestamps and reasons explain, they are not the decision).
    """

    model_config = ConfigDict(frozen=True)

    COMPARED_FIELDS: ClassVar[tuple[str, ...]] = (
        "score",
        "tier",
        "follow_up",
        "sla_minutes",
        "rep",
    )

    lead_id: str
    score: int
    score_reasons: list[ScoreReason]
    tier: str
    follow_up: FollowUpType
    sla_minutes: int | None
    due_at: datetime | None
    rep: str
    assignment_rule: str
    rules_version: str


class BranchStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class BranchResult(BaseModel):
    """What one side-effect branch did for one lead."""

    status: BranchStatus
    duration_ms: float = 0.0
    error: str | None = None
    detail: str | None = None
    resent: bool = False  # sent again under its key: an earlier attempt did not finish


class StepTiming(BaseModel):
    step: str
    duration_ms: float


class LeadOutcome(BaseModel):
    """The Decision plus one result per side-effect branch."""

    lead_id: str
    decision: Decision
    branches: dict[str, BranchResult]
    steps: list[StepTiming] = Field(default_factory=list)
    email: str | None = None  # how a user finds the lead in a report

    @property
    def failed_branches(self) -> dict[str, str]:
        """{branch: reason} for every branch that failed after its retries."""
        return {
            name: result.error or "failed"
            for name, result in self.branches.items()
            if result.status is BranchStatus.FAILED
        }

    @property
    def ok(self) -> bool:
        return not self.failed_branches
