"""`process_lead`: one lead through the pipeline, as a Prefect flow run.

    validate -> look up -> score, follow-up, assign          (in order: each needs the last)
             -> update CRM | notify the team | log the event  (at once: none needs another)

A task run costs orchestration (API calls and events) while a pure step costs
microseconds, so tasks sit only where they buy something: the look-up and the
decision (which writes the round-robin state) are tasks; validation, scoring and the
follow-up are timed and logged inside the flow and the decide task. Each side-effect
branch is its own task, so each is retried, cached and shown on its own.

Once only: each branch's task is cached under a key per side effect (`once_key`),
persisted in Prefect's result storage, so a repeated run or a rerun of the file finds
the branch done and skips it; the adapters receive the same key and enforce it
themselves, which covers a task retried after its side effect happened but before its
result was stored. A person (normalised email) is notified and logged once, whatever
ids or sources their rows carry; the CRM is updated once per version of their data.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import flow, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.states import State
from structlog.contextvars import bound_contextvars

from leadflow.decide import decide, timed
from leadflow.failed_effects import FailedEffect, FailedEffects
from leadflow.flows.alerts import alert_on_failure
from leadflow.flows.artifacts import publish_decision
from leadflow.flows.context import current_runtime
from leadflow.flows.limits import vendor_limit
from leadflow.flows.mode import start_run
from leadflow.flows.naming import (
    decision_tags,
    label_of,
    lead_run_name,
    lead_tags,
    step_run_name,
    task_tags,
)
from leadflow.flows.retries import retry_options
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.integrations.base import LeadEvent
from leadflow.logging import get_logger
from leadflow.models import (
    BranchResult,
    BranchStatus,
    CrmMatch,
    Decision,
    Lead,
    LeadOutcome,
    StepTiming,
    lead_version,
    person_id,
)
from leadflow.settings import PipelineSettings

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

BRANCHES = ("update_crm", "notify_team", "log_event")


class InvalidLeadError(ValueError):
    """The record could not become a Lead; it has been set aside in the quarantine."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.where} ({rejection.lead_ref}): {rejection.reason}")
        self.rejection = rejection

    def __reduce__(self):
        return (type(self), (self.rejection,))


class BranchesFailedError(RuntimeError):
    """One or more side-effect branches failed after their retries. The others ran."""

    def __init__(self, outcome: LeadOutcome) -> None:
        reasons = "; ".join(f"{name}: {why}" for name, why in outcome.failed_branches.items())
        super().__init__(f"lead {outcome.lead_id}: {reasons}")
        self.outcome = outcome

    def __reduce__(self):
        return (type(self), (self.outcome,))


def once_key(branch: str, lead: Lead) -> str:
    """The once-only key of one side effect for one lead: `notify:` and `event:` are
    per person (`person_<hash of the email>`), so two rows or two files with the same
    email never notify twice, even with different ids; `crm:` is per lead and version
    of its data, so a later row with new data updates the contact."""
    if branch == "crm":
        return f"crm:{lead.id}:{lead_version(lead)}"
    return f"{branch}:{person_id(lead.email)}"


_BRANCH_ADAPTER = {"crm": "crm", "notify": "notifier", "event": "event_sink"}
# branch task name -> the side effect's name in its once-only key
EFFECT_OF_BRANCH = {"update_crm": "crm", "notify_team": "notify", "log_event": "event"}


def effect_scope(runtime: Runtime, effect: str) -> str:
    """Where a side effect lands, as a short hash of the adapter's scope (which may
    hold a database URL or a webhook URL, credentials included)."""
    adapter = getattr(runtime.adapters, _BRANCH_ADAPTER[effect])
    return hashlib.sha256(adapter.once_scope.encode()).hexdigest()[:12]


def _cache_key(branch: str, _context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Prefect cache key of a branch task: the side effect, where it lands, the lead."""
    scope = effect_scope(current_runtime(), branch)
    return f"{scope}-{once_key(branch, parameters['lead'])}"


async def record_failures(runtime: Runtime, items: list[tuple[str, Lead, Decision, str]]) -> None:
    """Keep (branch, lead, decision, reason) of side effects that failed after their
    retries, for `leadflow replay`."""
    if not items:
        return
    await FailedEffects(runtime.settings.database_url).record(
        FailedEffect(
            branch=branch,
            once_key=once_key(EFFECT_OF_BRANCH[branch], lead),
            scope=effect_scope(runtime, EFFECT_OF_BRANCH[branch]),
            reason=reason,
            lead=lead,
            decision=decision,
        )
        for branch, lead, decision, reason in items
    )


# --- the steps that are tasks ------------------------------------------------------


@task(name="look-up", task_run_name=step_run_name("look-up"), cache_policy=NO_CACHE)
async def look_up(lead: Lead) -> CrmMatch:
    """Existing CRM contact and account, their owners, and enrichment."""
    crm = current_runtime().adapters.crm
    async with vendor_limit(crm):
        return await crm.look_up(lead)


@task(name="decide", task_run_name=step_run_name("decide"), cache_policy=NO_CACHE)
async def decide_lead(lead: Lead, match: CrmMatch) -> tuple[Decision, list[StepTiming]]:
    """Score, follow-up and assignment: one task, since only the assignment does I/O."""
    runtime = current_runtime()
    return await decide(
        lead,
        match,
        rules=runtime.rules,
        scorer=runtime.adapters.scorer,
        assigner=runtime.assigner,
    )


@task(
    name="update-crm",
    task_run_name=step_run_name("update-crm"),
    cache_key_fn=functools.partial(_cache_key, "crm"),
    persist_result=True,
)
async def update_crm(lead: Lead, decision: Decision) -> str:
    crm = current_runtime().adapters.crm
    async with vendor_limit(crm):
        record_id = await crm.upsert(lead, decision, idempotency_key=once_key("crm", lead))
    log.info("crm updated", lead_id=lead.id, record_id=record_id)
    return f"contact {record_id}"


@task(
    name="notify-team",
    task_run_name=step_run_name("notify-team"),
    cache_key_fn=functools.partial(_cache_key, "notify"),
    persist_result=True,
)
async def notify_team(lead: Lead, decision: Decision) -> str:
    notifier = current_runtime().adapters.notifier
    async with vendor_limit(notifier):
        await notifier.notify(lead, decision, idempotency_key=once_key("notify", lead))
    log.info("team notified", lead_id=lead.id, rep=decision.rep)
    return f"notified {decision.rep}"


@task(
    name="log-event",
    task_run_name=step_run_name("log-event"),
    cache_key_fn=functools.partial(_cache_key, "event"),
    persist_result=True,
)
async def log_event(lead: Lead, decision: Decision) -> str:
    event_id = once_key("event", lead)
    event_sink = current_runtime().adapters.event_sink
    async with vendor_limit(event_sink):
        await event_sink.record(
            LeadEvent(
                event_id=event_id,
                lead_id=lead.id,
                occurred_at=datetime.now(UTC),
                decision=decision,
            )
        )
    log.info("event logged", lead_id=lead.id, event_id=event_id)
    return f"event {event_id}"


@functools.cache
def _configured(
    settings: PipelineSettings, vendors: tuple[str | None, str | None, str | None]
) -> dict[str, Any]:
    """The vendor-facing tasks with this configuration's retry policy; each side-effect
    task tagged `vendor:<adapter name>` when that adapter has limits in the settings
    (built once per configuration). Only then: a tagged task run asks the server for
    tag concurrency slots, and the tasks of a whole file start at the same moment,
    which a busy SQLite-backed server has answered with 503. The look-up is untagged."""
    options = retry_options(settings)
    crm, notifier, event_sink = vendors

    def configured(task, vendor: str | None):
        if vendor is None:
            return task.with_options(**options)
        return task.with_options(**options, tags={*task.tags, f"vendor:{vendor}"})

    return {
        "look_up": look_up.with_options(**options),
        "update_crm": configured(update_crm, crm),
        "notify_team": configured(notify_team, notifier),
        "log_event": configured(log_event, event_sink),
    }


def configured_tasks(runtime: Runtime) -> dict[str, Any]:
    """The look-up and branch tasks with this runtime's retry policy and vendor tags."""
    adapters = runtime.adapters
    return _configured(
        runtime.settings.pipeline,
        tuple(
            a.name if a.name in runtime.settings.limits else None
            for a in (adapters.crm, adapters.notifier, adapters.event_sink)
        ),
    )


# --- the flow ----------------------------------------------------------------------


@flow(
    name="process-lead",
    flow_run_name=lead_run_name,
    log_prints=False,
    on_failure=[alert_on_failure],
)
async def process_lead(
    record: dict[str, Any], origin: str = "api", position: int = 0
) -> LeadOutcome:
    """Process one raw lead record: validate, look up, decide, then the three side
    effects at once. Ends Failed, naming the branch, if a side effect failed after its
    retries; a record that fails validation is quarantined and the run ends Failed.

    Args:
        record: The lead as a JSON object, e.g. {"email": "ada@example.org", "title":
            "CTO", "country": "GB"}; `email` is required, any other column is kept for
            scoring. A bad field fails the run with the field named and the record set
            aside in the quarantine.
        origin: Where the lead came from (a file name, "api", "webhook"), shown with
            the record if it is set aside.
        position: The record's row or line in `origin`, if any.

    In a mode other than `live` (leadflow.flows.mode) the lead is routed instead, and
    the run returns where it went (leadflow.flows.cutover.RoutedLead).
    """
    if (
        mode := await start_run(tag_live=False)
    ) != "live":  # the cut-over switch (leadflow.flows.mode)
        from leadflow.flows.cutover import route_record  # it builds on this module

        return await route_record(record, mode, origin, position)
    runtime = current_runtime()
    started = time.perf_counter()
    steps: list[StepTiming] = []
    checked = validate_record(RawRecord(origin=origin, position=position, data=record))
    steps.append(StepTiming(step="validate", duration_ms=(time.perf_counter() - started) * 1000))
    if isinstance(checked, Rejection):
        await runtime.quarantine.put([checked])
        log.warning("lead set aside", where=checked.where, reason=checked.reason)
        raise InvalidLeadError(checked)
    # The run's tags (for the UI) need only the decision: they are set while the side
    # effects run, one API round trip fewer on the lead's path.
    outcome = await run_pipeline(
        checked,
        runtime,
        steps,
        started=started,
        alongside=lambda decision: _tag_this_run(checked, decision),
    )
    await publish_decision(checked, outcome)
    if not outcome.ok:
        raise BranchesFailedError(outcome)
    return outcome


async def run_pipeline(
    lead: Lead,
    runtime: Runtime,
    steps: list[StepTiming],
    *,
    started: float | None = None,
    alongside: Callable[[Decision], Awaitable[None]] | None = None,
) -> LeadOutcome:
    """The steps after validation, inside the current flow run: look up and decide in
    order, then the three branches at once (and `alongside(decision)`, if given). A
    failed branch is reported in the outcome, not raised; a failed look-up or decision
    raises, since nothing can follow it."""
    started = started or time.perf_counter()
    tasks = configured_tasks(runtime)
    with bound_contextvars(lead_id=lead.id, lead=label_of(lead)), tags(*task_tags(lead_tags(lead))):
        match = await timed(steps, "look_up", lambda: tasks["look_up"](lead))
        decision, decide_steps = await decide_lead(lead, match)
        steps.extend(decide_steps)  # score, follow_up, assign: timed inside the task

        async def branch(name: str) -> tuple[str, BranchResult]:
            began = time.perf_counter()
            state: State = await tasks[name](lead, decision, return_state=True)
            elapsed = (time.perf_counter() - began) * 1000
            return name, await branch_result(state, elapsed)

        with tags(*task_tags(decision_tags(decision))):
            also = asyncio.gather(*([alongside(decision)] if alongside else []))
            *branched, _ = await asyncio.gather(*(branch(name) for name in BRANCHES), also)
            results = dict(branched)
        steps.extend(
            StepTiming(step=name, duration_ms=r.duration_ms) for name, r in results.items()
        )
        outcome = LeadOutcome(lead_id=lead.id, decision=decision, branches=results, steps=steps)
        await record_failures(
            runtime,
            [
                (name, lead, decision, r.error or "failed")
                for name, r in results.items()
                if r.status is BranchStatus.FAILED
            ],
        )
        _log_outcome(outcome, time.perf_counter() - started)
    return outcome


async def _tag_this_run(lead: Lead, decision: Decision) -> None:
    """Put the lead's tags on the current flow run: its tier and rep are known only
    now, after the run was created."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    wanted = sorted({*run.tags, *lead_tags(lead), *decision_tags(decision)})
    async with get_client() as client:
        await client.update_flow_run(run.id, tags=wanted)


def _log_outcome(outcome: LeadOutcome, seconds: float) -> None:
    """One line per step with its duration, then one line for the lead: what the UI
    shows under the run, and what `leadflow run -v` prints."""
    for step in outcome.steps:
        result = outcome.branches.get(step.step)
        log.info(
            "step",
            step=step.step,
            duration_ms=round(step.duration_ms, 2),
            **({"status": result.status.value, "error": result.error} if result else {}),
        )
    decision = outcome.decision
    (log.info if outcome.ok else log.warning)(
        "lead processed",
        tier=decision.tier,
        score=decision.score,
        follow_up=decision.follow_up.value,
        rep=decision.rep,
        rule=decision.assignment_rule,
        failed=outcome.failed_branches or None,
        total_ms=round(seconds * 1000, 1),
    )


async def branch_result(state: State, elapsed_ms: float) -> BranchResult:
    if state.is_completed():
        detail = await state.aresult()
        if state.name == "Cached":
            return BranchResult(
                status=BranchStatus.SKIPPED,
                duration_ms=elapsed_ms,
                detail=f"done before ({detail}); once-only key kept it from repeating",
            )
        return BranchResult(status=BranchStatus.OK, duration_ms=elapsed_ms, detail=detail)
    exc = await state.aresult(raise_on_failure=False)
    reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else state.message
    return BranchResult(status=BranchStatus.FAILED, duration_ms=elapsed_ms, error=reason)
