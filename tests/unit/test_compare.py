"""Comparison rules, and the comparison store on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadflow.compare import (
    EVENT_TYPE,
    CompareRules,
    Outcome,
    compare,
    decision_from_answer,
    implied_effects,
)
from leadflow.integrations.base import LeadEvent
from leadflow.models import Decision
from leadflow.shadow_store import ComparisonRecord, ComparisonStore
from tests.support.shadow import TEAMS
from tests.support.shadow import compared_decision as decision


def test_equal_decisions_match_field_by_field():
    result = compare(decision(), decision(rules_version="other"))
    assert result.outcome is Outcome.MATCHED
    assert {r.outcome for r in result.fields.values()} == {Outcome.MATCHED}


def test_score_tolerance():
    rules = CompareRules(score_tolerance=3)
    assert compare(decision(score=70), decision(score=72), rules=rules).outcome is Outcome.MATCHED
    far = compare(decision(score=68), decision(score=72), rules=rules)
    assert far.mismatched_fields == ["score"]
    assert (far.fields["score"].control, far.fields["score"].candidate) == (68, 72)


def test_round_robin_equivalence_by_team_territory_or_exact():
    other_pick = decision(rep="bob@x")
    team = compare(other_pick, decision(), rep_teams=TEAMS)
    assert team.outcome is Outcome.MATCHED and team.fields["rep"].note == "same team na"
    exact = compare(other_pick, decision(), rules=CompareRules(rep_equivalence="exact"))
    assert exact.mismatched_fields == ["rep"]
    territory = CompareRules(rep_equivalence="territory")
    assert compare(other_pick, decision(), rules=territory).outcome is Outcome.MATCHED
    elsewhere = decision(rep="bob@x", assignment_rule="territory:emea/round_robin:na")
    assert compare(elsewhere, decision(), rules=territory).mismatched_fields == ["rep"]
    # another team is a real difference; so is a CRM owner (a fact, not a rotation)
    assert compare(decision(rep="ivan@x"), decision(), rep_teams=TEAMS).mismatched_fields == ["rep"]
    owner = decision(assignment_rule="crm_owner:contact")
    assert compare(other_pick, owner, rep_teams=TEAMS).mismatched_fields == ["rep"]


def recorded(d: Decision, **changes) -> dict:
    """The recorders' journal (integrations.recorders) for leadflow acting on `d`."""
    notes = {
        "crm": {"email": "a@x", "owner": d.rep, "tier": d.tier, "score": d.score},
        "notify": {"to": d.rep, "follow_up": d.follow_up.value, "due_at": None},
        "event": {"event_id": "e1", "type": EVENT_TYPE},
    }
    for name, value in changes.items():
        effect, _, key = name.partition("__")
        if value is None:
            notes.pop(effect)
        else:
            notes[effect][key] = value
    return notes


def test_intended_effects_match_what_the_current_process_decision_implies():
    ours = decision()
    result = compare(decision(), ours, intended=recorded(ours))
    assert result.outcome is Outcome.MATCHED
    assert set(result.effects) == {
        "crm.owner",
        "crm.tier",
        "notify.to",
        "notify.follow_up",
        "event.type",
    }
    assert {r.outcome for r in result.effects.values()} == {Outcome.MATCHED}
    assert implied_effects(ours)["event"]["type"] == LeadEvent.model_fields["type"].default


def test_each_intended_effect_that_differs_is_a_mismatch():
    ours = decision()
    # leadflow decided alice but would write another owner: only the effect differs
    owner = compare(decision(), ours, intended=recorded(ours, crm__owner="ivan@x"))
    assert owner.mismatched_fields == ["crm.owner"]
    assert (owner.effects["crm.owner"].control, owner.effects["crm.owner"].candidate) == (
        "alice@x",
        "ivan@x",
    )
    kind = compare(decision(), ours, intended=recorded(ours, notify__follow_up="email"))
    assert kind.mismatched_fields == ["notify.follow_up"]
    event = compare(decision(), ours, intended=recorded(ours, event__type="lead.ignored"))
    assert event.mismatched_fields == ["event.type"]
    silent = compare(decision(), ours, intended=recorded(ours, notify=None))
    assert silent.mismatched_fields == ["notify.to", "notify.follow_up"]
    assert silent.effects["notify.to"].note == "leadflow would not do this"
    # a different decision shows in the effects that carry it
    hot = decision(tier="warm")
    assert compare(hot, ours, intended=recorded(ours)).mismatched_fields == ["tier", "crm.tier"]


def test_effects_follow_the_rep_equivalence_ignore_normalise_and_selection():
    ours = decision()
    other_pick = decision(rep="bob@x")
    team = compare(other_pick, ours, rep_teams=TEAMS, intended=recorded(ours))
    assert team.outcome is Outcome.MATCHED
    assert team.effects["notify.to"].note == "same team na"
    exact = CompareRules(rep_equivalence="exact")
    strict = compare(other_pick, ours, rules=exact, rep_teams=TEAMS, intended=recorded(ours))
    assert strict.mismatched_fields == ["rep", "crm.owner", "notify.to"]
    ignored = CompareRules(ignore=["event.type"])
    odd = recorded(ours, event__type="lead.ignored")
    assert compare(decision(), ours, rules=ignored, intended=odd).outcome is Outcome.MATCHED
    assert (
        compare(decision(), ours, rules=ignored, intended=odd).effects["event.type"].outcome
        is Outcome.IGNORED
    )
    mapped = CompareRules(normalise={"notify.follow_up": {"phone": "call"}})
    phoned = recorded(ours, notify__follow_up="phone")
    assert compare(decision(), ours, rules=mapped, intended=phoned).outcome is Outcome.MATCHED
    only = CompareRules(effects=["event.type"])
    assert list(compare(decision(), ours, rules=only, intended=recorded(ours)).effects) == [
        "event.type"
    ]
    assert compare(decision(), ours).effects == {}  # no recording (baseline, pilot): none
    # an effect carrying a field the current process does not provide is not compared
    observed = compare(decision(), ours, provides=["score", "rep"], intended=recorded(ours))
    assert observed.effects["crm.tier"].outcome is Outcome.IGNORED
    assert observed.effects["crm.owner"].outcome is Outcome.MATCHED
    failed = compare(decision(), None, intended={})
    assert {r.outcome for r in failed.effects.values()} == {Outcome.ERROR}


def test_ignore_and_normalise_rules():
    rules = CompareRules(ignore=["sla_minutes"], normalise={"tier": {"SQL": "hot"}})
    result = compare(decision(tier="sql", sla_minutes=60), decision(), rules=rules)
    assert result.outcome is Outcome.MATCHED
    assert result.fields["sla_minutes"].outcome is Outcome.IGNORED
    assert result.fields["tier"].outcome is Outcome.MATCHED


def test_fields_not_provided_are_ignored_and_a_missing_side_is_an_error():
    partial = decision_from_answer(
        {"score": "72", "rep": "alice@x", "tier": "hot"},
        lead_id="l1",
        provides=("score", "tier", "rep"),
    )
    result = compare(partial, decision(), provides=("score", "tier", "rep"))
    assert result.outcome is Outcome.MATCHED
    assert result.fields["follow_up"].outcome is Outcome.IGNORED
    failed = compare(None, decision())
    assert failed.outcome is Outcome.ERROR and failed.fields["tier"].outcome is Outcome.ERROR
    only_ignored = compare(decision(), decision(), provides=())
    assert only_ignored.outcome is Outcome.IGNORED


async def test_the_store_keeps_both_sides_and_reads_back_a_window(tmp_path):
    store = ComparisonStore(f"sqlite+aiosqlite:///{tmp_path / 'shadow.db'}")
    now = datetime.now(UTC)
    old = ComparisonRecord(
        run_id="r0",
        lead_id="l0",
        compared_at=now - timedelta(days=20),
        comparison=compare(decision(), decision()),
    )
    new = ComparisonRecord(
        run_id="r1",
        lead_id="l1",
        email="a@b.test",
        compared_at=now,
        comparison=compare(
            decision(score=60), decision(), intended=recorded(decision(), crm__owner="ivan@x")
        ),
        control=decision(score=60),
        candidate=decision(),
        candidate_error=None,
        control_ms=12.5,
        candidate_ms=40.0,
        intended={"crm": {"rep": "alice@x"}},
        record={"email": "a@b.test"},
    )
    await store.add_many([old, new])
    found = await store.in_window(now - timedelta(days=14))
    assert [r.lead_id for r in found] == ["l1"]
    assert found[0].comparison.mismatched_fields == ["score", "crm.owner"]
    assert found[0].comparison == new.comparison  # the effects' outcomes read back too
    assert found[0].control.score == 60 and found[0].control_ms == 12.5
    assert found[0].intended == {"crm": {"rep": "alice@x"}}
    assert len(await store.in_window(now - timedelta(days=30))) == 2


def test_a_shadow_runs_summary_counts_every_error_and_keeps_the_first_thousand():
    """A long file whose current process fails for every lead: the summary's lists stop
    at SUMMARY_LIST_LIMIT (memory stays flat), the totals and the outcomes count all."""
    from leadflow.flows.shadow_summary import ShadowTally
    from leadflow.flows.summary import SUMMARY_LIST_LIMIT
    from leadflow.intake import Rejection

    tally = ShadowTally("leads.csv", "python:old:decide")
    failing = [
        ComparisonRecord(
            run_id="r",
            lead_id=f"l{n}",
            comparison=compare(None, decision()),
            candidate=decision(),
            control_error="RuntimeError: the old script fell over",
        )
        for n in range(SUMMARY_LIST_LIMIT + 5)
    ]
    tally.add(failing[:10])
    tally.add(failing[10:])
    bad = Rejection(
        key="k", origin="leads.csv", position=2, lead_ref="row 2", reason="email: missing", data={}
    )
    tally.set_aside([bad] * (SUMMARY_LIST_LIMIT + 1))
    summary = tally.final()
    assert len(summary.control_errors) == len(summary.set_aside) == SUMMARY_LIST_LIMIT
    assert summary.control_errors_total == summary.compared == SUMMARY_LIST_LIMIT + 5
    assert summary.set_aside_total == SUMMARY_LIST_LIMIT + 1
    assert summary.outcomes == {"error": SUMMARY_LIST_LIMIT + 5}
    assert summary.candidate_errors == [] and summary.candidate_errors_total == 0
    assert f"{SUMMARY_LIST_LIMIT + 1} records set aside" in summary.as_markdown()
