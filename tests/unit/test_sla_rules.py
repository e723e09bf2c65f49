"""SLAs that act, rule by rule on a fixed clock: when a case waits, is closed as
contacted, reminds, escalates or lapses (leadflow.sla.next_action); which leads are
watched at all; the rules keys; the reassignment through the Assigner's own waterfall
(the late rep passed over, caps and shifts still counted, idempotent by the stored
row); and the store: cases opened once per lead, history kept once per step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from leadflow.assignment import Assigner
from leadflow.models import Lead
from leadflow.rules import Rules
from leadflow.schema import upgrade_schema
from leadflow.sla import (
    Action,
    HistoryLine,
    SlaCase,
    SlaStore,
    Status,
    Step,
    history,
    next_action,
    watched,
)
from leadflow.stores.decisions import DecisionStore
from tests.support.routing import ANNA, BEN, MONDAY_TEN, QUEUE, WES, Clock, make_rules, tier

DUE = datetime(2026, 1, 12, 9, 15, tzinfo=UTC)
ASSIGNED = DUE - timedelta(minutes=15)
TEN_MIN = timedelta(minutes=10)
DAY = timedelta(hours=24)


def case(**changes) -> SlaCase:
    values = {
        "lead_id": "l1",
        "scope": "s",
        "decision_key": "k",
        "email": "ava@kunde.test",
        "tier": "hot",
        "rep": ANNA,
        "assigned_at": ASSIGNED,
        "due_at": DUE,
        "status": Status.WATCHING,
    }
    return SlaCase.model_validate({**values, **changes})


def act(c: SlaCase, now: datetime, touched: datetime | None = None, escalate=TEN_MIN) -> Action:
    return next_action(c, now=now, touched_at=touched, escalate_after=escalate, give_up_after=DAY)


# --- next_action -------------------------------------------------------------------


def test_before_the_deadline_nothing_happens() -> None:
    assert act(case(), DUE - timedelta(seconds=1)) is Action.WAIT


def test_the_deadline_passed_without_a_touch_reminds_the_rep() -> None:
    assert act(case(), DUE) is Action.REMIND
    assert act(case(), DUE + timedelta(hours=3)) is Action.REMIND  # the watcher was down


def test_a_touch_closes_the_case_whenever_it_is_seen() -> None:
    touched = DUE - timedelta(minutes=5)
    assert act(case(), DUE, touched) is Action.CONTACTED
    reminded = case(status=Status.REMINDED, reminded_at=DUE)
    assert act(reminded, DUE + TEN_MIN, DUE + timedelta(minutes=2)) is Action.CONTACTED
    escalated = case(status=Status.ESCALATED, reminded_at=DUE, escalated_at=DUE + TEN_MIN)
    assert act(escalated, DUE + DAY, DUE + DAY) is Action.CONTACTED


def test_escalation_comes_the_tiers_step_after_the_reminder() -> None:
    reminded = case(status=Status.REMINDED, reminded_at=DUE)
    assert act(reminded, DUE + TEN_MIN - timedelta(seconds=1)) is Action.WAIT
    assert act(reminded, DUE + TEN_MIN) is Action.ESCALATE


def test_a_late_reminder_still_gives_the_rep_the_whole_step() -> None:
    late = case(status=Status.REMINDED, reminded_at=DUE + timedelta(hours=1))
    assert act(late, DUE + timedelta(hours=1, minutes=5)) is Action.WAIT
    assert act(late, DUE + timedelta(hours=1, minutes=10)) is Action.ESCALATE


def test_a_tier_without_escalation_reminds_then_lapses() -> None:
    reminded = case(status=Status.REMINDED, reminded_at=DUE)
    assert act(reminded, DUE + timedelta(hours=23), escalate=None) is Action.WAIT
    assert act(reminded, DUE + DAY, escalate=None) is Action.LAPSE


def test_an_escalated_case_is_watched_for_a_touch_then_lapses() -> None:
    escalated = case(status=Status.ESCALATED, reminded_at=DUE, escalated_at=DUE + TEN_MIN)
    assert act(escalated, DUE + TEN_MIN + timedelta(hours=23)) is Action.WAIT
    assert act(escalated, DUE + TEN_MIN + DAY) is Action.LAPSE


def test_an_escalation_still_due_is_not_lapsed_past() -> None:
    """A tier escalating after more than the give-up time still escalates."""
    reminded = case(status=Status.REMINDED, reminded_at=DUE)
    assert act(reminded, DUE + 2 * DAY, escalate=timedelta(hours=36)) is Action.ESCALATE


def test_a_closed_case_is_left_alone() -> None:
    for status in (Status.CONTACTED, Status.LAPSED, Status.NOT_WATCHED):
        assert act(case(status=status), DUE + TEN_MIN) is Action.WAIT


def test_a_deadline_long_past_when_first_seen_is_not_watched() -> None:
    """Leads loaded from an old export: no morning of reminders for last month."""
    assert watched(DUE, now=DUE + timedelta(hours=23), give_up_after=DAY)
    assert not watched(DUE, now=DUE + DAY, give_up_after=DAY)


# --- the rules keys ----------------------------------------------------------------


def test_escalation_and_managers_in_the_rules() -> None:
    rules = make_rules()
    data = rules.model_dump(mode="json", exclude={"version"})
    data["tiers"][0]["escalate_after_minutes"] = 0.5
    data["assignment"]["teams"]["emea"]["manager"] = "mia@example.com"
    data["assignment"]["manager"] = "head@example.com"
    parsed = Rules.model_validate(data)
    assert parsed.tiers[0].escalate_after_minutes == 0.5
    assert parsed.assignment.team_of(BEN) == "emea"
    assert parsed.assignment.team_of("nobody@example.com") is None
    assert parsed.assignment.manager_for("emea") == "mia@example.com"
    assert parsed.assignment.manager_for("world") == "head@example.com"
    assert parsed.assignment.manager_for(None) == "head@example.com"
    assert make_rules().assignment.manager_for("emea") is None


def test_escalation_needs_a_deadline() -> None:
    data = make_rules().model_dump(mode="json", exclude={"version"})
    data["tiers"][2]["escalate_after_minutes"] = 30  # cold: no sla_minutes
    with pytest.raises(ValidationError, match="escalate_after_minutes needs sla_minutes"):
        Rules.model_validate(data)


# --- the reassignment --------------------------------------------------------------


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/sla.db"


def lead(name: str) -> Lead:
    return Lead.from_record({"email": f"{name}@kunde.test", "country": "DE"})


async def test_reassignment_passes_the_late_rep_over_in_the_same_waterfall(db_url: str) -> None:
    rules = make_rules()
    hot = tier(rules, "hot")
    assigner = Assigner(rules.assignment, db_url, clock=Clock(MONDAY_TEN))
    first = await assigner.assign(lead("ava"), None, hot)
    assert first.rep == ANNA
    moved = await assigner.reassign(lead("ava"), None, hot, away_from=ANNA, reason="late")
    assert moved is not None and moved.rep == BEN
    assert moved.rule == "territory:emea/round_robin:emea"
    assert moved.facts is not None and moved.facts.note == f"reassigned from {ANNA}: late"
    assert [(s.rep, s.reason) for s in moved.facts.skipped] == [(ANNA, "late")]
    # the stored assignment moved: a repeat of assign (a rerun) answers with the new rep
    assert (await assigner.assign(lead("ava"), None, hot)).rep == BEN
    # and a repeat of the reassignment (its caller died before recording it) picks nobody new
    again = await assigner.reassign(lead("ava"), None, hot, away_from=ANNA, reason="late")
    assert again is not None and again.rep == BEN


async def test_reassignment_counts_shifts_and_caps(db_url: str) -> None:
    """Ben is at his daily cap: the lead leaves the team for the next territory."""
    rules = make_rules(reps={BEN: {"max_per_day": 1}})
    hot = tier(rules, "hot")
    assigner = Assigner(rules.assignment, db_url, clock=Clock(MONDAY_TEN))
    assert [(await assigner.assign(lead(n), None, hot)).rep for n in ("a", "b")] == [ANNA, BEN]
    moved = await assigner.reassign(lead("a"), None, hot, away_from=ANNA, reason="late")
    assert moved is not None
    assert (moved.rep, moved.rule) == (WES, "territory:world/round_robin:world")


async def test_the_crm_owner_who_let_the_sla_pass_is_passed_over(db_url: str) -> None:
    from leadflow.models import CrmMatch

    rules = make_rules()
    hot = tier(rules, "hot")
    owned = CrmMatch(contact_owner=ANNA)
    assigner = Assigner(rules.assignment, db_url, clock=Clock(MONDAY_TEN))
    assert (await assigner.assign(lead("ava"), owned, hot)).rule == "crm_owner:contact"
    moved = await assigner.reassign(lead("ava"), owned, hot, away_from=ANNA, reason="late")
    assert moved is not None and moved.rep != ANNA
    assert moved.facts is not None
    assert moved.facts.skipped[0].reason == "CRM contact owner, late"


async def test_nobody_else_leaves_the_lead_where_it_is(db_url: str) -> None:
    """The fallback owner let it pass, and nobody else is on shift or in a territory."""
    rules = make_rules(emea={"countries": ["FR"]})
    data = rules.model_dump(mode="json", exclude={"version"})
    data["assignment"]["territories"] = []
    rules = Rules.model_validate(data)
    assigner = Assigner(rules.assignment, db_url, clock=Clock(MONDAY_TEN))
    hot = tier(rules, "hot")
    assert (await assigner.assign(lead("ava"), None, hot)).rep == QUEUE
    assert await assigner.reassign(lead("ava"), None, hot, away_from=QUEUE, reason="x") is None
    assert (await assigner.assign(lead("ava"), None, hot)).rep == QUEUE


# --- the store ---------------------------------------------------------------------


async def stored_decision(db_url: str, rules: Rules, name: str, *, at: datetime):
    """A decision made at `at` and stored as the engine stores it."""
    from leadflow.decide import make_decision
    from leadflow.models import Score

    hot = tier(rules, "hot")
    assignment = await Assigner(rules.assignment, db_url, clock=Clock(at)).assign(
        lead(name), None, hot
    )
    decision = make_decision(lead(name), Score(value=90), hot, assignment, rules, at)
    store = DecisionStore(db_url, "s")
    await store.add([(lead(name), None, decision)])
    return decision


async def test_cases_open_once_per_lead_and_history_is_kept_once_per_step(db_url: str) -> None:
    await upgrade_schema(db_url)
    rules = make_rules()
    decision = await stored_decision(db_url, rules, "ava", at=MONDAY_TEN)
    decisions = DecisionStore(db_url, "s")
    found = [d async for d in decisions.between(MONDAY_TEN - DAY, datetime.now(UTC) + DAY)]
    store = SlaStore(db_url, "s")
    now = MONDAY_TEN + timedelta(minutes=1)
    first = await store.register(found, now=now, give_up_after=DAY, scanned_until=now)
    assert [(r.case.email, r.case.rep, r.watched) for r in first] == [
        ("ava@kunde.test", ANNA, True)
    ]
    assert first[0].case.due_at == decision.due_at
    again = await store.register(found, now=now, give_up_after=DAY, scanned_until=now)
    assert again == []  # seen before: no second case
    assert await store.scan_start(default=MONDAY_TEN) == now - timedelta(minutes=10)

    assert await store.due(MONDAY_TEN + timedelta(minutes=14)) == []
    (due,) = await store.due(MONDAY_TEN + timedelta(minutes=15))
    line = HistoryLine(Step.REMINDED, DUE, ANNA, ANNA, "no touch")
    await store.record(due, [line], status=Status.REMINDED, reminded_at=DUE)
    await store.record(due, [HistoryLine(Step.REMINDED, DUE + DAY, ANNA, ANNA, "again")])
    (reminded,) = await store.due(DUE + DAY)
    assert (reminded.status, reminded.reminded_at) == (Status.REMINDED, DUE)
    steps = (await history(db_url, [due.lead_id]))[due.lead_id]
    assert [(s.step, s.detail) for s in steps] == [
        (Step.WATCHING, "deadline 2026-01-12 09:15 UTC (tier hot)"),
        (Step.REMINDED, "no touch"),
    ]
    await store.record(due, [], status=Status.CONTACTED, closed_at=DUE + DAY)
    assert await store.due(DUE + DAY) == []
