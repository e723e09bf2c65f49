"""The adapter boundary: one small interface per kind of integration.

Each interface has one or two async methods for a single lead and a bulk variant
beside it. The bulk variant's default loops over the single one concurrently;
vendors with a bulk endpoint override it (the micro-batch path calls the bulk
methods). Side-effecting methods take an `idempotency_key`, one per lead and side
effect, that the adapter passes on to the vendor or enforces itself, so a retried
task or a repeated run does the side effect once.

`side_effects` marks the kinds shadow mode must replace with a recorder.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel

from leadflow.intake import RawRecord
from leadflow.models import CrmMatch, Decision, Lead, StepTiming
from leadflow.ports import LeadScorer

if TYPE_CHECKING:
    from leadflow.settings import AdapterSettings, ScorerSettings, Settings
    from leadflow.shadow_settings import ShadowSettings

S = TypeVar("S", bound="AdapterSettings | None")
"""An adapter's own settings: its `settings_class`, or None for an adapter without one."""
SS = TypeVar("SS", bound="ScorerSettings")
"""A scorer's own settings: ScorerSettings, or a subclass with settings of its own."""


class RunAlert(BaseModel):
    """A flow run that ended Failed, for the team to be told about (flows/alerts.py)."""

    flow: str
    run_name: str
    run_id: str
    message: str
    url: str | None = None

    @property
    def text(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"leadflow run {self.flow}/{self.run_name} failed: {self.message}{where}"


class SlaNotice(BaseModel):
    """One step of a lead's SLA to tell someone about (leadflow.sla, flows/sla.py):
    `reminder` to the rep who has not touched the lead by its deadline, `reassigned` to
    the rep who has it now, `escalated` to the team's manager. `reason` says why, in
    words; `rep` holds the lead now, `previous_rep` held it before a reassignment."""

    kind: Literal["reminder", "reassigned", "escalated"]
    to: str
    lead_id: str
    email: str
    who: str
    tier: str
    due_at: datetime
    rep: str
    previous_rep: str | None = None
    reason: str

    @property
    def title(self) -> str:
        """A short heading (an email's subject, a chat message's first line)."""
        heading = {
            "reminder": "SLA reminder",
            "reassigned": "Lead reassigned to you",
            "escalated": "SLA missed",
        }[self.kind]
        return f"{heading}: {self.who}"

    @property
    def text(self) -> str:
        """The message as plain text (the terminal line, a chat message's body)."""
        due = f"{self.due_at:%Y-%m-%d %H:%M} UTC"
        if self.kind == "reminder":
            return (
                f"SLA reminder for {self.rep}: {self.who} ({self.tier}, due {due}): {self.reason}"
            )
        if self.kind == "reassigned":
            return (
                f"{self.who} ({self.tier}, due {due}) is now {self.rep}'s, taken from "
                f"{self.previous_rep}: {self.reason}"
            )
        moved = (
            f"reassigned from {self.previous_rep} to {self.rep}"
            if self.previous_rep and self.previous_rep != self.rep
            else f"still with {self.rep}: nobody else could take it"
        )
        return f"SLA missed: {self.who} ({self.tier}, due {due}) {moved}; {self.reason}"


class LeadEvent(BaseModel):
    """What the event sink stores for reporting: one row per processed lead."""

    event_id: str
    type: str = "lead.processed"
    lead_id: str
    occurred_at: datetime
    decision: Decision


class Adapter(ABC, Generic[S]):
    """Shared lifecycle of every adapter. Subclasses set `kind` through their interface
    and `name` themselves; the registry keys them by the pair.

    Generic over the adapter's own settings. An adapter with settings of its own
    declares their class twice, as the type parameter and in `settings_class` (an
    `AdapterSettings` subclass with its `LEADFLOW_<NAME>_` prefix):

        class AcmeCRM(CRM[AcmeSettings]):
            settings_class = AcmeSettings

    and one without says so: `class MemoryCRM(CRM[None])`. The wiring
    (leadflow.integrations.wiring) loads and validates the settings once and passes
    the instance to `from_settings`, so a wrong value is reported naming its variable
    and no adapter reads the environment itself."""

    kind: ClassVar[str]
    name: ClassVar[str]
    side_effects: ClassVar[bool] = False
    # not a ClassVar only because a ClassVar cannot name a type parameter
    settings_class: type[S] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, own: S) -> Self:
        """Build from leadflow's settings and the adapter's own (an instance of
        `settings_class`, None without one). Every adapter is built through this one
        signature. No I/O here: connections open on first use. An adapter that calls
        HTTP also takes `transport=` in its constructor, for tests to inject an `httpx`
        transport."""
        return cls()

    @property
    def once_scope(self) -> str:
        """Where this adapter's side effects land, for once-only keys: the same lead
        sent to another CRM (or another local database) is a new side effect."""
        return f"{self.kind}.{self.name}"

    @property
    def limits_vendor(self) -> str:
        """Whose limits a call to this adapter holds (`leadflow.flows.limits`): its own
        name; an adapter that reads through another names that one's."""
        return self.name

    async def aclose(self) -> None:
        """Release connections. Called once when the run's adapters are closed."""

    async def probe(self) -> str:
        """One harmless read proving the configuration works, for `leadflow check
        --live`; returns what it saw. Vendor adapters override it."""
        return "local: nothing to call"


class LeadSource(Adapter[S]):
    """A polled source that remembers where it stopped (a watermark, a cursor).

    The commit protocol, so that no lead is lost between the source and leadflow:

    - `records()` yields the records since the saved position, in order; where it
      has got to moves in memory only;
    - `commit()` saves the position reached by the records yielded so far. The
      caller calls it once every one of them is accepted (written to leadflow's
      inbox, or set aside in the quarantine), never before;
    - when `records()` raises (a page answered 503, a bad page), what it yielded
      before the failure is still committable: the caller accepts those records and
      commits, and the next poll starts again at the page that failed; it is
      retried, never skipped. A poll that dies before its commit leaves the saved
      position where it was: the next poll reads those records again, which the
      inbox and the once-only keys make harmless.
    """

    kind = "source"

    @abstractmethod
    def records(self) -> AsyncIterator[RawRecord]:
        """Yield raw records in order, from the position saved by the last commit."""

    async def commit(self) -> None:
        """Save the position reached by the records yielded so far (see the class)."""


class CRM(Adapter[S]):
    kind = "crm"
    side_effects = True
    # Whether `first_touch` can tell: the SLA watcher watches nothing with a CRM that
    # cannot (it would remind and escalate every lead).
    reports_first_touch: ClassVar[bool] = False

    @abstractmethod
    async def look_up(self, lead: Lead) -> CrmMatch:
        """The existing contact and account for the lead, with owners and enrichment."""

    @abstractmethod
    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        """Create or update the lead's contact; returns the CRM's record id."""

    async def first_touch(
        self, lead: Lead, match: CrmMatch | None, *, since: datetime
    ) -> datetime | None:
        """When the CRM shows the lead was first touched (a call, a meeting, a sales
        email logged against the contact) at or after `since`, the instant it was
        assigned; None when it shows none. Read from the vendor's documented activity
        fields; a field that holds a date without a time counts a touch on `since`'s
        day or later, so a rep who called is not escalated for the vendor's rounding.
        `match` is the look-up's answer when the lead was decided (a new contact has
        none: find it by the lead's email). The default: None, with
        `reports_first_touch` False (cannot tell)."""
        return None

    async def look_up_many(self, leads: Sequence[Lead]) -> list[CrmMatch]:
        return list(await asyncio.gather(*(self.look_up(lead) for lead in leads)))

    async def upsert_many(
        self, items: Sequence[tuple[Lead, Decision, str]]
    ) -> Sequence[str | BaseException]:
        """Bulk upsert of (lead, decision, idempotency_key) triples. The bulk contract
        (flows/engine.py relies on it): one answer per input, in input order, the
        CRM's record id, or an exception instance for an input the vendor did not
        confirm (saying why), so only that lead is retried or failed. Raising fails
        the whole call (the engine then tries the items one by one)."""
        return list(
            await asyncio.gather(
                *(
                    self.upsert(lead, decision, idempotency_key=key)
                    for lead, decision, key in items
                ),
                return_exceptions=True,
            )
        )


def touched_since(values: Sequence[Any], since: datetime) -> datetime | None:
    """The earliest of a vendor's activity values (ISO 8601 text, Unix milliseconds,
    or a date without a time) at or after `since`; None when none is. A date without a
    time counts when it is `since`'s day (UTC) or later, and is answered as the later
    of its midnight and `since`: a rep who called that day is not escalated for the
    vendor's rounding."""
    from datetime import UTC, date

    from leadflow.values import parse_datetime

    found = []
    for value in values:
        if value in (None, ""):
            continue
        try:
            moment = parse_datetime(value)
        except ValueError:
            continue
        day_only = isinstance(value, date) and not isinstance(value, datetime)
        if isinstance(value, str) and len(value.strip()) == 10:  # 2026-12-05
            day_only = True
        if day_only:
            if moment.date() >= since.astimezone(UTC).date():
                found.append(max(moment, since))
        elif moment >= since:
            found.append(moment)
    return min(found) if found else None


def one_answer(answers: Sequence[str | BaseException]) -> str:
    """The answer of a bulk call made for one item: its value, or its error raised."""
    (answer,) = answers
    if isinstance(answer, BaseException):
        raise answer
    return answer


class Notifier(Adapter[S]):
    kind = "notifier"
    side_effects = True

    @abstractmethod
    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        """Tell the assigned rep or team about the lead."""

    async def alert(self, alert: RunAlert, *, idempotency_key: str) -> None:
        """Tell the team a run failed, once per key. The default logs it at error level;
        notifiers that can reach people override it."""
        from leadflow.logging import get_logger

        get_logger(__name__).error("run failed", alert=alert.text, key=idempotency_key)

    async def sla_notice(self, notice: SlaNotice, *, idempotency_key: str) -> None:
        """Tell `notice.to` about a step of a lead's SLA, once per key. The default logs
        it at warning level; notifiers that can reach people override it."""
        from leadflow.logging import get_logger

        get_logger(__name__).warning(
            "sla step", kind=notice.kind, to=notice.to, text=notice.text, key=idempotency_key
        )

    def check_recipients(self, reps: Sequence[str]) -> None:
        """Called at start-up with the rules' rep ids: a notifier that needs them in a
        form (the email notifier: mailboxes) raises a SettingsError naming the rep."""

    async def notify_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> None:
        await asyncio.gather(
            *(self.notify(lead, decision, idempotency_key=key) for lead, decision, key in items)
        )


class EventSink(Adapter[S]):
    kind = "event_sink"
    side_effects = True

    @abstractmethod
    async def record(self, event: LeadEvent) -> None:
        """Store the event; an event whose `event_id` is already stored is ignored."""

    async def record_many(self, events: Sequence[LeadEvent]) -> None:
        await asyncio.gather(*(self.record(event) for event in events))


class Scorer(Adapter[SS], LeadScorer):
    """The scoring port (leadflow.ports.LeadScorer: `score`, `score_many`) as an
    adapter. The one kind that reads the rules: its own settings are a ScorerSettings
    (its `settings_class`, ScorerSettings itself without one) carrying their scoring
    part, `own.scoring`."""

    kind = "scorer"


class LegacyProcess(Adapter[S]):
    """The process a team runs today, the control of a shadow run: a script, a
    service, an automation platform, or a record of what people decided.

    Built from a target string (`--legacy KIND:TARGET`) rather than from the pipeline
    settings alone. `provides` names the Decision fields it can answer: a process only
    observed through an export may know the owner and the score but not the SLA, and
    a field it does not provide is not compared.
    """

    kind = "legacy"

    @classmethod
    def from_target(
        cls,
        target: str,
        settings: Settings,
        own: S,
        *,
        shadow: ShadowSettings,
    ) -> Self:
        """Build from the part of the spec after `KIND:`, with the adapter's own
        settings and shadow mode's (its timeout, its database). No I/O here."""
        raise NotImplementedError(f"the {cls.name} legacy adapter needs a target")

    @property
    def provides(self) -> tuple[str, ...]:
        return Decision.COMPARED_FIELDS

    @abstractmethod
    async def decide(self, record: dict[str, Any]) -> Decision:
        """What the current process decided (or decides) for one raw record."""

    async def decide_with_steps(self, record: dict[str, Any]) -> tuple[Decision, list[StepTiming]]:
        """The decision and, when the process reports them, its steps with their
        durations (for the report's timeline); by default no steps."""
        return await self.decide(record), []


__all__ = [
    "CRM",
    "KINDS",
    "Adapter",
    "EventSink",
    "LeadEvent",
    "LeadScorer",
    "LeadSource",
    "LegacyProcess",
    "Notifier",
    "RawRecord",
    "Scorer",
    "SlaNotice",
    "one_answer",
    "touched_since",
]

KINDS: dict[str, type[Adapter[Any]]] = {
    cls.kind: cls for cls in (LeadSource, CRM, Notifier, EventSink, Scorer, LegacyProcess)
}
