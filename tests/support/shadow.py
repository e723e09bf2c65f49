"""Shadow-mode data with known answers: decisions, comparison records and a data set of
ten leads and four baseline re-runs, and the report built on it (tests/unit/test_report.py
checks its figures; the browser and hostile-input tests render it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadflow.compare import (
    compare,
)
from leadflow.models import Decision, StepTiming
from leadflow.report import build_report
from leadflow.shadow_settings import Gates
from leadflow.shadow_store import ComparisonRecord

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


TEAMS = {"alice@x": ["na"], "bob@x": ["na"], "ivan@x": ["global"]}


TIERS = {"hot": ("call", 15), "warm": ("email_sequence", 1440), "cold": ("nurture", None)}


def decision(lead: str, score=50, tier="warm", rep="alice@x", rule=None) -> Decision:
    follow_up, sla = TIERS[tier]
    return Decision(
        lead_id=lead,
        score=score,
        score_reasons=[{"group": "fit", "rule": "title has 'vp'", "points": 25}],
        tier=tier,
        follow_up=follow_up,
        sla_minutes=sla,
        due_at=None,
        rep=rep,
        assignment_rule=rule or "territory:north-america/round_robin:na",
        rules_version="v",
    )


def record(i, control, candidate, *, kind="shadow", error=None, fallback=False, email=None):
    return ComparisonRecord(
        run_id="r",
        kind=kind,
        legacy="python:old:decide",
        lead_id=f"l{i}",
        email=email or f"lead{i}@example.test",
        compared_at=NOW - timedelta(days=i % 2, hours=1),
        comparison=compare(control, candidate, rep_teams=TEAMS),
        control=control,
        candidate=candidate,
        candidate_error=error,
        control_ms=float(i + 1),
        candidate_ms=float((i + 1) * 10),
        control_steps=[StepTiming(step="score", duration_ms=1.0)],
        candidate_steps=[
            StepTiming(step="look_up", duration_ms=5.0),
            StepTiming(step="score", duration_ms=1.0),
            StepTiming(step="update_crm", duration_ms=8.0),
            StepTiming(step="notify_team", duration_ms=4.0),
        ],
        fallback=fallback,
    )


def data_set() -> list[ComparisonRecord]:
    """10 leads: 6 agree, 2 warm->hot, 1 score 60->65, 1 leadflow error; a baseline of
    4 re-runs of the current process, one of which moved the lead to another team."""
    rows = [record(i, decision(f"l{i}"), decision(f"l{i}")) for i in range(6)]
    rows += [record(i, decision(f"l{i}", 75), decision(f"l{i}", 75, "hot")) for i in (6, 7)]
    rows.append(record(8, decision("l8", 60), decision("l8", 65)))
    rows.append(record(9, decision("l9"), None, error="RuntimeError: boom"))
    rows += [
        record(20 + i, decision(f"l{i}"), decision(f"l{i}"), kind="baseline") for i in range(3)
    ]
    rows.append(
        record(
            23,
            decision("l3"),
            decision("l3", rep="ivan@x", rule="territory:rest-of-world/round_robin:global"),
            kind="baseline",
        )
    )
    return rows


LOOSE = Gates(min_sample=10, min_agreement=0.7, max_error_rate=0.2, max_p95_ms=100)


def report(rows=None, gates=LOOSE):
    return build_report(
        rows if rows is not None else data_set(),
        since=NOW - timedelta(days=14),
        until=NOW,
        gates=gates,
    )


def compared_decision(**changes) -> Decision:
    base = {
        "lead_id": "l1",
        "score": 72,
        "score_reasons": [],
        "tier": "hot",
        "follow_up": "call",
        "sla_minutes": 15,
        "due_at": None,
        "rep": "alice@x",
        "assignment_rule": "territory:north-america/round_robin:na",
        "rules_version": "v1",
    }
    return Decision.model_validate({**base, **changes})
