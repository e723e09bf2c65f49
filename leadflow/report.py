"""The shadow report: what the stored comparisons over a window say, and the verdict.

Pure: a list of ComparisonRecords in, a ShadowReport out, so every figure can be
checked on a constructed data set. Rendering (markdown, HTML, CSV) is in
leadflow.report_render; reading the store and publishing is the `shadow-report` flow.

The verdict:
- `not enough data` below `gates.min_sample` shadow comparisons in the window;
- `ready` when every gate passes;
- `not ready`, naming each failed gate, otherwise.

Agreement gates are judged against the noise baseline: when the current process
disagrees with itself on a field (round robin, time-dependent rules) in a share of
its baseline re-runs, leadflow is not asked to agree with it more often than it
agrees with itself.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from leadflow.compare import EFFECT_BASIS, EFFECT_FIELDS, FieldResult, Outcome, territory_of
from leadflow.models import Decision, StepTiming
from leadflow.shadow_settings import Gates
from leadflow.shadow_store import ComparisonRecord

VERDICT_READY = "ready"
VERDICT_NOT_READY = "not ready"
VERDICT_NO_DATA = "not enough data"

# An intended effect's noise is that of the decision field it carries (EFFECT_BASIS),
# and a lead's mismatch pattern names the effect only when that field matched.


class SideStats(BaseModel):
    leads: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    durations_ms: list[float] = Field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.leads if self.leads else 0.0


class Example(BaseModel):
    lead_id: str
    email: str | None
    control_reasons: list[str]
    candidate_reasons: list[str]
    control_rule: str | None
    candidate_rule: str | None


class Pattern(BaseModel):
    """Leads that differ in the same fields with the same values."""

    differences: dict[str, tuple[Any, Any]]
    count: int
    examples: list[Example]

    @property
    def label(self) -> str:
        return "; ".join(
            f"{field}: {old} -> {new}" for field, (old, new) in self.differences.items()
        )


class Gate(BaseModel):
    name: str
    passed: bool
    detail: str


class Timeline(BaseModel):
    lead_id: str
    email: str | None
    outcome: str
    control: list[tuple[str, float, float]]  # step, start ms, duration ms
    candidate: list[tuple[str, float, float]]


class ShadowReport(BaseModel):
    since: datetime
    until: datetime
    legacy: list[str]
    sample: int
    outcomes: dict[str, int]
    agreement: dict[str, float | None]
    noise: dict[str, float]
    baseline_sample: int
    by_day: list[tuple[str, int, float]]  # day, leads, agreement (all fields matched)
    confusion: dict[str, dict[str, int]]  # control tier -> candidate tier -> leads
    patterns: list[Pattern]
    control: SideStats
    candidate: SideStats
    pilot_leads: int
    fallbacks: int
    gates: list[Gate]
    verdict: str
    timelines: list[Timeline]
    mismatches: list[ComparisonRecord] = Field(default_factory=list)

    @property
    def failed_gates(self) -> list[Gate]:
        return [gate for gate in self.gates if not gate.passed]


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `share` of the values
    at or below it (p50 of 1..10 is 5, p95 is 10)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _side(records: list[ComparisonRecord], which: str) -> SideStats:
    durations = [
        getattr(r, f"{which}_ms") for r in records if getattr(r, f"{which}_ms") is not None
    ]
    return SideStats(
        leads=len(records),
        errors=sum(1 for r in records if getattr(r, f"{which}_error")),
        p50_ms=percentile(durations, 0.5),
        p95_ms=percentile(durations, 0.95),
        durations_ms=durations,
    )


def _judged(record: ComparisonRecord) -> dict[str, FieldResult]:
    return {**record.comparison.fields, **record.comparison.effects}


def _agreement(records: list[ComparisonRecord], field: str) -> float | None:
    judged = [_judged(r)[field].outcome for r in records if field in _judged(r)]
    counted = [o for o in judged if o in (Outcome.MATCHED, Outcome.MISMATCHED)]
    return counted.count(Outcome.MATCHED) / len(counted) if counted else None


def _reasons(decision: Decision | None) -> list[str]:
    return [f"{r.rule}: {r.points:+d}" for r in decision.score_reasons] if decision else []


def _example(record: ComparisonRecord) -> Example:
    return Example(
        lead_id=record.lead_id,
        email=record.email,
        control_reasons=_reasons(record.control),
        candidate_reasons=_reasons(record.candidate),
        control_rule=record.control.assignment_rule if record.control else None,
        candidate_rule=record.candidate.assignment_rule if record.candidate else None,
    )


def _patterns(mismatched: list[ComparisonRecord], top: int, examples: int) -> list[Pattern]:
    groups: dict[tuple[tuple[str, str, str], ...], list[ComparisonRecord]] = defaultdict(list)
    for record in mismatched:
        differing = record.comparison.mismatched_fields
        key = tuple(
            _difference(name, result.control, result.candidate, record)
            for name, result in _judged(record).items()
            if result.outcome is Outcome.MISMATCHED and EFFECT_BASIS.get(name) not in differing
        )
        groups[key].append(record)
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [
        Pattern(
            differences={name: (old, new) for name, old, new in key},
            count=len(found),
            examples=[_example(r) for r in found[:examples]],
        )
        for key, found in ranked[:top]
    ]


def _difference(name: str, old: Any, new: Any, record: ComparisonRecord) -> tuple[str, str, str]:
    """One field's difference as a pattern key. Two reps picked by round robin in
    different territories are one pattern, whichever reps the rotations reached."""
    if name == "rep" and record.control and record.candidate:
        ours = territory_of(record.candidate.assignment_rule)
        theirs = territory_of(record.control.assignment_rule)
        if ours and theirs:
            return "territory", theirs, ours
    return name, str(old), str(new)


def _timeline(steps: list[StepTiming]) -> list[tuple[str, float, float]]:
    """Start and length of each step: steps in order one after another, except the
    side-effect branches, which start together after the decision."""
    bars: list[tuple[str, float, float]] = []
    clock, branch_start = 0.0, None
    for step in steps:
        if step.step in ("update_crm", "notify_team", "log_event"):
            branch_start = clock if branch_start is None else branch_start
            bars.append((step.step, branch_start, step.duration_ms))
        else:
            bars.append((step.step, clock, step.duration_ms))
            clock += step.duration_ms
    return bars


def _timelines(records: list[ComparisonRecord], count: int) -> list[Timeline]:
    chosen = [r for r in records if r.outcome is Outcome.MISMATCHED][: count // 2]
    chosen += [r for r in records if r.outcome is Outcome.MATCHED][: count - len(chosen)]
    return [
        Timeline(
            lead_id=r.lead_id,
            email=r.email,
            outcome=r.outcome.value,
            control=_timeline(r.control_steps),
            candidate=_timeline(r.candidate_steps),
        )
        for r in chosen
        if r.control_steps or r.candidate_steps
    ]


def latest_per_lead(records: list[ComparisonRecord]) -> list[ComparisonRecord]:
    """One comparison per lead, current process and kind: the latest. Running the
    same file again (a replay, a second `make shadow`) replaces its leads' comparisons
    instead of counting them twice."""
    latest: dict[tuple[str, str, str], ComparisonRecord] = {}
    for record in sorted(records, key=lambda r: r.compared_at):
        latest[(record.kind, record.legacy, record.lead_id)] = record
    return sorted(latest.values(), key=lambda r: r.compared_at)


def build_report(
    records: list[ComparisonRecord],
    *,
    since: datetime,
    until: datetime,
    gates: Gates,
    top_patterns: int = 5,
    examples_per_pattern: int = 3,
) -> ShadowReport:
    records = latest_per_lead(records)
    shadow = [r for r in records if r.kind in ("shadow", "pilot")]
    baseline = [r for r in records if r.kind == "baseline"]
    pilot = [r for r in records if r.kind == "pilot"]
    effects = [e for e in EFFECT_FIELDS if any(e in r.comparison.effects for r in shadow)]
    agreement = {f: _agreement(shadow, f) for f in (*Decision.COMPARED_FIELDS, *effects)}
    noise = {}
    for field in Decision.COMPARED_FIELDS:
        agreed = _agreement(baseline, field)
        noise[field] = 1 - agreed if agreed is not None else 0.0
    for effect in effects:
        noise[effect] = noise.get(EFFECT_BASIS.get(effect, ""), 0.0)
    days: dict[str, list[ComparisonRecord]] = defaultdict(list)
    for r in shadow:
        days[r.compared_at.date().isoformat()].append(r)
    by_day = []
    for day, found in sorted(days.items()):
        judged = [r for r in found if r.outcome is not Outcome.ERROR]
        share = (
            sum(r.outcome is not Outcome.MISMATCHED for r in judged) / len(judged) if judged else 0
        )
        by_day.append((day, len(found), share))
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in shadow:
        if r.control and r.candidate and r.comparison.fields["tier"].outcome is not Outcome.IGNORED:
            confusion[r.control.tier][r.candidate.tier] += 1
    mismatched = [r for r in shadow if r.outcome is Outcome.MISMATCHED]
    control, candidate = _side(shadow, "control"), _side(shadow, "candidate")
    fallbacks = sum(r.fallback for r in pilot)
    checks = _gates(len(shadow), agreement, noise, candidate, len(pilot), fallbacks, gates)
    if len(shadow) < gates.min_sample:
        verdict = VERDICT_NO_DATA
    else:
        verdict = VERDICT_READY if all(g.passed for g in checks) else VERDICT_NOT_READY
    return ShadowReport(
        since=since,
        until=until,
        legacy=sorted({r.legacy for r in shadow}),
        sample=len(shadow),
        outcomes=dict(Counter(r.outcome.value for r in shadow)),
        agreement=agreement,
        noise=noise,
        baseline_sample=len(baseline),
        by_day=by_day,
        confusion={k: dict(v) for k, v in confusion.items()},
        patterns=_patterns(mismatched, top_patterns, examples_per_pattern),
        control=control,
        candidate=candidate,
        pilot_leads=len(pilot),
        fallbacks=fallbacks,
        gates=checks,
        verdict=verdict,
        timelines=_timelines(shadow, 4),
        mismatches=mismatched,
    )


def _gates(
    sample: int,
    agreement: dict[str, float | None],
    noise: dict[str, float],
    candidate: SideStats,
    pilot: int,
    fallbacks: int,
    gates: Gates,
) -> list[Gate]:
    checks = [
        Gate(
            name="sample",
            passed=sample >= gates.min_sample,
            detail=f"{sample} leads compared, {gates.min_sample} needed",
        )
    ]
    for field, share in agreement.items():
        if share is None:
            continue
        needed = max(0.0, gates.min_agreement - noise[field])
        noise_note = f" (current process's own noise {noise[field]:.1%})" if noise[field] else ""
        checks.append(
            Gate(
                name=f"agreement:{field}",
                passed=share >= needed,
                detail=f"{share:.1%} agree, {needed:.1%} needed{noise_note}",
            )
        )
    checks.append(
        Gate(
            name="error_rate",
            passed=candidate.error_rate <= gates.max_error_rate,
            detail=f"leadflow failed on {candidate.error_rate:.1%} of leads, "
            f"at most {gates.max_error_rate:.1%} allowed",
        )
    )
    p95 = candidate.p95_ms
    checks.append(
        Gate(
            name="latency_p95",
            passed=p95 is None or p95 <= gates.max_p95_ms,
            detail=f"leadflow p95 {p95 or 0:.0f} ms, at most {gates.max_p95_ms:.0f} ms allowed",
        )
    )
    if pilot:
        rate = fallbacks / pilot
        checks.append(
            Gate(
                name="fallbacks",
                passed=rate <= gates.max_fallback_rate,
                detail=f"{fallbacks} of {pilot} pilot leads fell back ({rate:.1%}), "
                f"at most {gates.max_fallback_rate:.1%} allowed",
            )
        )
    return checks
