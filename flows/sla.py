"""`watch_slas`: leads past their deadline with no first touch, acted on once.

The `watch-slas` deployment (deployments/prefect.yaml) runs this every minute;
`leadflow watch-slas` runs it once. Each run:

1. reads the decisions stored since the last run (leadflow.stores.decisions) and opens
   an SLA case for each lead with a deadline (leadflow.sla), emitting
   `leadflow.lead.assigned`;
2. for each open case whose deadline has passed, asks the CRM for a first touch since
   the lead was assigned (`CRM.first_touch`, from the vendor's activity fields), and
   does what `leadflow.sla.next_action` says, one Prefect task run per case acted on
   (`remind ava@northwind.test`): close it as contacted, remind the rep, escalate
   (reassign through leadflow.assignment's waterfall with the late rep passed over,
   give the CRM contact its new owner, tell the new rep and the team's manager), or
   let it lapse.

Once only: every message and CRM write of a step is claimed in leadflow's once-only
store (leadflow.once) under a key of its own (`sla-remind:<lead id>`, ...) before it
is sent, with that key as the vendor's idempotency key, and the step is written to
the lead's history after they are done. A rerun, a retry or two watchers at once
therefore send each once; one that failed is sent again by the next run, under the
same key. A run where a step failed ends Failed, naming the leads, after doing the
others.

A CRM adapter that cannot tell when a lead was touched (`reports_first_touch`
False) would have every lead escalated: with one, nothing is watched and the run
says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, cast

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import TaskRunNameCallbackWithParameters
from pydantic import BaseModel, Field

from leadflow.flows.alerts import alert_on_failure
from leadflow.flows.context import current_runtime
from leadflow.flows.sla_events import emit_sla_event
from leadflow.integrations.base import SlaNotice
from leadflow.logging import get_logger
from leadflow.models import Decision
from leadflow.once import EffectKey, scope_hash
from leadflow.rules import AssignmentRules
from leadflow.sla import (
    Action,
    HistoryLine,
    SlaCase,
    SlaStore,
    Status,
    Step,
    contacted_detail,
    escalation_reason,
    missed,
    next_action,
    reminder_reason,
)
from leadflow.stores.decisions import StoredDecision
from leadflow.when import span

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

# The first run reads the decisions of the last week; later runs go on from the last.
FIRST_SCAN = timedelta(days=7)


class SlaSummary(BaseModel):
    """What one run of the watcher did, by lead email."""

    opened: int = Field(default=0, description="leads with a deadline seen for the first time")
    not_watched: int = Field(default=0, description="of those, deadline long past when seen")
    open: int = Field(default=0, description="cases past their deadline still open after the run")
    reminded: list[str] = Field(default_factory=list)
    escalated: list[str] = Field(default_factory=list)
    contacted: list[str] = Field(default_factory=list)
    lapsed: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict, description="email: why")
    note: str | None = None


class SlaStepsFailedError(RuntimeError):
    """Some leads' SLA steps failed; the next run sends what is missing."""

    def __init__(self, summary: SlaSummary) -> None:
        first = next(iter(summary.failed.items()))
        super().__init__(
            f"{len(summary.failed)} SLA steps failed ({', '.join(summary.failed)}); "
            f"first: {first[0]}: {first[1]}"
        )
        self.summary = summary

    def __reduce__(self):
        return (type(self), (self.summary,))


@flow(name="watch-slas", on_failure=[alert_on_failure])
async def watch_slas(give_up_hours: Annotated[float, Field(gt=0)] = 24.0) -> SlaSummary:
    """Remind, escalate or close each lead past its SLA deadline, once per step.

    Args:
        give_up_hours: How long a case is watched for a first touch after its last
            step (and how far past its deadline a lead may be when first seen, for it
            to be watched at all: older leads loaded from a file are not). More than 0.
    """
    runtime = current_runtime()
    now = runtime.assigner.clock()  # the routing's clock: a test's, or the wall clock
    give_up = timedelta(hours=give_up_hours)
    summary = SlaSummary()
    crm = runtime.adapters.crm
    if not crm.reports_first_touch:
        summary.note = (
            f"the {crm.name} CRM adapter cannot tell when a lead was first touched "
            "(CRM.first_touch): no SLA is watched"
        )
        log.warning("slas not watched", reason=summary.note)
        return summary
    store = SlaStore(runtime.settings.database_url, runtime.decisions.scope)
    await _open_cases(runtime, store, now, give_up, summary)
    cases = await store.due(now)
    stored = await runtime.decisions.by_key(case.decision_key for case in cases)
    for case in cases:
        found = stored.get(case.decision_key)
        if found is None:
            summary.failed[case.email] = "its stored decision is gone"
            continue
        try:
            touched = await crm.first_touch(found.lead, found.match, since=case.assigned_at)
        except Exception as exc:
            summary.failed[case.email] = f"first touch not read: {type(exc).__name__}: {exc}"
            continue
        tier = next((t for t in runtime.rules.tiers if t.name == case.tier), None)
        minutes = tier.escalate_after_minutes if tier else None
        action = next_action(
            case,
            now=now,
            touched_at=touched,
            escalate_after=timedelta(minutes=minutes) if minutes else None,
            give_up_after=give_up,
        )
        if action is Action.WAIT:
            summary.open += 1
            continue
        try:
            failed = await sla_step(case, found, action, touched, now, give_up)
        except Exception as exc:
            failed = f"{type(exc).__name__}: {exc}"
        if failed is None:
            getattr(summary, _DONE[action]).append(case.email)
            summary.open += action in (Action.REMIND, Action.ESCALATE)
        else:
            summary.failed[case.email] = failed
    log.info(
        "slas watched",
        opened=summary.opened,
        reminded=len(summary.reminded),
        escalated=len(summary.escalated),
        contacted=len(summary.contacted),
        lapsed=len(summary.lapsed),
        open=summary.open,
        failed=len(summary.failed),
    )
    if summary.failed:
        raise SlaStepsFailedError(summary)
    return summary


_DONE = {
    Action.REMIND: "reminded",
    Action.ESCALATE: "escalated",
    Action.CONTACTED: "contacted",
    Action.LAPSE: "lapsed",
}


async def _open_cases(
    runtime: Runtime, store: SlaStore, now: datetime, give_up: timedelta, summary: SlaSummary
) -> None:
    """Open a case for each lead with a deadline decided since the last scan."""
    start = await store.scan_start(default=now - FIRST_SCAN)
    decided = [stored async for stored in runtime.decisions.between(start, now)]
    for new in await store.register(decided, now=now, give_up_after=give_up, scanned_until=now):
        summary.opened += 1
        summary.not_watched += not new.watched
        emit_sla_event("assigned", new.case, occurred=new.case.assigned_at, watched=new.watched)


def _step_name(parameters: dict[str, Any]) -> str:
    case, action = parameters.get("case"), parameters.get("action")
    if isinstance(case, SlaCase) and isinstance(action, Action):
        return f"{action.value} {case.email}"
    return "sla-step"


@task(
    name="sla-step",
    task_run_name=cast(TaskRunNameCallbackWithParameters, _step_name),
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def sla_step(
    case: SlaCase,
    stored: StoredDecision,
    action: Action,
    touched_at: datetime | None,
    now: datetime,
    give_up_after: timedelta,
) -> str | None:
    """One case's step; None when done, else why not (the next run tries again)."""
    step = _Step(current_runtime(), case, stored, now)
    if action is Action.REMIND:
        return await step.remind()
    if action is Action.ESCALATE:
        return await step.escalate()
    if action is Action.CONTACTED:
        assert touched_at is not None
        await step.contacted(touched_at)
    else:
        await step.lapse(give_up_after)
    return None


def _manager_note(rules: AssignmentRules, team: str | None, manager: str | None) -> str:
    """Whose manager was told, for the history."""
    if manager is None:
        return f"no manager in the rules (team {team or 'none'})"
    found = rules.teams.get(team) if team is not None else None
    if found is not None and found.manager == manager:
        return f"the manager of team {team}"
    return f"the rules' manager (team {team or 'none'} names none)"


class _Step:
    """The side effects and history of one case's step."""

    def __init__(self, runtime: Runtime, case: SlaCase, stored: StoredDecision, now: datetime):
        self.runtime = runtime
        self.case = case
        self.stored = stored
        self.now = now
        self.store = SlaStore(runtime.settings.database_url, runtime.decisions.scope)
        self.notifier = runtime.adapters.notifier

    def key(self, effect: str, adapter: Any) -> EffectKey:
        return EffectKey(effect, scope_hash(adapter.once_scope), f"{effect}:{self.case.lead_id}")

    def notice(self, kind: str, to: str, reason: str, **more: Any) -> SlaNotice:
        lead = self.stored.lead
        name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email
        return SlaNotice.model_validate(
            {
                "kind": kind,
                "to": to,
                "lead_id": lead.id,
                "email": lead.email,
                "who": f"{name} at {lead.company or lead.domain}",
                "tier": self.case.tier,
                "due_at": self.case.due_at,
                "rep": self.case.rep,
                "reason": reason,
                **more,
            }
        )

    async def contacted(self, touched_at: datetime) -> None:
        detail = contacted_detail(self.case, touched_at)
        line = HistoryLine(Step.CONTACTED, self.now, self.case.rep, None, detail)
        await self.store.record(self.case, [line], status=Status.CONTACTED, closed_at=self.now)
        emit_sla_event("contacted", self.case, occurred=touched_at, detail=detail)
        log.info("lead contacted", lead_id=self.case.lead_id, detail=detail)

    async def lapse(self, give_up_after: timedelta) -> None:
        detail = f"no first touch seen in the CRM {span(give_up_after)} after the last step"
        line = HistoryLine(Step.LAPSED, self.now, self.case.rep, None, detail)
        await self.store.record(self.case, [line], status=Status.LAPSED, closed_at=self.now)

    async def remind(self) -> str | None:
        reason = reminder_reason(self.case, self.now)
        notice = self.notice("reminder", self.case.rep, reason)
        key = self.key("sla-remind", self.notifier)
        failed = await self.once(
            [(key, lambda: self.notifier.sla_notice(notice, idempotency_key=key.key))]
        )
        if failed:
            return failed
        line = HistoryLine(Step.REMINDED, self.now, self.case.rep, self.case.rep, reason)
        await self.store.record(self.case, [line], status=Status.REMINDED, reminded_at=self.now)
        emit_sla_event("reminded", self.case, occurred=self.now, reason=reason)
        log.info("rep reminded", lead_id=self.case.lead_id, rep=self.case.rep)
        return None

    async def escalate(self) -> str | None:
        case, lead = self.case, self.stored.lead
        rules = self.runtime.rules
        tier = next(t for t in rules.tiers if t.name == case.tier)
        assert tier.escalate_after_minutes is not None  # next_action escalates no other
        reason = escalation_reason(case, timedelta(minutes=tier.escalate_after_minutes))
        done = await self.store.steps_done(case.lead_id)
        earlier = done.get(Step.REASSIGNED)
        if earlier is not None and earlier.told is None:
            moved = None  # nobody else could take it then: it stays so
        else:
            moved = await self.runtime.assigner.reassign(
                lead, self.stored.match, tier, away_from=case.rep, reason=missed(case)
            )
        new_rep = moved.rep if moved else case.rep
        detail = (
            f"by {moved.rule}: {reason}"
            if moved
            else f"nobody else could take it, it stays with {case.rep}: {reason}"
        )
        told = new_rep if moved else None
        await self.store.record(
            case, [HistoryLine(Step.REASSIGNED, self.now, case.rep, told, detail)]
        )
        team = rules.assignment.team_of(case.rep)
        manager = rules.assignment.manager_for(team)
        effects: list[tuple[EffectKey, Callable[[], Awaitable[Any]]]] = []
        if moved:
            decision = self.stored.decision.model_copy(
                update={"rep": new_rep, "assignment_rule": moved.rule}
            )
            effects += self._new_owner(decision, reason)
        if manager:
            note = self.notice("escalated", manager, reason, rep=new_rep, previous_rep=case.rep)
            key = self.key("sla-escalate", self.notifier)
            effects.append((key, lambda: self.notifier.sla_notice(note, idempotency_key=key.key)))
        failed = await self.once(effects)
        if failed:
            return failed
        about = _manager_note(rules.assignment, team, manager)
        done_with = f"the lead is {new_rep}'s, in the CRM too" if moved else f"{new_rep} keeps it"
        lines = [
            HistoryLine(Step.MANAGER_TOLD, self.now, case.rep, manager, about),
            HistoryLine(Step.ESCALATED, self.now, new_rep, None, done_with),
        ]
        await self.store.record(
            case, lines, status=Status.ESCALATED, escalated_at=self.now, rep=new_rep
        )
        people = {"rep": new_rep, "previous_rep": case.rep, "manager": manager}
        emit_sla_event("escalated", case, occurred=self.now, people=people, reason=reason)
        log.info("lead escalated", lead_id=case.lead_id, rep=new_rep, previous=case.rep)
        return None

    def _new_owner(
        self, decision: Decision, reason: str
    ) -> list[tuple[EffectKey, Callable[[], Awaitable[Any]]]]:
        """The CRM contact's new owner, and the new rep told the lead is theirs."""
        crm, lead = self.runtime.adapters.crm, self.stored.lead
        crm_key = self.key("sla-reassign", crm)
        notice = self.notice(
            "reassigned", decision.rep, reason, rep=decision.rep, previous_rep=self.case.rep
        )
        told_key = self.key("sla-reassigned", self.notifier)
        return [
            (crm_key, lambda: crm.upsert(lead, decision, idempotency_key=crm_key.key)),
            (told_key, lambda: self.notifier.sla_notice(notice, idempotency_key=told_key.key)),
        ]

    async def once(
        self, effects: list[tuple[EffectKey, Callable[[], Awaitable[Any]]]]
    ) -> str | None:
        """Each effect not done before, under its claim; None when all are done, else
        why not (a failed one is claimed again by the next run)."""
        once = self.runtime.once
        claim = await once.claim(key for key, _ in effects)
        if claim.busy:
            await once.settle_busy(claim)
        if claim.busy:
            return "another watcher holds this step"
        sent: set[EffectKey] = set()
        failed: dict[EffectKey, str] = {}
        try:
            async with once.holding(claim.token):
                for key, call in effects:
                    if key not in claim.taken:
                        continue
                    try:
                        await call()
                    except Exception as exc:
                        failed[key] = f"{key.effect}: {type(exc).__name__}: {exc}"
                    else:
                        sent.add(key)
        except BaseException:  # cancelled: what was not sent is handed back at once
            with contextlib.suppress(Exception):
                await once.finish(claim.token, done=sent)
                await once.release(claim.token, claim.taken - sent, "cancelled")
            raise
        await once.finish(claim.token, done=sent, failed=failed)
        return next(iter(failed.values()), None)
