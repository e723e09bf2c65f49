"""`replay_side_effects`: do again, once, the side effects that failed after their retries.

Each failure recorded by a run (`leadflow.failed_effects`) holds the lead, the
decision and the once-only key. Replaying one:

1. skips it, left open, when its adapter now points elsewhere (another CRM, another
   webhook): the side effect belongs where it failed;
2. claims its key in leadflow's once-only table (`leadflow.once`), the one the
   micro-batch path uses, so a replay never races a rerun of the file and a later
   rerun does not do it again; a key already done is closed as `done before`;
3. runs the same branch task a lead's run uses, with its retries and its Prefect
   cache under the same key: a side effect a later run already did is found there
   and not repeated (`done before`); otherwise it is done now (`replayed`) or fails
   again, with its new reason, and stays open for the next replay.

The adapters get the same once-only key as the first attempt (Idempotency-Key,
upsert key, message id), so a vendor that de-duplicates drops a repeat as well.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from prefect import flow
from pydantic import BaseModel, Field

from leadflow.app.runtime import Runtime, current_runtime
from leadflow.failed_effects import DONE_BEFORE, REPLAYED, FailedEffect, FailedEffects
from leadflow.flows.lead import (
    EFFECT_OF_BRANCH,
    branch_result,
    configured_tasks,
    effect_scope,
    record_failures,
)
from leadflow.logging import get_logger
from leadflow.models import BranchStatus
from leadflow.once import DONE, OnceStore

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

    @property
    def counts(self) -> Counter[str]:
        return Counter(e.result for e in self.effects)

    @property
    def ok(self) -> bool:
        return not any(e.result == FAILED_AGAIN for e in self.effects)

    def line(self) -> str:
        c = self.counts
        return (
            f"{len(self.effects)} failed side effects: {c[REPLAYED]} replayed, "
            f"{c[DONE_BEFORE]} done before (not repeated), {c[FAILED_AGAIN]} failed again, "
            f"{c[ELSEWHERE] + c[BUSY]} left"
        )


async def _replay_one(runtime: Runtime, tasks: dict, failure: FailedEffect) -> tuple[str, str]:
    effect = EFFECT_OF_BRANCH[failure.branch]
    if failure.scope != effect_scope(runtime, effect):
        return ELSEWHERE, ""
    once = OnceStore(runtime.settings.database_url)
    token, taken = await once.claim(effect, failure.scope, [failure.once_key])
    if failure.once_key not in taken:
        status = await once.status(effect, failure.scope, failure.once_key)
        return (DONE_BEFORE, "done by a later run") if status == DONE else (BUSY, "")
    state = await tasks[failure.branch](failure.lead, failure.decision, return_state=True)
    result = await branch_result(state, 0.0)
    if result.status is BranchStatus.FAILED:
        reason = result.error or "failed"
        await once.finish(effect, failure.scope, token, failed={failure.once_key: reason})
        await record_failures(runtime, [(failure.branch, failure.lead, failure.decision, reason)])
        return FAILED_AGAIN, reason
    await once.finish(effect, failure.scope, token, done=[failure.once_key])
    if result.status is BranchStatus.SKIPPED:
        return DONE_BEFORE, result.detail or ""
    return REPLAYED, result.detail or ""


@flow(name="replay-side-effects")
async def replay_side_effects() -> SideEffectReplay:
    """Replay every open failed side effect once; report what each became."""
    runtime = current_runtime()
    store = FailedEffects(runtime.settings.database_url)
    failures = await store.open()
    tasks = configured_tasks(runtime)
    gate = asyncio.Semaphore(runtime.settings.pipeline.concurrency)

    async def one(failure: FailedEffect) -> ReplayedEffect:
        async with gate:
            result, detail = await _replay_one(runtime, tasks, failure)
        return ReplayedEffect(
            branch=failure.branch,
            lead_id=failure.lead.id,
            email=failure.lead.email,
            once_key=failure.once_key,
            result=result,
            detail=detail,
        )

    report = SideEffectReplay(effects=list(await asyncio.gather(*map(one, failures))))
    await store.close(
        [
            (failure, item.result)
            for failure, item in zip(failures, report.effects, strict=True)
            if item.result in (REPLAYED, DONE_BEFORE)
        ]
    )
    log.info("side effects replayed", **{k.replace(" ", "_"): v for k, v in report.counts.items()})
    return report
