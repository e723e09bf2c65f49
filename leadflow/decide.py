"""The sequential part of the pipeline after the look-up: score, decide the follow-up,
assign a rep. Plain async functions with no Prefect in them, so the per-lead flow, the
micro-batch path and the benchmark's plain-asyncio baseline share one implementation
and one set of timings. The scorer and the assigner are the ports of leadflow.ports.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from leadflow.models import Assignment, CrmMatch, Decision, Lead, Score, StepTiming
from leadflow.ports import LeadScorer, RepAssigner
from leadflow.rules import Rules, Tier

T = TypeVar("T")


def apply_enrichment(lead: Lead, match: CrmMatch | None) -> Lead:
    """The lead with blanks filled from the CRM (company, size, country): what the
    record says wins, what the CRM knows fills the gaps."""
    if match is None or not match.enrichment:
        return lead
    known = set(lead.model_fields)
    fills = {
        key: value
        for key, value in match.enrichment.items()
        if key in known and getattr(lead, key) in (None, "")
    }
    return lead.model_copy(update=fills) if fills else lead


async def timed(steps: list[StepTiming], name: str, work: Callable[[], Awaitable[T]]) -> T:
    started = time.perf_counter()
    try:
        return await work()
    finally:
        steps.append(StepTiming(step=name, duration_ms=(time.perf_counter() - started) * 1000))


async def decide(
    lead: Lead,
    match: CrmMatch | None,
    *,
    rules: Rules,
    scorer: LeadScorer,
    assigner: RepAssigner,
    received_at: datetime | None = None,
) -> tuple[Decision, list[StepTiming]]:
    """Score, then the follow-up from the tier, then the rep. Returns the Decision and
    how long each step took."""
    steps: list[StepTiming] = []
    enriched = apply_enrichment(lead, match)
    score = await timed(steps, "score", lambda: scorer.score(enriched, match))

    async def follow_up() -> Tier:
        return rules.tier_for(score.value)

    tier = await timed(steps, "follow_up", follow_up)
    assignment = await timed(steps, "assign", lambda: assigner.assign(enriched, match, tier))
    return make_decision(lead, score, tier, assignment, rules, received_at), steps


async def decide_many(
    leads: Sequence[Lead],
    matches: Sequence[CrmMatch | None],
    *,
    rules: Rules,
    scorer: LeadScorer,
    assigner: RepAssigner,
    steps: list[StepTiming] | None = None,
) -> list[Decision]:
    """`decide` for a batch: one bulk scoring call and one assignment transaction,
    in input order, so the picks are the same as deciding the leads one by one.
    With `steps`, each step's time for the whole batch is added to it (every lead
    of the batch waits for all of it)."""
    timings: list[StepTiming] = [] if steps is None else steps
    enriched = [apply_enrichment(lead, match) for lead, match in zip(leads, matches, strict=True)]
    scores = await timed(timings, "score", lambda: scorer.score_many(enriched, matches))

    async def follow_up() -> list[Tier]:
        return [rules.tier_for(score.value) for score in scores]

    tiers = await timed(timings, "follow_up", follow_up)
    assignments = await timed(
        timings, "assign", lambda: assigner.assign_many(enriched, matches, tiers)
    )
    return [
        make_decision(lead, score, tier, assignment, rules)
        for lead, score, tier, assignment in zip(leads, scores, tiers, assignments, strict=True)
    ]


def make_decision(
    lead: Lead,
    score: Score,
    tier: Tier,
    assignment: Assignment,
    rules: Rules,
    received_at: datetime | None = None,
) -> Decision:
    start = received_at or lead.created_at or datetime.now(UTC)
    held_until = assignment.facts.held_until if assignment.facts else None
    if held_until is not None and held_until > start:
        start = held_until  # held for the first rep on shift: the SLA starts then
    return Decision(
        lead_id=lead.id,
        score=score.value,
        score_reasons=score.reasons,
        tier=tier.name,
        follow_up=tier.follow_up,
        sla_minutes=tier.sla_minutes,
        due_at=start + timedelta(minutes=tier.sla_minutes) if tier.sla_minutes else None,
        rep=assignment.rep,
        assignment_rule=assignment.rule,
        rules_version=rules.version,
    )
