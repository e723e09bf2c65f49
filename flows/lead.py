"""`process_lead`: one lead given by hand, as a flow run of its own.

For manual runs and the `process-lead` deployment (a trigger, an automation, the
Prefect UI's "Run"): the record is validated, then goes through the one engine
(flows/engine.py) as a group of one, inside this flow run; its Decision is published
as an artifact and the run is tagged with the lead's tier and rep. The real-time
ways in (the webhook receiver, polled sources) do not come through here: a flow run
per lead costs more than the lead's own work, so they run leads as task runs inside
long-lived flow runs (flows/stream.py).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from leadflow.flows.alerts import alert_on_failure
from leadflow.flows.artifacts import publish_decision
from leadflow.flows.context import current_runtime
from leadflow.flows.engine import BRANCHES, Group, about, run_group
from leadflow.flows.mode import start_run
from leadflow.flows.naming import decision_tags, lead_run_name, lead_tags
from leadflow.flows.summary import AlreadyDone, FailedBranch, LeftToCurrentProcess
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.logging import get_logger
from leadflow.models import BranchResult, BranchStatus, Decision, Lead, LeadOutcome, StepTiming

log = get_logger(__name__)


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


class LeadFailedError(RuntimeError):
    """The pipeline stopped before the lead was decided (the look-up or decision
    failed after its retries): nothing was sent."""

    def __init__(self, failure: FailedBranch) -> None:
        super().__init__(f"lead {failure.lead_id}: {failure.branch}: {failure.reason}")
        self.failure = failure

    def __reduce__(self):
        return (type(self), (self.failure,))


@flow(
    name="process-lead",
    flow_run_name=lead_run_name,
    log_prints=False,
    on_failure=[alert_on_failure],
)
async def process_lead(
    record: dict[str, Any], origin: str = "api", position: int = 0
) -> LeadOutcome | AlreadyDone | LeftToCurrentProcess:
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

    In a mode other than `live` (leadflow.flows.mode) the lead goes where the mode
    sends it (flows/cutover.py), and the run returns what became of it: left to the
    current process, its outcome in leadflow (a pilot lead), or, for a pilot lead whose
    exact version leadflow finished in an earlier run, AlreadyDone (nothing was run). In
    `live` mode such a lead's outcome is its stored decision, every branch skipped.
    """
    runtime = current_runtime()
    mode = await start_run(tag_live=False)
    started = time.perf_counter()
    checked = validate_record(RawRecord(origin=origin, position=position, data=record))
    validated = StepTiming(step="validate", duration_ms=(time.perf_counter() - started) * 1000)
    if isinstance(checked, Rejection):
        if mode != "live":  # in the other modes the current process owns the record
            return LeftToCurrentProcess(lead_id=checked.lead_ref, mode=mode)
        await runtime.quarantine.put([checked])
        log.warning("lead set aside", where=checked.where, reason=checked.reason)
        raise InvalidLeadError(checked)
    if mode != "live":
        from leadflow.flows.cutover import route_leads  # it builds on the engine

        (routed,) = await route_leads(runtime, [checked], {checked.id: record}, mode)
        if isinstance(routed, FailedBranch):
            raise LeadFailedError(routed)
        return routed
    group = Group([checked], rows={checked.id: position})
    group.steps.append(validated)
    with about(group):
        log.info("step", step="validate", duration_ms=round(validated.duration_ms, 3))
    (result,) = await run_group(group, runtime)
    if isinstance(result, FailedBranch):
        raise LeadFailedError(result)
    outcome = (
        _done_before(checked, group.done_before[checked.id].decision)
        if isinstance(result, AlreadyDone)
        else result
    )
    await _tag_this_run(checked, outcome)
    await publish_decision(checked, outcome)
    if not outcome.ok:
        raise BranchesFailedError(outcome)
    return outcome


async def _tag_this_run(lead: Lead, outcome: LeadOutcome) -> None:
    """Put the lead's tags on this flow run: its tier and rep are known only now."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    wanted = sorted({*run.tags, *lead_tags(lead), *decision_tags(outcome.decision)})
    async with get_client() as client:
        await client.update_flow_run(run.id, tags=wanted)


def _done_before(lead: Lead, decision: Decision) -> LeadOutcome:
    """A lead whose exact version was done before, as an outcome: its stored decision,
    every side effect done before."""
    skipped = BranchResult(status=BranchStatus.SKIPPED, detail="done before")
    return LeadOutcome(
        lead_id=lead.id,
        decision=decision,
        branches=dict.fromkeys(BRANCHES, skipped),
        email=lead.email,
    )
