"""Comparing what the current process decided with what leadflow decided.

Pure functions over two Decisions: no I/O, no Prefect, so the shadow flow, the
report and the tests share one definition of "the same decision".

Each field in `Decision.COMPARED_FIELDS` gets one outcome:

- `matched`: equal after normalising (or equivalent: a score within the tolerance,
  two round-robin picks from the same team);
- `mismatched`: different;
- `ignored`: configured to be ignored, or a field the control does not provide
  (an export that has the owner but no SLA);
- `error`: one side has no decision (it raised or timed out).

The intended side effects are compared too (`CompareRules.effects`): what leadflow's
recorders kept (the CRM write, the notification, the event) against what the current
process would do, which is what its decision implies (`implied_effects`: the CRM
contact owned by its rep with its tier, its rep notified with its follow-up, the
event `lead.processed`). So an effect differs when the decision behind it does, and
also when leadflow would not perform an effect at all, or would perform it otherwise
than it decided (an owner other than its rep). A rep named in an effect (`crm.owner`,
`notify.to`) gets the same equivalence as `rep`.

The lead's outcome is `error` if either side failed, else `mismatched` if any field
or effect is, else `matched` (or `ignored` when every field was).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from leadflow.models import Decision, FollowUpType, ScoreReason, StepTiming
from leadflow.validation import describe_errors


class Outcome(StrEnum):
    MATCHED = "matched"
    MISMATCHED = "mismatched"
    IGNORED = "ignored"
    ERROR = "error"


# The type of leadflow's event (integrations.base.LeadEvent; the core cannot import it).
EVENT_TYPE = "lead.processed"
EFFECT_FIELDS: tuple[str, ...] = (
    "crm.owner",
    "crm.tier",
    "notify.to",
    "notify.follow_up",
    "event.type",
)
_REP_EFFECTS = ("crm.owner", "notify.to")
# The decision field each effect carries: an effect whose field the current process
# does not provide is not compared either (its implied value would be a placeholder).
EFFECT_BASIS = {
    "crm.owner": "rep",
    "crm.tier": "tier",
    "notify.to": "rep",
    "notify.follow_up": "follow_up",
}


class CompareRules(BaseModel):
    """What counts as the same decision. Settings: `LEADFLOW_SHADOW__COMPARE__*`."""

    score_tolerance: int = Field(
        default=0, ge=0, description="scores this close (in points) count as a match"
    )
    rep_equivalence: Literal["exact", "team", "territory"] = Field(
        default="team",
        description=(
            "exact: the same rep; team: reps of the same team match (two round-robin "
            "picks rarely agree on the person); territory: the same territory matches"
        ),
    )
    ignore: list[str] = Field(
        default_factory=list,
        description="Decision fields or effects not compared, e.g. sla_minutes, notify.to",
    )
    effects: list[str] = Field(
        default_factory=lambda: list(EFFECT_FIELDS),
        description=(
            "intended side effects compared, as effect.field: crm.owner, crm.tier, "
            "notify.to, notify.follow_up, event.type; [] compares none"
        ),
    )
    normalise: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description=(
            "per field, values mapped before comparing, e.g. "
            '{"tier": {"sql": "hot", "mql": "warm"}} (matched case-insensitively)'
        ),
    )


class FieldResult(BaseModel):
    outcome: Outcome
    control: Any = None
    candidate: Any = None
    note: str | None = None


class Comparison(BaseModel):
    """One lead, both sides: the decision's fields, and the intended side effects."""

    outcome: Outcome
    fields: dict[str, FieldResult]
    effects: dict[str, FieldResult] = Field(default_factory=dict)

    @property
    def mismatched_fields(self) -> list[str]:
        both = {**self.fields, **self.effects}
        return [name for name, r in both.items() if r.outcome is Outcome.MISMATCHED]


class LegacyDecisionError(ValueError):
    """The current process answered with something that is not a decision."""


# --- turning the current process's answer into a Decision -----------------------

_POINTS = re.compile(r":\s*([+-]?\d+)\s*$")


def decision_from_answer(
    answer: Decision | Mapping[str, Any],
    *,
    lead_id: str,
    provides: Iterable[str] = Decision.COMPARED_FIELDS,
) -> Decision:
    """A Decision from what a current process returned: a Decision, or a mapping with
    Decision's field names. Fields the process does not provide get neutral values
    (they are not compared); reasons may be plain strings ("title has 'vp': +25").
    Raises LegacyDecisionError naming the lead and the field."""
    if isinstance(answer, Decision):
        return answer
    if not isinstance(answer, Mapping):
        raise LegacyDecisionError(
            f"lead {lead_id}: the current process returned {type(answer).__name__}, "
            "expected a decision (a mapping of Decision fields)"
        )
    provided = set(provides)
    missing = [
        name for name in ("score", "tier", "rep") if name in provided and answer.get(name) is None
    ]
    if missing:
        raise LegacyDecisionError(
            f"lead {lead_id}: the current process's decision has no {', '.join(missing)}"
        )
    data = {
        "lead_id": str(answer.get("lead_id") or lead_id),
        "score": answer.get("score") if answer.get("score") not in (None, "") else 0,
        "score_reasons": [_reason(r) for r in answer.get("score_reasons") or []],
        "tier": str(answer.get("tier") or ""),
        "follow_up": answer.get("follow_up") or FollowUpType.NONE,
        "sla_minutes": answer.get("sla_minutes") if answer.get("sla_minutes") != "" else None,
        "due_at": answer.get("due_at") or None,
        "rep": str(answer.get("rep") or ""),
        "assignment_rule": str(answer.get("assignment_rule") or "legacy"),
        "rules_version": str(answer.get("rules_version") or "legacy"),
    }
    try:
        return Decision.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(describe_errors(exc.errors()))
        raise LegacyDecisionError(
            f"lead {lead_id}: the current process's decision is not valid: {problems}"
        ) from None


def steps_from_answer(answer: Any) -> list[StepTiming]:
    """Steps a current process reported with its answer (`"steps": [{step, duration_ms}]`)."""
    if not isinstance(answer, Mapping):
        return []
    steps = []
    for item in answer.get("steps") or []:
        try:
            steps.append(StepTiming.model_validate(item))
        except ValidationError:
            continue  # timings explain; a malformed one is not worth failing the lead
    return steps


def _reason(value: Any) -> ScoreReason:
    if isinstance(value, Mapping):
        return ScoreReason.model_validate({"group": "legacy", "points": 0, **value})
    text = str(value)
    points = _POINTS.search(text)
    rule = _POINTS.sub("", text) if points else text
    return ScoreReason(group="legacy", rule=rule, points=int(points[1]) if points else 0)


# --- the comparison ----------------------------------------------------------------


def compare(
    control: Decision | None,
    candidate: Decision | None,
    *,
    rules: CompareRules | None = None,
    provides: Iterable[str] = Decision.COMPARED_FIELDS,
    rep_teams: Mapping[str, Iterable[str]] | None = None,
    intended: Mapping[str, Mapping[str, Any]] | None = None,
) -> Comparison:
    """Compare field by field. `rep_teams` maps a rep to their teams (from the rules
    file) for the `team` equivalence. `intended`, leadflow's recorded side effects
    (shadow runs), adds the effects' comparison."""
    rules = rules or CompareRules()
    provided = set(provides)
    fields: dict[str, FieldResult] = {}
    for name in Decision.COMPARED_FIELDS:
        left = getattr(control, name) if control else None
        right = getattr(candidate, name) if candidate else None
        skipped = _not_judged(name, name in provided, left, right, control, candidate, rules)
        if skipped is None:
            assert control is not None and candidate is not None  # else `error`, not judged
            skipped = _field(name, control, candidate, rules, rep_teams or {})
        fields[name] = skipped
    effects = (
        compare_effects(control, candidate, intended, rules, rep_teams or {}, provided)
        if intended is not None
        else {}
    )
    outcomes = {r.outcome for r in (*fields.values(), *effects.values())}
    if control is None or candidate is None:
        overall = Outcome.ERROR
    elif Outcome.MISMATCHED in outcomes:
        overall = Outcome.MISMATCHED
    elif Outcome.MATCHED in outcomes:
        overall = Outcome.MATCHED
    else:
        overall = Outcome.IGNORED
    return Comparison(outcome=overall, fields=fields, effects=effects)


def implied_effects(decision: Decision) -> dict[str, dict[str, Any]]:
    """The side effects of a process that decided `decision` and acted on it as the
    pipeline does: the CRM write, the notification, the event."""
    return {
        "crm": {"owner": decision.rep, "tier": decision.tier},
        "notify": {"to": decision.rep, "follow_up": _plain(decision.follow_up)},
        "event": {"type": EVENT_TYPE},
    }


def recorded_effects(journal: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """leadflow's recorders' notes (integrations.recorders) in the same shape."""
    crm, notify, event = (journal.get(name) for name in ("crm", "notify", "event"))
    found: dict[str, dict[str, Any]] = {}
    if crm is not None:
        found["crm"] = {"owner": crm.get("owner"), "tier": crm.get("tier")}
    if notify is not None:
        found["notify"] = {"to": notify.get("to"), "follow_up": notify.get("follow_up")}
    if event is not None:
        found["event"] = {"type": event.get("type")}
    return found


def compare_effects(
    control: Decision | None,
    candidate: Decision | None,
    intended: Mapping[str, Mapping[str, Any]],
    rules: CompareRules,
    rep_teams: Mapping[str, Iterable[str]],
    provided: Iterable[str] = Decision.COMPARED_FIELDS,
) -> dict[str, FieldResult]:
    """Each configured effect field: leadflow's recorded effect against the current
    process's implied one. An effect one side would not perform at all is a mismatch
    (`None` on that side)."""
    theirs = implied_effects(control) if control else {}
    ours = recorded_effects(intended)
    results: dict[str, FieldResult] = {}
    for name in rules.effects:
        effect, _, key = name.partition(".")
        left = theirs.get(effect, {}).get(key)
        right = ours.get(effect, {}).get(key)
        basis = EFFECT_BASIS.get(name)
        known = basis is None or basis in set(provided)
        skipped = _not_judged(name, known, left, right, control, candidate, rules)
        if skipped is not None:
            results[name] = skipped
        else:
            results[name] = _values(name, left, right, rules)
            if results[name].outcome is Outcome.MISMATCHED and name in _REP_EFFECTS:
                assert control is not None and candidate is not None  # else `error`
                if right == candidate.rep:  # the rep it decided: judged as `rep` is
                    same = _equivalent_reps(control, candidate, rules.rep_equivalence, rep_teams)
                    if same:
                        results[name] = results[name].model_copy(
                            update={"outcome": Outcome.MATCHED, "note": same}
                        )
            if effect not in ours:
                results[name].note = "leadflow would not do this"
    return results


def _not_judged(
    name: str,
    provided: bool,
    left: Any,
    right: Any,
    control: Decision | None,
    candidate: Decision | None,
    rules: CompareRules,
) -> FieldResult | None:
    """`ignored` (by the rules, or not provided by the current process) or `error` (a
    side has no decision); None when the field is to be compared."""
    if name in rules.ignore or not provided:
        note = "ignored by the compare rules" if name in rules.ignore else "not provided"
        return FieldResult(outcome=Outcome.IGNORED, control=left, candidate=right, note=note)
    if control is None or candidate is None:
        return FieldResult(outcome=Outcome.ERROR, control=left, candidate=right)
    return None


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


def _field(
    name: str,
    control: Decision,
    candidate: Decision,
    rules: CompareRules,
    rep_teams: Mapping[str, Iterable[str]],
) -> FieldResult:
    result = _values(name, getattr(control, name), getattr(candidate, name), rules)
    if result.outcome is Outcome.MATCHED:
        return result
    left, right = result.control, result.candidate
    if name == "score" and abs(left - right) <= rules.score_tolerance:
        note = f"within {rules.score_tolerance} points"
        return FieldResult(outcome=Outcome.MATCHED, control=left, candidate=right, note=note)
    if name == "rep":
        same = _equivalent_reps(control, candidate, rules.rep_equivalence, rep_teams)
        if same:
            return FieldResult(outcome=Outcome.MATCHED, control=left, candidate=right, note=same)
    return FieldResult(outcome=Outcome.MISMATCHED, control=left, candidate=right)


def _values(name: str, left: Any, right: Any, rules: CompareRules) -> FieldResult:
    """Two plain values, normalised as configured for `name`: equal (case and outer
    spaces aside, for text) or not."""
    left, right = _plain(left), _plain(right)
    mapping = {k.lower(): v for k, v in rules.normalise.get(name, {}).items()}
    if mapping:
        left = mapping.get(str(left).lower(), left)
        right = mapping.get(str(right).lower(), right)
    if isinstance(left, str) and isinstance(right, str):
        same = left.strip().lower() == right.strip().lower()
    else:
        same = left == right
    outcome = Outcome.MATCHED if same else Outcome.MISMATCHED
    return FieldResult(outcome=outcome, control=left, candidate=right)


def territory_of(assignment_rule: str) -> str | None:
    """`territory:emea/round_robin:emea` -> `emea`."""
    match = re.match(r"territory:([^/]+)", assignment_rule or "")
    return match[1] if match else None


def _equivalent_reps(
    control: Decision,
    candidate: Decision,
    mode: str,
    rep_teams: Mapping[str, Iterable[str]],
) -> str | None:
    """Why two different reps count as the same answer, or None. Only round-robin
    picks are equivalent: an owner taken from the CRM is a fact, not a rotation."""
    if mode == "exact" or "round_robin" not in candidate.assignment_rule:
        return None
    if mode == "territory":
        ours, theirs = (
            territory_of(candidate.assignment_rule),
            territory_of(control.assignment_rule),
        )
        return f"same territory {ours}" if ours and ours == theirs else None
    shared = set(rep_teams.get(control.rep, ())) & set(rep_teams.get(candidate.rep, ()))
    return f"same team {', '.join(sorted(shared))}" if shared else None
