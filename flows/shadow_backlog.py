"""leadflow's side of a shadow run, without task runs: one lead, or a chunk of a backlog.

A shadow run of a backlog (above `LEADFLOW_PIPELINE__BATCH_THRESHOLD` records, where
`leadflow run` switches to micro-batches) must not be slower than the run it judges.
Five task runs per lead made it many times slower; running the same steps in-process
per lead still paid one assignment transaction per lead, which SQLite serialises.
So a chunk of `LEADFLOW_PIPELINE__BATCH_SIZE` leads is decided the way the micro-batch
path decides one (flows/batch.py): one bulk CRM look-up, one bulk scoring call and one
assignment transaction (`decide_many`, the same picks as one lead at a time). Then each
lead's three side effects go at once to the recorders, which keep them and send
nothing.

A lead of a chunk waits for the whole chunk, so each step's time is the chunk's, as on
the micro-batch path. If a bulk call fails, the chunk is decided again one lead at a
time, so that only the leads that fail are failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from leadflow.decide import decide, decide_many, timed
from leadflow.flows.lead import once_key
from leadflow.flows.limits import vendor_limit
from leadflow.integrations.base import LeadEvent
from leadflow.logging import get_logger
from leadflow.models import CrmMatch, Decision, Lead, StepTiming

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

Decided = tuple[Decision, list[StepTiming]]


async def decide_one(lead: Lead, runtime: Runtime) -> Decided:
    """leadflow's pipeline for one lead without task runs: the look-up, the decision,
    then the three (recorded) side effects at once, each step timed."""
    steps: list[StepTiming] = []
    crm = runtime.adapters.crm

    async def look_up() -> CrmMatch:
        async with vendor_limit(crm):  # the real CRM's limits hold for its reads
            return await crm.look_up(lead)

    match = await timed(steps, "look_up", look_up)
    decision, decided = await decide(
        lead, match, rules=runtime.rules, scorer=runtime.adapters.scorer, assigner=runtime.assigner
    )
    return decision, [*steps, *decided, *await _side_effects(lead, decision, runtime)]


async def decide_chunk(leads: Sequence[Lead], runtime: Runtime) -> list[Decided | BaseException]:
    """Every lead of a chunk, in order: its decision and steps, or what it raised."""
    try:
        decisions, steps = await _decide_in_bulk(leads, runtime)
    except Exception as exc:
        log.info("bulk decision failed, one lead at a time", leads=len(leads), error=str(exc))
        return await asyncio.gather(
            *(decide_one(lead, runtime) for lead in leads), return_exceptions=True
        )
    effects = await asyncio.gather(
        *(_side_effects(lead, d, runtime) for lead, d in zip(leads, decisions, strict=True)),
        return_exceptions=True,
    )
    return [
        branches if isinstance(branches, BaseException) else (decision, [*steps, *branches])
        for decision, branches in zip(decisions, effects, strict=True)
    ]


async def _decide_in_bulk(
    leads: Sequence[Lead], runtime: Runtime
) -> tuple[list[Decision], list[StepTiming]]:
    steps: list[StepTiming] = []
    crm = runtime.adapters.crm

    async def look_up() -> list[CrmMatch]:
        async with vendor_limit(crm):
            return await crm.look_up_many(leads)

    matches = await timed(steps, "look_up", look_up)
    decisions = await decide_many(
        leads,
        matches,
        rules=runtime.rules,
        scorer=runtime.adapters.scorer,
        assigner=runtime.assigner,
        steps=steps,
    )
    return decisions, steps


async def _side_effects(lead: Lead, decision: Decision, runtime: Runtime) -> list[StepTiming]:
    """The three side effects at once, under the keys the live pipeline would use; in a
    shadow run the adapters are recorders. Returns their timings in pipeline order."""
    adapters = runtime.adapters
    event = LeadEvent(
        event_id=once_key("event", lead),
        lead_id=lead.id,
        occurred_at=datetime.now(UTC),
        decision=decision,
    )
    effects = {
        "update_crm": lambda: adapters.crm.upsert(
            lead, decision, idempotency_key=once_key("crm", lead)
        ),
        "notify_team": lambda: adapters.notifier.notify(
            lead, decision, idempotency_key=once_key("notify", lead)
        ),
        "log_event": lambda: adapters.event_sink.record(event),
    }
    branches: list[StepTiming] = []
    await asyncio.gather(*(timed(branches, name, work) for name, work in effects.items()))
    return sorted(branches, key=lambda s: list(effects).index(s.step))
