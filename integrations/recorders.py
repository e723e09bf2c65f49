"""Shadow mode's stand-ins for side-effecting adapters: they keep what leadflow
*would* have done (the CRM write, the notification, the event) and do none of it.

`shadowed(adapters, journal, scope)` replaces every adapter whose `side_effects` is
true. The CRM is special: its look-up is a read that the decision needs (the owner
of an existing contact), so the recorder passes look-ups through to the real CRM
unless told not to (`LEADFLOW_SHADOW__LOOK_UP=false`: then it answers "no match" and
no request reaches the CRM at all). Its upsert is recorded, never sent.

Each recorder's `once_scope` carries the shadow run's id, so the once-only store
never mistakes a recording for a real side effect, and every shadow run records
afresh. The recorders have bulk methods, as the real adapters do: a group's side
effects are one call each, not one per lead (a shadow run of a backlog must not cost
more than the run it judges).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from leadflow.integrations.base import CRM, EventSink, LeadEvent, Notifier
from leadflow.integrations.wiring import Adapters
from leadflow.models import CrmMatch, Decision, Lead


class Journal:
    """The intended side effects of a run, by lead: {lead_id: {effect: details}}."""

    def __init__(self) -> None:
        self.effects: dict[str, dict[str, Any]] = defaultdict(dict)

    def note(self, lead_id: str, effect: str, **details: Any) -> None:
        self.effects[lead_id][effect] = details

    def of(self, lead_id: str) -> dict[str, Any]:
        return dict(self.effects.get(lead_id, {}))

    def forget(self, lead_ids: Iterable[str]) -> None:
        """Let go of leads whose effects are stored (a backlog's journal stays small)."""
        for lead_id in lead_ids:
            self.effects.pop(lead_id, None)


class _Recorder:
    side_effects = False  # it performs none: that is the point

    def __init__(self, journal: Journal, scope: str) -> None:
        self.journal = journal
        self.scope = scope

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.recorder:{self.scope}"  # type: ignore[attr-defined]


class RecordingCRM(_Recorder, CRM[None]):
    name = "recorder"

    def __init__(self, journal: Journal, scope: str, reads: CRM | None) -> None:
        super().__init__(journal, scope)
        self.reads = reads

    @property
    def limits_vendor(self) -> str:
        """The CRM it reads through: that CRM's limits hold for its look-ups."""
        return self.reads.limits_vendor if self.reads else self.name

    async def look_up(self, lead: Lead) -> CrmMatch:
        return await self.reads.look_up(lead) if self.reads else CrmMatch()

    async def look_up_many(self, leads: Sequence[Lead]) -> list[CrmMatch]:
        """The real CRM's bulk read (one query or request for a chunk of leads)."""
        return await self.reads.look_up_many(leads) if self.reads else [CrmMatch() for _ in leads]

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        return self._note(lead, decision, idempotency_key)

    async def upsert_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> list[str]:
        return [self._note(lead, decision, key) for lead, decision, key in items]

    def _note(self, lead: Lead, decision: Decision, idempotency_key: str) -> str:
        self.journal.note(
            lead.id,
            "crm",
            email=lead.email,
            owner=decision.rep,
            tier=decision.tier,
            score=decision.score,
            idempotency_key=idempotency_key,
        )
        return "recorded, not written"


class RecordingNotifier(_Recorder, Notifier[None]):
    name = "recorder"

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        self._note(lead, decision, idempotency_key)

    async def notify_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> None:
        for lead, decision, key in items:
            self._note(lead, decision, key)

    def _note(self, lead: Lead, decision: Decision, idempotency_key: str) -> None:
        self.journal.note(
            lead.id,
            "notify",
            to=decision.rep,
            follow_up=decision.follow_up.value,
            due_at=decision.due_at.isoformat() if decision.due_at else None,
            idempotency_key=idempotency_key,
        )


class RecordingEventSink(_Recorder, EventSink[None]):
    name = "recorder"

    async def record(self, event: LeadEvent) -> None:
        self._note(event)

    async def record_many(self, events: Sequence[LeadEvent]) -> None:
        for event in events:
            self._note(event)

    def _note(self, event: LeadEvent) -> None:
        self.journal.note(event.lead_id, "event", event_id=event.event_id, type=event.type)


def shadowed(adapters: Adapters, journal: Journal, scope: str, *, look_up: bool) -> Adapters:
    """The same adapters with every side-effecting one replaced by a recorder."""
    crm, notifier, sink = adapters.crm, adapters.notifier, adapters.event_sink
    return Adapters(
        crm=RecordingCRM(journal, scope, crm if look_up else None) if crm.side_effects else crm,
        notifier=RecordingNotifier(journal, scope) if notifier.side_effects else notifier,
        event_sink=RecordingEventSink(journal, scope) if sink.side_effects else sink,
        scorer=adapters.scorer,
    )
