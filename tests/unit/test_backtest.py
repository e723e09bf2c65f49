"""`leadflow backtest`: a stored history decided with old rules, replayed with new
rules whose effect is known, counted per field, and written as the shadow report's
HTML and CSV; on a real SQLite database, with no vendor."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leadflow.app.cli import app
from leadflow.app.runtime import build_runtime
from leadflow.backtest import changes, replay, report, window_start
from leadflow.db import dispose_engines
from leadflow.models import Lead
from leadflow.rehearsal import Rehearsal, scratch_database
from leadflow.report_render import BACKTEST, as_html, mismatches_csv
from leadflow.rules import FitRules, Rules, ScoringRules, TitleRule
from leadflow.settings import Settings
from leadflow.stores.decisions import DecisionStore
from tests.support.routing import ANNA, BEN, MONDAY_TEN, make_rules

SCORING = ScoringRules(
    fit=FitRules(countries={"DE": 45}, title_keywords=[TitleRule(keywords=["vp"], points=30)])
)
SINCE, UNTIL = MONDAY_TEN - timedelta(days=1), MONDAY_TEN + timedelta(days=1)
runner = CliRunner()


def old_rules() -> Rules:
    return make_rules().model_copy(update={"scoring": SCORING})


def new_rules() -> Rules:
    """Two known changes: warm leads (45 points) are hot from 40 points on, and anna
    is away on the Monday the history was made, so ben takes her leads."""
    rules = make_rules(reps={ANNA: {"away": [{"start": "2026-01-12", "end": "2026-01-12"}]}})
    tiers = [t.model_copy(update={"min_score": 40}) if t.name == "hot" else t for t in rules.tiers]
    return rules.model_copy(update={"scoring": SCORING, "tiers": tiers})


def history_leads() -> list[Lead]:
    """Eight German leads a minute apart, every other one a VP (75 points, hot; the
    others 45, warm), and two French ones (0 points, cold) for the rest of the world."""
    leads = []
    for n in range(10):
        leads.append(
            Lead.from_record(
                {
                    "email": f"p{n}@kunde.test",
                    "country": "DE" if n < 8 else "FR",
                    "title": "VP Sales" if n % 2 == 0 else "Buyer",
                    "created_at": (MONDAY_TEN + timedelta(minutes=n)).isoformat(),
                }
            )
        )
    return leads


async def store_history(store: DecisionStore) -> None:
    async with scratch_database() as url:
        rehearsal = Rehearsal(old_rules(), url)
        for lead in history_leads():
            assert lead.created_at is not None
            decision = await rehearsal.decide(lead, None, lead.created_at)
            await store.add([(lead, None, decision)])


@pytest.fixture
def store(tmp_path: Path) -> DecisionStore:
    return DecisionStore(f"sqlite+aiosqlite:///{tmp_path}/leadflow.db", "scope")


async def test_replay_counts_the_known_changes_per_field(store: DecisionStore) -> None:
    await store_history(store)
    history = [item.decision async for item in store.between(SINCE, datetime.now(UTC))]
    # the history as the old rules made it: anna 5 of the 8 German leads (2:1 rotation)
    assert [d.rep for d in history[:8]] == [ANNA, BEN, ANNA, ANNA, BEN, ANNA, ANNA, BEN]
    assert [d.tier for d in history] == ["hot", "warm"] * 4 + ["cold", "cold"]

    records = await replay(store, new_rules(), SINCE, datetime.now(UTC), at="created")
    found = {c.field: (c.changed, dict(c.how)) for c in changes(records)}
    assert found == {
        "tier": (4, {("warm", "hot"): 4}),
        "follow_up": (4, {("email_sequence", "call"): 4}),
        "rep": (5, {(ANNA, BEN): 5}),
        "rule": (0, {}),
    }
    built = report(records, SINCE, UNTIL, new_rules())
    # warm leads 1, 3, 5, 7 change tier; anna's 0, 2, 3, 5, 6 change rep
    assert built.verdict == f"7 of 10 leads would change with rules {new_rules().version}"
    assert built.agreement == {"tier": 0.6, "follow_up": 0.6, "rep": 0.5, "rule": 1.0}
    assert built.confusion == {"hot": {"hot": 4}, "warm": {"hot": 4}, "cold": {"cold": 2}}

    rows = list(csv.DictReader(io.StringIO(mismatches_csv(built, BACKTEST))))
    assert sorted(row["email"] for row in rows) == [
        f"p{n}@kunde.test" for n in (0, 1, 2, 3, 5, 6, 7)
    ]
    p3 = next(row for row in rows if row["email"] == "p3@kunde.test")
    assert (p3["tier_stored"], p3["tier_new"], p3["rep_stored"], p3["rep_new"]) == (
        "warm",
        "hot",
        ANNA,
        BEN,
    )
    page = as_html(built, BACKTEST)
    assert "<h1>Backtest, 2026-01-11 to 2026-01-13</h1>" in page
    assert "stored decisions \\ new rules" in page
    assert "Gates" not in page and "Latency" not in page


async def test_the_same_rules_change_nothing_and_the_live_rotation_does_not_move(
    store: DecisionStore,
) -> None:
    await store_history(store)
    records = await replay(store, old_rules(), SINCE, datetime.now(UTC), at="created")
    assert [c.changed for c in changes(records)] == [0, 0, 0, 0]
    # kept scores: the same answer, whatever the new rules' points say
    zero = old_rules().model_copy(update={"scoring": ScoringRules()})
    kept = await replay(store, zero, SINCE, datetime.now(UTC), at="created", keep_scores=True)
    assert [c.changed for c in changes(kept)] == [0, 0, 0, 0]
    rescored = await replay(store, zero, SINCE, datetime.now(UTC), at="created")
    assert changes(rescored)[0].changed == 8  # every German lead drops to cold


async def test_a_lead_decided_twice_is_replayed_once_in_its_latest_version(
    store: DecisionStore,
) -> None:
    await store_history(store)
    first = history_leads()[1]
    newer = first.model_copy(update={"title": "VP Sales"})  # a new version: 75 points
    async with scratch_database() as url:
        decision = await Rehearsal(old_rules(), url).decide(newer, None, MONDAY_TEN)
    await store.add([(newer, None, decision)])
    records = await replay(store, new_rules(), SINCE, datetime.now(UTC), at="created")
    assert len(records) == 10
    again = next(r for r in records if r.lead_id == first.id)
    assert again.control is not None and again.control.tier == "hot"


@pytest.mark.parametrize(
    ("since", "start"),
    [
        ("14d", MONDAY_TEN - timedelta(days=14)),
        ("36h", MONDAY_TEN - timedelta(hours=36)),
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T09:00:00+01:00", datetime(2026, 1, 1, 8, tzinfo=UTC)),
    ],
)
def test_window_start(since: str, start: datetime) -> None:
    assert window_start(since, MONDAY_TEN) == start


def test_window_start_says_what_it_takes() -> None:
    with pytest.raises(ValueError, match="give a duration such as 14d or 36h"):
        window_start("two weeks", MONDAY_TEN)


# --- the command line --------------------------------------------------------------------


def test_backtest_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/leadflow.db"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    scope = build_runtime(Settings(_env_file=None, database_url=url)).decisions.scope

    async def history() -> None:
        try:
            await store_history(DecisionStore(url, scope))
        finally:
            await dispose_engines()

    asyncio.run(history())
    rules_file = tmp_path / "new.yaml"
    data = new_rules().model_dump(mode="json", exclude={"version"})
    rules_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "reports"
    args = ["backtest", "--rules", str(rules_file), "--at", "created", "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    cells = {
        row[0]: row[1:]
        for row in (
            [cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()
        )
        if row
    }
    assert cells["tier"] == ["4 of 10", "warm -> hot: 4"]
    assert cells["follow_up"] == ["4 of 10", "email_sequence -> call: 4"]
    assert cells["rep"] == ["5 of 10", f"{ANNA} -> {BEN}: 5"]
    assert cells["rule"] == ["0 of 10", "-"]
    assert "7 of 10 leads would change" in result.stdout
    assert sorted(path.suffix for path in out.iterdir()) == [".csv", ".html"]
    # nothing in the window: says so, exit 1; a window it cannot read: exit 2
    empty = runner.invoke(app, [*args, "--since", "2099-01-01"])
    assert empty.exit_code == 1
    assert "no decisions stored since 2099-01-01 00:00 UTC" in empty.stderr
    unreadable = runner.invoke(app, [*args, "--since", "soon"])
    assert unreadable.exit_code == 2
    assert "--since 'soon': give a duration such as 14d" in unreadable.stderr
