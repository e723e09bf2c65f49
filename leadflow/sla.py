"""SLAs that act: what to do about a lead whose deadline passed, and its history.

A lead decided with a deadline (`Decision.due_at`, the tier's `sla_minutes`) becomes
an SLA *case* when the watcher (flows/sla.py, the `watch-slas` deployment) first
sees its decision. From then on each run of the watcher asks the CRM whether anyone
touched the lead since it was assigned, and `next_action` says what follows, a pure
function of the case, the instant and that answer:

- a first touch seen: the case is closed as contacted (on time or late);
- the deadline passed without one: the rep is reminded, once;
- still none `escalate_after_minutes` (the tier's) after the reminder: the lead goes
  to the next rep who can take it (leadflow.assignment's waterfall, the late rep
  passed over) and the team's manager is told, once;
- no touch `give_up_after` after the last step: the case lapses (no longer watched),
  and so does a case whose deadline had passed that long before leadflow saw it
  (a backfill of old leads is not a morning of reminders).

Every step is a row of `sla_steps`, one per (lead, step), with when, who and why:
`leadflow why EMAIL` prints them, for as long as the table is kept. The side effects
of a step (the reminder, the new owner in the CRM, the messages) are claimed in the
once-only store (leadflow.once) under keys of their own, so a rerun or two watchers
at once send each of them once; the step's row is written after they are done.

No clock is read here: the watcher passes its `now`, tests a fixed one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, DateTime, String, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.db import dialect_insert, get_engine, insert_ignoring_duplicates
from leadflow.schema import metadata
from leadflow.stores.decisions import StoredDecision, decision_key
from leadflow.when import span

sla_cases = Table(
    "sla_cases",
    metadata,
    Column("lead_id", String, primary_key=True),
    Column("scope", String, nullable=False),
    Column("decision_key", String(64), nullable=False),
    Column("email", String, nullable=False, index=True),
    Column("tier", String, nullable=False),
    Column("rep", String, nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", String, nullable=False, index=True),
    Column("reminded_at", DateTime(timezone=True)),
    Column("escalated_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
)

sla_steps = Table(
    "sla_steps",
    metadata,
    Column("lead_id", String, primary_key=True),
    Column("step", String, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("rep", String),
    Column("told", String),
    Column("detail", Text, nullable=False),
)

# How far the watcher has read the decisions store, per scope.
sla_scans = Table(
    "sla_scans",
    metadata,
    Column("scope", String, primary_key=True),
    Column("scanned_until", DateTime(timezone=True), nullable=False),
)

# Decisions are re-read this far behind the last scan: one stored in a transaction
# that committed after the scan, with an earlier decided_at, is still seen.
SCAN_OVERLAP = timedelta(minutes=10)


class Status(StrEnum):
    WATCHING = "watching"
    REMINDED = "reminded"
    ESCALATED = "escalated"
    CONTACTED = "contacted"
    LAPSED = "lapsed"
    NOT_WATCHED = "not_watched"


OPEN = (Status.WATCHING, Status.REMINDED, Status.ESCALATED)


class Step(StrEnum):
    """A row of a lead's SLA history; each happens at most once per lead."""

    WATCHING = "watching"
    NOT_WATCHED = "not_watched"
    REMINDED = "reminded"
    REASSIGNED = "reassigned"
    MANAGER_TOLD = "manager_told"
    ESCALATED = "escalated"
    CONTACTED = "contacted"
    LAPSED = "lapsed"


class Action(StrEnum):
    """What the watcher does about a case now."""

    WAIT = "wait"
    CONTACTED = "contacted"
    REMIND = "remind"
    ESCALATE = "escalate"
    LAPSE = "lapse"


def _utc(value: datetime) -> datetime:
    """An instant in UTC (SQLite hands stored instants back without their zone)."""
    return value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC)


class SlaCase(BaseModel):
    """One lead's SLA as the watcher keeps it."""

    lead_id: str
    scope: str
    decision_key: str
    email: str
    tier: str
    rep: str
    assigned_at: datetime
    due_at: datetime
    status: Status
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    closed_at: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> SlaCase:
        values = {k: _utc(v) if isinstance(v, datetime) else v for k, v in row.items()}
        return cls.model_validate(values)

    def __repr__(self) -> str:  # what Prefect shows for a task's parameter
        return f"SlaCase({self.email}, {self.status})"


def next_action(
    case: SlaCase,
    *,
    now: datetime,
    touched_at: datetime | None,
    escalate_after: timedelta | None,
    give_up_after: timedelta,
) -> Action:
    """What to do about `case` at `now`, given the CRM's first touch since the lead was
    assigned (`touched_at`, None: none seen). Escalation comes `escalate_after` after
    the reminder (so a rep always has that long after being reminded, even when the
    watcher ran late); a case lapses `give_up_after` after its last step, unless an
    escalation is still to come."""
    if case.status not in OPEN:
        return Action.WAIT
    if touched_at is not None:
        return Action.CONTACTED
    if now < case.due_at:
        return Action.WAIT
    if case.reminded_at is None:
        return Action.REMIND
    if escalate_after is not None and case.escalated_at is None:
        return Action.ESCALATE if now >= case.reminded_at + escalate_after else Action.WAIT
    last = case.escalated_at or case.reminded_at
    return Action.LAPSE if now >= last + give_up_after else Action.WAIT


def watched(due_at: datetime, *, now: datetime, give_up_after: timedelta) -> bool:
    """Whether a newly seen lead is watched: not when its deadline passed more than
    `give_up_after` ago (old leads loaded from a file after the fact)."""
    return now < due_at + give_up_after


# --- the words ---------------------------------------------------------------------


def reminder_reason(case: SlaCase, now: datetime) -> str:
    return (
        f"no first touch in the CRM by the deadline {case.due_at:%Y-%m-%d %H:%M} UTC "
        f"(tier {case.tier}; overdue by {_span(now - case.due_at)})"
    )


def escalation_reason(case: SlaCase, escalate_after: timedelta) -> str:
    reminded = case.reminded_at or case.due_at
    return (
        f"{case.rep} made no first touch by the deadline {case.due_at:%Y-%m-%d %H:%M} UTC "
        f"nor in the {_span(escalate_after)} after the reminder "
        f"({reminded:%H:%M} UTC; tier {case.tier})"
    )


def missed(case: SlaCase) -> str:
    """Why the late rep is passed over when the lead is reassigned (kept in its facts)."""
    return f"let the SLA of {case.due_at:%Y-%m-%d %H:%M} UTC pass with no first touch"


def _span(delta: timedelta) -> str:
    """A duration as `span` words it, in seconds below a minute (a short test SLA)."""
    seconds = delta.total_seconds()
    return span(delta) if seconds >= 60 else f"{max(seconds, 0):.0f} s"


def contacted_detail(case: SlaCase, touched_at: datetime) -> str:
    when = "on time" if touched_at <= case.due_at else f"{_span(touched_at - case.due_at)} late"
    return f"first touch in the CRM at {touched_at:%Y-%m-%d %H:%M:%S} UTC ({when})"


# --- the store ---------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryLine:
    step: Step
    at: datetime
    rep: str | None
    told: str | None
    detail: str


@dataclass(frozen=True)
class Registered:
    """A case the watcher saw for the first time, and whether it is watched."""

    case: SlaCase
    watched: bool


class SlaStore:
    """The `sla_cases`, `sla_steps` and `sla_scans` tables for one scope (where the
    side effects land, as leadflow.stores.decisions keys it)."""

    def __init__(self, database_url: str, scope: str) -> None:
        self.database_url = database_url
        self.scope = scope

    async def scan_start(self, default: datetime) -> datetime:
        """Where the next scan of the decisions starts: the last one's end less the
        overlap, or `default` the first time."""
        query = select(sla_scans.c.scanned_until).where(sla_scans.c.scope == self.scope)
        async with get_engine(self.database_url).connect() as connection:
            until = (await connection.execute(query)).scalar_one_or_none()
        return _utc(until) - SCAN_OVERLAP if until is not None else default

    async def register(
        self,
        decisions: Iterable[StoredDecision],
        *,
        now: datetime,
        give_up_after: timedelta,
        scanned_until: datetime,
    ) -> list[Registered]:
        """Open a case for each decision with a deadline whose lead has none yet (a
        later version of a lead keeps its first case), record the scan, and return
        the new cases."""
        rows = {}
        for stored in decisions:
            decision = stored.decision
            if decision.due_at is None or decision.lead_id in rows:
                continue
            due = _utc(decision.due_at)
            status = (
                Status.WATCHING
                if watched(due, now=now, give_up_after=give_up_after)
                else Status.NOT_WATCHED
            )
            rows[decision.lead_id] = {
                "lead_id": decision.lead_id,
                "scope": self.scope,
                "decision_key": decision_key(self.scope, stored.lead),
                "email": stored.lead.email,
                "tier": decision.tier,
                "rep": decision.rep,
                "assigned_at": _utc(stored.decided_at),
                "due_at": due,
                "status": status,
                "closed_at": None if status is Status.WATCHING else now,
            }
        created: list[Registered] = []
        async with get_engine(self.database_url).begin() as connection:
            if rows:
                inserted = await connection.execute(
                    insert_ignoring_duplicates(connection.engine, sla_cases, ["lead_id"]).returning(
                        sla_cases.c.lead_id
                    ),
                    list(rows.values()),
                )
                for (lead_id,) in inserted:
                    case = SlaCase.of(rows[lead_id])
                    created.append(Registered(case, case.status is Status.WATCHING))
                await self._steps(connection, [_first_step(r.case, now) for r in created])
            statement = dialect_insert(connection.engine, sla_scans).values(
                scope=self.scope, scanned_until=scanned_until
            )
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["scope"], set_={"scanned_until": scanned_until}
                )
            )
        return created

    async def due(self, now: datetime) -> list[SlaCase]:
        """The open cases whose deadline has passed, oldest deadline first."""
        query = (
            select(sla_cases)
            .where(
                sla_cases.c.scope == self.scope,
                sla_cases.c.status.in_([s.value for s in OPEN]),
                sla_cases.c.due_at <= now,
            )
            .order_by(sla_cases.c.due_at, sla_cases.c.lead_id)
        )
        async with get_engine(self.database_url).connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [SlaCase.of(dict(row)) for row in rows]

    async def record(
        self,
        case: SlaCase,
        lines: Sequence[HistoryLine],
        *,
        status: Status | None = None,
        **changes: object,
    ) -> None:
        """Add history lines (each step once: a line already there is kept) and move
        the case on (`status`, `reminded_at`, `escalated_at`, `closed_at`, `rep`), in
        one transaction."""
        async with get_engine(self.database_url).begin() as connection:
            await self._steps(connection, [(case.lead_id, line) for line in lines])
            values = dict(changes)
            if status is not None:
                values["status"] = status.value
            if values:
                await connection.execute(
                    update(sla_cases).where(sla_cases.c.lead_id == case.lead_id).values(**values)
                )

    async def _steps(
        self, connection: AsyncConnection, lines: Sequence[tuple[str, HistoryLine]]
    ) -> None:
        if not lines:
            return
        await connection.execute(
            insert_ignoring_duplicates(connection.engine, sla_steps, ["lead_id", "step"]),
            [
                {
                    "lead_id": lead_id,
                    "step": line.step.value,
                    "at": line.at,
                    "rep": line.rep,
                    "told": line.told,
                    "detail": line.detail,
                }
                for lead_id, line in lines
            ],
        )

    async def steps_done(self, lead_id: str) -> dict[Step, HistoryLine]:
        return {line.step: line for line in (await history(self.database_url, [lead_id]))[lead_id]}


def _first_step(case: SlaCase, now: datetime) -> tuple[str, HistoryLine]:
    if case.status is Status.WATCHING:
        line = HistoryLine(
            Step.WATCHING,
            now,
            case.rep,
            None,
            f"deadline {case.due_at:%Y-%m-%d %H:%M} UTC (tier {case.tier})",
        )
    else:
        line = HistoryLine(
            Step.NOT_WATCHED,
            now,
            case.rep,
            None,
            f"the deadline {case.due_at:%Y-%m-%d %H:%M} UTC had passed "
            f"{span(now - case.due_at)} before the watcher saw the lead",
        )
    return case.lead_id, line


async def history(database_url: str, lead_ids: Iterable[str]) -> dict[str, list[HistoryLine]]:
    """{lead id: its SLA history, oldest first} (an empty list for a lead without)."""
    ids = sorted(set(lead_ids))
    found: dict[str, list[HistoryLine]] = {lead_id: [] for lead_id in ids}
    if not ids:
        return found
    query = select(sla_steps).where(sla_steps.c.lead_id.in_(ids))
    async with get_engine(database_url).connect() as connection:
        for row in (await connection.execute(query)).mappings():
            found[row["lead_id"]].append(
                HistoryLine(
                    Step(row["step"]), _utc(row["at"]), row["rep"], row["told"], row["detail"]
                )
            )
    order = list(Step)  # steps recorded together (an escalation's) in the order they happen
    for lines in found.values():
        lines.sort(key=lambda line: (line.at, order.index(line.step)))
    return found
