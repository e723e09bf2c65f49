"""The round robin with availability and caps, on a fixed clock and a real (temporary)
SQLite database: a rep off shift, at a cap, back from leave; a team with nobody
available (next territory, fallback owner, hold); daylight saving; the facts kept;
concurrent workers never going over a cap."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadflow.assignment import Assigner, pick_weighted
from leadflow.availability import AvailabilityOverrides
from leadflow.decide import make_decision
from leadflow.models import CrmMatch, Score
from leadflow.rules import Rep, Rules
from tests.support.routing import (
    ANNA,
    BEN,
    MONDAY_TEN,
    QUEUE,
    WES,
    Clock,
    de_lead,
    make_rules,
    tier,
)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/routing.db"


async def picks(assigner: Assigner, names: list[str], rules: Rules, tier_name: str = "cold"):
    return [await assigner.assign(de_lead(name), None, tier(rules, tier_name)) for name in names]


# --- off shift ---------------------------------------------------------------------------


async def test_off_shift_team_goes_to_the_next_territory_with_the_reasons_kept(
    db_url: str,
) -> None:
    rules = make_rules()
    clock = Clock(datetime(2026, 1, 12, 7, 59, tzinfo=UTC))  # 08:59 in Berlin
    assigner = Assigner(rules.assignment, db_url, clock=clock)
    early = await assigner.assign(de_lead(1), None, tier(rules, "hot"))
    assert (early.rep, early.rule) == (WES, "territory:world/round_robin:world")
    assert early.facts is not None
    assert [(s.rep, s.territory, s.reason) for s in early.facts.skipped] == [
        (
            who,
            "emea",
            "off shift (Mon 08:59 CET; works mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin)",
        )
        for who in (ANNA, BEN)
    ]
    assert (early.facts.tier, early.facts.sla_minutes, early.facts.team) == ("hot", 15, "world")
    clock.now = datetime(2026, 1, 12, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    on_time = await assigner.assign(de_lead(2), None, tier(rules, "hot"))
    assert (on_time.rep, on_time.rule) == (ANNA, "territory:emea/round_robin:emea")
    assert on_time.facts is not None and on_time.facts.skipped == []


async def test_daylight_saving_day_follows_the_wall_clock(db_url: str) -> None:
    """Berlin springs forward on Sunday 29 March 2026: 07:30 UTC is 08:30 on the
    Saturday before and 09:30 on the Monday after, so only the second is on shift."""
    rules = make_rules()
    clock = Clock(datetime(2026, 3, 27, 7, 30, tzinfo=UTC))  # Friday, 08:30 CET
    assigner = Assigner(rules.assignment, db_url, clock=clock)
    assert (await assigner.assign(de_lead(1), None)).rep == WES
    clock.now = datetime(2026, 3, 30, 7, 30, tzinfo=UTC)  # Monday, 09:30 CEST
    assert (await assigner.assign(de_lead(2), None)).rep == ANNA
    clock.now = datetime(2026, 3, 30, 15, 0, tzinfo=UTC)  # Monday, 17:00 CEST
    assert (await assigner.assign(de_lead(3), None)).rep == WES


# --- caps --------------------------------------------------------------------------------


async def test_daily_cap_skips_the_rep_until_their_next_day(db_url: str) -> None:
    rules = make_rules(reps={ANNA: {"max_per_day": 2}})
    clock = Clock(MONDAY_TEN)
    assigner = Assigner(rules.assignment, db_url, clock=clock)
    monday = await picks(assigner, [f"m{i}" for i in range(6)], rules)
    assert [a.rep for a in monday] == [ANNA, BEN, ANNA, BEN, BEN, BEN]
    capped = monday[4].facts
    assert capped is not None
    assert [(s.rep, s.reason) for s in capped.skipped] == [(ANNA, "at cap: 2 of 2 leads today")]
    assert capped.weights == {BEN: 1}  # the pick was among the reps who could take it
    clock.now = MONDAY_TEN + timedelta(days=1)
    tuesday = await picks(assigner, [f"t{i}" for i in range(3)], rules)
    assert ANNA in [a.rep for a in tuesday]


async def test_open_hot_cap_counts_hot_leads_only_and_frees_up_after_open_hours(
    db_url: str,
) -> None:
    rules = make_rules(reps={ANNA: {"max_open_hot": 1}})
    clock = Clock(MONDAY_TEN)
    assigner = Assigner(rules.assignment, db_url, clock=clock)
    first, second = await picks(assigner, ["h1", "h2"], rules, "hot")
    assert (first.rep, second.rep) == (ANNA, BEN)
    assert second.facts is not None
    assert [(s.rep, s.reason) for s in second.facts.skipped] == [
        (ANNA, "at cap: 1 of 1 hot leads in the last 24 h")
    ]
    warm = await picks(assigner, ["w1", "w2"], rules, "warm")
    assert [a.rep for a in warm] == [BEN, ANNA]  # the cap is on hot leads only
    assert all(a.facts is not None and a.facts.skipped == [] for a in warm)
    clock.now = MONDAY_TEN + timedelta(hours=24, minutes=1)
    later = (await picks(assigner, ["h3"], rules, "hot"))[0]
    assert later.facts is not None and later.facts.skipped == []


async def test_caps_hold_across_concurrent_workers(tmp_path: Path) -> None:
    """Two workers (one spells the URL differently, so it has its own pool) assign
    120 leads at once: each capped rep gets exactly their cap, the rest go on."""
    rules = make_rules(reps={ANNA: {"max_per_day": 10}, BEN: {"max_per_day": 7}})
    clock = Clock(MONDAY_TEN)
    url = f"sqlite+aiosqlite:///{tmp_path}/routing.db"
    first = Assigner(rules.assignment, url, clock=clock)
    second = Assigner(rules.assignment, f"sqlite+aiosqlite:///{tmp_path}/./routing.db", clock=clock)
    results = await asyncio.gather(
        *((first if i % 2 else second).assign(de_lead(i), None) for i in range(120))
    )
    assert Counter(r.rep for r in results) == {ANNA: 10, BEN: 7, WES: 103}


# --- back from leave -----------------------------------------------------------------------


async def test_back_from_leave_without_a_flood_or_a_wait(tmp_path: Path) -> None:
    """Ben is away Tuesday and Wednesday (the override file, as an operator would do
    it). Meanwhile anna takes every lead and ben's credit does not move; when he is
    back the team returns to its 2:1 order at once: his first lead within one round,
    his share of the next 30 exact, no catch-up burst."""
    rules = make_rules()
    away = tmp_path / "availability.toml"
    overrides = AvailabilityOverrides(away, known=rules.assignment.rep_ids)
    clock = Clock(MONDAY_TEN)
    assigner = Assigner(
        rules.assignment, f"sqlite+aiosqlite:///{tmp_path}/r.db", overrides=overrides, clock=clock
    )
    monday = await picks(assigner, ["m1", "m2"], rules)
    assert [a.rep for a in monday] == [ANNA, BEN]
    away.write_text(
        '[[away]]\nrep = "ben@example.com"\nstart = 2026-01-13\nend = 2026-01-14\n'
        'reason = "leave"\n'
    )
    clock.now = MONDAY_TEN + timedelta(days=1)
    leave = await picks(assigner, [f"l{i}" for i in range(9)], rules)
    assert {a.rep for a in leave} == {ANNA}
    assert monday[1].facts is not None
    left_with = monday[1].facts.credits_after[BEN]
    assert {a.facts.credits_after[BEN] for a in leave if a.facts} == {left_with}
    assert leave[0].facts is not None
    assert leave[0].facts.skipped[0].reason == "away until 2026-01-15 00:00 CET (leave)"
    clock.now = MONDAY_TEN + timedelta(days=3)
    back = await picks(assigner, [f"b{i}" for i in range(30)], rules)
    reps = [a.rep for a in back]
    assert BEN in reps[:3]
    assert Counter(reps) == {ANNA: 20, BEN: 10}


def test_credits_stay_bounded_whoever_comes_and_goes() -> None:
    """Smooth weighted round robin over a team whose available reps change at random
    for 20,000 picks: every credit stays within the team's total weight times its
    size, so nobody's credit grows while they are away and nobody starves after."""
    rng = random.Random(20)
    weights = {"a": 5, "b": 3, "c": 1, "d": 1}
    total = sum(weights.values())
    credit: dict[str, int] = {}
    away: set[str] = set()
    since_last: Counter[str] = Counter()
    for _ in range(20_000):
        if rng.random() < 0.05:
            away = {rep for rep in weights if rng.random() < 0.4}
        present = [Rep(id=r, weight=w) for r, w in weights.items() if r not in away]
        if not present:
            continue
        chosen, credit = pick_weighted(present, credit)
        for rep in present:
            since_last[rep.id] = 0 if rep.id == chosen else since_last[rep.id] + 1
            # a present rep is picked at least once every (total / weight + len) picks
            assert since_last[rep.id] <= total // rep.weight + len(weights), (rep, credit)
        assert all(abs(value) <= total * len(weights) for value in credit.values()), credit


# --- nobody available -----------------------------------------------------------------------


async def test_nobody_available_goes_to_the_fallback_owner_when_the_territory_says_so(
    db_url: str,
) -> None:
    rules = make_rules(emea={"when_nobody_available": "fallback"})
    clock = Clock(datetime(2026, 1, 17, 10, 0, tzinfo=UTC))  # Saturday
    assigner = Assigner(rules.assignment, db_url, clock=clock)
    found = await assigner.assign(de_lead(1), None, tier(rules, "hot"))
    assert (found.rep, found.rule) == (QUEUE, "fallback:nobody_available:emea")
    assert found.facts is not None
    assert found.facts.note == "nobody in territory emea could take the lead"
    assert {s.rep for s in found.facts.skipped} == {ANNA, BEN}


async def test_hold_for_the_first_rep_on_shift_for_tiers_that_may_wait(db_url: str) -> None:
    rules = make_rules(
        emea={"when_nobody_available": "hold"}, reps={ANNA: {"days_off": ["2026-01-19"]}}
    )
    friday_evening = datetime(2026, 1, 16, 18, 0, tzinfo=UTC)  # 19:00 in Berlin
    assigner = Assigner(rules.assignment, db_url, clock=Clock(friday_evening))
    warm = await assigner.assign(de_lead(1), None, tier(rules, "warm"))
    # anna has Monday off: ben is back first, Monday 09:00 Berlin
    assert (warm.rep, warm.rule) == (BEN, "territory:emea/held:emea")
    monday_nine = datetime(2026, 1, 19, 8, 0, tzinfo=UTC)
    assert warm.facts is not None and warm.facts.held_until == monday_nine
    # its follow-up is due an SLA after that shift starts, not after the lead came in
    decision = make_decision(
        de_lead(1), Score(value=50), tier(rules, "warm"), warm, rules, friday_evening
    )
    assert decision.due_at == monday_nine + timedelta(minutes=60)
    # a hot lead may not wait: the next territory takes it now
    hot = await assigner.assign(de_lead(2), None, tier(rules, "hot"))
    assert (hot.rep, hot.rule) == (WES, "territory:world/round_robin:world")


async def test_hold_ties_share_the_rotation(db_url: str) -> None:
    rules = make_rules(emea={"when_nobody_available": "hold"})
    assigner = Assigner(
        rules.assignment, db_url, clock=Clock(datetime(2026, 1, 17, 10, 0, tzinfo=UTC))
    )
    held = await picks(assigner, ["a", "b", "c"], rules, "warm")
    assert [a.rep for a in held] == [ANNA, BEN, ANNA]
    assert {a.facts.held_until for a in held if a.facts} == {
        datetime(2026, 1, 19, 8, 0, tzinfo=UTC)
    }


# --- the CRM owner ------------------------------------------------------------------------


async def test_crm_owner_away_is_passed_over_but_off_shift_keeps_the_contact(
    db_url: str,
) -> None:
    rules = make_rules(reps={BEN: {"away": [{"start": "2026-01-12", "reason": "parental leave"}]}})
    clock = Clock(datetime(2026, 1, 12, 20, 0, tzinfo=UTC))  # everyone off shift
    assigner = Assigner(rules.assignment, db_url, clock=clock)
    owned_by_anna = await assigner.assign(de_lead(1), CrmMatch(contact_owner=ANNA))
    assert (owned_by_anna.rep, owned_by_anna.rule) == (ANNA, "crm_owner:contact")
    owned_by_ben = await assigner.assign(
        de_lead(2), CrmMatch(contact_owner=BEN, account_owner="zed@example.com")
    )
    assert (owned_by_ben.rep, owned_by_ben.rule) == ("zed@example.com", "crm_owner:account")
    assert owned_by_ben.facts is not None
    assert [(s.rep, s.reason) for s in owned_by_ben.facts.skipped] == [
        (BEN, "CRM contact owner, away until further notice (parental leave)")
    ]


# --- the facts kept --------------------------------------------------------------------------


async def test_the_facts_are_stored_and_a_repeat_returns_them(db_url: str) -> None:
    rules = make_rules(reps={ANNA: {"max_per_day": 1}})
    clock = Clock(MONDAY_TEN)
    assigner = Assigner(rules.assignment, db_url, clock=clock)
    first = await assigner.assign(de_lead(1), None, tier(rules, "warm"))
    second = await assigner.assign(de_lead(2), None, tier(rules, "warm"))
    assert second.facts is not None
    assert second.facts.model_dump() == {
        "at": MONDAY_TEN,
        "tier": "warm",
        "sla_minutes": 60,
        "territory": "emea",
        "team": "emea",
        "weights": {BEN: 1},
        "credits_before": {ANNA: -1, BEN: 1},
        "credits_after": {ANNA: -1, BEN: 1},
        "skipped": [{"rep": ANNA, "reason": "at cap: 1 of 1 leads today", "territory": "emea"}],
        "held_until": None,
        "note": None,
    }
    clock.now += timedelta(hours=1)
    again = Assigner(rules.assignment, db_url, clock=clock)
    assert await again.assign(de_lead(1), None, tier(rules, "hot")) == first
    assert await again.assign(de_lead(2), None) == second
