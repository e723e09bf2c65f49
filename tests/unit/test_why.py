"""`leadflow why EMAIL`: the stored decision and the facts its assignment was made
from, read back from a real SQLite database by the command line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from leadflow.app.cli import app
from leadflow.assignment import Assigner, assignments
from leadflow.db import dispose_engines, get_engine
from leadflow.decide import decide
from leadflow.integrations.rules_scorer import RulesScorer
from leadflow.models import Lead
from leadflow.rules import FitRules, ScoringRules
from leadflow.stores.decisions import DecisionStore
from tests.support.routing import ANNA, MONDAY_TEN, Clock, make_rules

runner = CliRunner()


def lead(n: int) -> Lead:
    return Lead.from_record(
        {"email": f"P{n}@Kunde.test", "country": "DE", "created_at": MONDAY_TEN.isoformat()}
    )


async def store_history(url: str) -> None:
    """Two German leads on a Monday morning; anna may take one lead a day, so the
    second goes to ben, and the facts say so."""
    base = make_rules(reps={ANNA: {"max_per_day": 1}})
    rules = base.model_copy(update={"scoring": ScoringRules(fit=FitRules(countries={"DE": 45}))})
    assigner = Assigner(rules.assignment, url, clock=Clock(MONDAY_TEN))
    scorer = RulesScorer(rules.scoring)
    store = DecisionStore(url, "scope")
    try:
        for n in (1, 2):
            decision, _ = await decide(lead(n), None, rules=rules, scorer=scorer, assigner=assigner)
            await store.add([(lead(n), None, decision)])
    finally:
        await dispose_engines()


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/leadflow.db"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no developer's .env
    asyncio.run(store_history(url))
    return url


def test_why_shows_the_score_the_owner_and_who_was_skipped(history: str) -> None:
    result = runner.invoke(app, ["why", " p2@kunde.TEST "])
    assert result.exit_code == 0, result.output
    first, *rest = result.output.splitlines()
    assert re.fullmatch(
        r"p2@kunde\.test \(lead \w+\), decided \d{4}-\d\d-\d\d \d\d:\d\d UTC with rules -", first
    ), first
    assert rest == [
        "  score 45 -> tier warm, follow-up email_sequence, SLA 60 min, due 2026-01-12 10:00 UTC",
        "    +45 fit: country DE",
        "  owner ben@example.com, by territory:emea/round_robin:emea",
        "    routed at 2026-01-12 09:00 UTC",
        "    territory emea, team emea",
        "    weights: ben@example.com 1",
        "    credits before: anna@example.com -1, ben@example.com +1",
        "    credits after:  anna@example.com -1, ben@example.com +1",
        "    skipped anna@example.com (territory emea): at cap: 1 of 1 leads today",
    ]


def test_why_for_an_assignment_made_before_facts_were_kept(history: str) -> None:
    async def forget() -> None:
        async with get_engine(history).begin() as connection:
            await connection.execute(update(assignments).values(facts=None))
        await dispose_engines()

    asyncio.run(forget())
    result = runner.invoke(app, ["why", "p1@kunde.test"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == [
        "  owner anna@example.com, by territory:emea/round_robin:emea",
        "    (the routing facts were not recorded for this assignment)",
    ]


def test_why_for_an_unknown_email_says_so_and_exits_1(history: str) -> None:
    result = runner.invoke(app, ["why", "nobody@kunde.test"])
    assert result.exit_code == 1
    assert "no decision stored for nobody@kunde.test" in result.output


def test_why_shows_who_has_the_lead_now_and_its_sla_history(history: str) -> None:
    """p1 was reminded, then reassigned from anna to ben: the decision keeps anna, the
    assignment as it stands says ben, and the SLA's steps follow in order."""
    from datetime import timedelta

    from leadflow.sla import HistoryLine, SlaCase, SlaStore, Status, Step

    async def escalate() -> None:
        rules = make_rules()
        hot = next(t for t in rules.tiers if t.name == "hot")
        assigner = Assigner(rules.assignment, history, clock=Clock(MONDAY_TEN))
        await assigner.reassign(lead(1), None, hot, away_from=ANNA, reason="let the SLA pass")
        case = SlaCase(
            lead_id=lead(1).id,
            scope="scope",
            decision_key="k",
            email="p1@kunde.test",
            tier="warm",
            rep=ANNA,
            assigned_at=MONDAY_TEN,
            due_at=MONDAY_TEN + timedelta(hours=1),
            status=Status.WATCHING,
        )
        due = case.due_at
        lines = [
            HistoryLine(Step.WATCHING, MONDAY_TEN, ANNA, None, "deadline 10:00"),
            HistoryLine(Step.REMINDED, due, ANNA, ANNA, "no first touch"),
            HistoryLine(Step.REASSIGNED, due + timedelta(minutes=10), ANNA, "ben@example.com", "x"),
        ]
        await SlaStore(history, "scope").record(case, lines)
        await dispose_engines()

    asyncio.run(escalate())
    result = runner.invoke(app, ["why", "p1@kunde.test"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index("  owner anna@example.com, by territory:emea/round_robin:emea")
    assert lines[at + 1] == "  owner now ben@example.com, by territory:emea/round_robin:emea"
    assert "    reassigned from anna@example.com: let the SLA pass" in lines
    assert lines[-4:] == [
        "  SLA",
        "    2026-01-12 09:00:00  watching     anna@example.com: deadline 10:00",
        "    2026-01-12 10:00:00  reminded     anna@example.com: no first touch",
        "    2026-01-12 10:10:00  reassigned   anna@example.com -> ben@example.com: x",
    ]
