"""`replay_side_effects`: do again, once, the side effects that did not get done.

Two kinds of leads are replayed:
- side effects that failed after their retries (`leadflow.failed_effects`: the lead,
  the decision and the once-only key were kept with the reason);
- leads decided longer ago than a lease whose side effects were never all confirmed
  (leadflow.stores.decisions, `done_at` empty): their process died between the claim
  and the vendor's answer, or could not record it.

Each lead goes through the engine's side-effect step again with its stored decision
(flows/engine.py), under its once-only keys: a side effect found done is closed as
`done before`; one whose claim is held by a live run is waited for; the rest are sent
again under the same idempotency key (`replayed`), or fail again and stay open with
their new reason for the next replay. A failure recorded for another destination
(the adapter now points elsewhere: another CRM, another webhook) is left open: the
side effect belongs where it failed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from prefect import flow
from pydantic import BaseModel, Field

from leadflow.app.runtime import Runtime, current_runtime
from leadflow.failed_effects import DONE_BEFORE, REPLAYED, FailedEffect
from leadflow.flows.engine import EFFECT_OF_BRANCH, Group, effect_scope, fan_out, settle
from leadflow.logging import get_logger
from leadflow.models import BranchStatus, Decision, Lead

log = get_logger(__name__)

FAILED_AGAIN, ELSEWHERE, BUSY = (
    "failed again",
    "left: adapter points elsewhere",
    "left: in progress",
)


class ReplayedEffect(BaseModel):
    branch: str
    lead_id: str
    email: str
    once_key: str
    result: str
    detail: str = ""


class SideEffectReplay(BaseModel):
    effects: list[ReplayedEffect] = Field(default_factory=list)
    unfinished_leads: int = Field(
        default=0, description="leads whose side effects were never all confirmed, finished now"
    )

    @property
    def counts(self) -> Counter[str]:
        return Counter(e.result for e in self.effects)

    @property
    def ok(self) -> bool:
        return not any(e.result == FAILED_AGAIN for e in self.effects)

    def line(self) -> str:
        c = self.counts
        unfinished = (
            f"; {self.unfinished_leads} unfinished leads finished" if self.unfinished_leads else ""
        )
        return (
            f"{len(self.effects)} failed side effects: {c[REPLAYED]} replayed, "
            f"{c[DONE_BEFORE]} done before (not repeated), {c[FAILED_AGAIN]} failed again, "
            f"{c[ELSEWHERE] + c[BUSY]} left{unfinished}"
        )


def _here(runtime: Runtime, failure: FailedEffect) -> bool:
    return failure.scope == effect_scope(runtime, EFFECT_OF_BRANCH[failure.branch])


def _result(group: Group, failure: FailedEffect) -> tuple[str, str]:
    result = group.effects[failure.branch].get(failure.lead.id)
    if result is None or result.status is BranchStatus.FAILED:
        reason = result.error if result else "not done"
        busy = "in progress in another run" in (reason or "")
        return (BUSY if busy else FAILED_AGAIN), reason or ""
    if result.status is BranchStatus.SKIPPED:
        return DONE_BEFORE, "done by a later run"
    return REPLAYED, result.detail or ""


async def _finish(runtime: Runtime, leads: list[tuple[Lead, Decision]]) -> Group:
    group = Group([lead for lead, _d in leads])
    group.decisions = {lead.id: decision for lead, decision in leads}
    group.recalled = set(group.decisions)
    group.stored = True
    await fan_out(group, runtime)
    await settle(group, runtime)
    return group


@flow(name="replay-side-effects")
async def replay_side_effects() -> SideEffectReplay:
    """Replay every open failed side effect, and every unfinished lead, once."""
    runtime = current_runtime()
    failures = await runtime.failed_effects.open()
    report = SideEffectReplay()
    here = [f for f in failures if _here(runtime, f)]
    leads: dict[str, tuple[Lead, Decision]] = {f.lead.id: (f.lead, f.decision) for f in here}
    cutoff = datetime.now(UTC) - runtime.once.lease
    unfinished = [
        s for s in await runtime.decisions.unfinished(before=cutoff) if s.lead.id not in leads
    ]
    leads.update({s.lead.id: (s.lead, s.decision) for s in unfinished})
    report.unfinished_leads = len(unfinished)
    size = runtime.settings.pipeline.batch_size
    items = list(leads.values())
    groups = [await _finish(runtime, items[i : i + size]) for i in range(0, len(items), size)]
    by_lead = {lead.id: group for group in groups for lead in group.leads}
    for failure in failures:
        if _here(runtime, failure):
            result, detail = _result(by_lead[failure.lead.id], failure)
        else:
            result, detail = ELSEWHERE, ""
        report.effects.append(
            ReplayedEffect(
                branch=failure.branch,
                lead_id=failure.lead.id,
                email=failure.lead.email,
                once_key=failure.once_key,
                result=result,
                detail=detail,
            )
        )
    await runtime.failed_effects.close(
        [
            (failure, item.result)
            for failure, item in zip(failures, report.effects, strict=True)
            if item.result in (REPLAYED, DONE_BEFORE)
        ]
    )
    log.info("side effects replayed", **{k.replace(" ", "_"): v for k, v in report.counts.items()})
    return report
