"""Why a lead got its tier and its owner, from leadflow's own database.

A rep asks "why did I get this one", a manager disputes a routing: the answer is the
stored decision (score and its reasons, tier, follow-up, SLA) and the facts its
assignment was made from (leadflow.assignment keeps them: territory, team, weights,
round-robin credits, who was skipped and why), and, for a lead with a deadline, its
SLA history (leadflow.sla: watched, reminded, reassigned, manager told, contacted).
All are rows in leadflow's database, so the answer outlives Prefect's run history.
`explain` reads them; `describe` turns one into the lines `leadflow why` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from leadflow.assignment import assignments
from leadflow.db import get_engine
from leadflow.models import Assignment, RoutingFacts
from leadflow.sla import HistoryLine, history
from leadflow.stores.decisions import DecisionStore, StoredDecision


@dataclass(frozen=True)
class Explanation:
    """One stored decision for the person, its lead's assignment as it stands (None:
    made by another assigner) with the facts it was made from (None: made before
    leadflow kept them), and the lead's SLA history (shown with its newest decision)."""

    stored: StoredDecision
    facts: RoutingFacts | None
    assignment: Assignment | None = None
    sla: list[HistoryLine] = field(default_factory=list)


async def assignments_of(database_url: str, lead_ids: Sequence[str]) -> dict[str, Assignment]:
    """The leads' assignments as they stand, with the facts each was made from."""
    current: dict[str, Assignment] = {}
    if not lead_ids:
        return current
    query = select(
        assignments.c.lead_id, assignments.c.rep, assignments.c.rule, assignments.c.facts
    ).where(assignments.c.lead_id.in_(sorted(set(lead_ids))))
    async with get_engine(database_url).connect() as connection:
        for row in await connection.execute(query):
            facts = RoutingFacts.model_validate_json(row.facts) if row.facts else None
            current[row.lead_id] = Assignment(rep=row.rep, rule=row.rule, facts=facts)
    return current


async def explain(database_url: str, email: str) -> list[Explanation]:
    """Every decision stored for `email` (any scope, every version), newest first."""
    found = await DecisionStore(database_url, scope="").for_email(email)
    ids = sorted({item.lead.id for item in found})
    current = await assignments_of(database_url, ids)
    steps = await history(database_url, ids)
    explained = []
    for item in found:
        assignment = current.get(item.lead.id)
        sla = steps.pop(item.lead.id, [])  # with the newest decision only
        facts = assignment.facts if assignment else None
        explained.append(Explanation(item, facts, assignment, sla))
    return explained


def _when(value: datetime | None) -> str:
    """An instant in UTC (SQLite hands stored instants back without their zone)."""
    if value is None:
        return "-"
    return f"{value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _pairs(values: dict[str, int]) -> str:
    return ", ".join(f"{rep} {value:+d}" for rep, value in values.items()) or "none yet"


def describe(explanation: Explanation) -> list[str]:
    """The explanation as plain lines: the decision, the score's arithmetic, the
    owner and the rule (and who has the lead now, when it was reassigned), the
    routing facts, then the SLA history."""
    stored, facts = explanation.stored, explanation.facts
    decision = stored.decision
    sla = f"SLA {decision.sla_minutes} min, due {_when(decision.due_at)}"
    lines = [
        f"{stored.lead.email} (lead {stored.lead.id}), decided {_when(stored.decided_at)} "
        f"with rules {decision.rules_version or '-'}",
        f"  score {decision.score} -> tier {decision.tier}, follow-up "
        f"{decision.follow_up.value}, " + (sla if decision.sla_minutes else "no SLA"),
    ]
    lines += [
        f"    {reason.points:+d} {reason.group}: {reason.rule}" for reason in decision.score_reasons
    ]
    lines.append(f"  owner {decision.rep}, by {decision.assignment_rule}")
    now = explanation.assignment
    if now is not None and now.rep != decision.rep:
        lines.append(f"  owner now {now.rep}, by {now.rule}")
    if facts is None:
        lines.append("    (the routing facts were not recorded for this assignment)")
    else:
        lines += _facts(facts)
    if explanation.sla:
        lines.append("  SLA")
        lines += [_step(line) for line in explanation.sla]
    return lines


def _step(line: HistoryLine) -> str:
    who = line.rep or "-"
    if line.told and line.told != line.rep:
        who += f" -> {line.told}"
    return f"    {_when_seconds(line.at)}  {line.step.value:<12} {who}: {line.detail}"


def _when_seconds(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def facts_lines(facts: RoutingFacts) -> list[str]:
    """The routing facts as plain lines, unindented (the Decision artifact lists them)."""
    return [line.strip() for line in _facts(facts)]


def _facts(facts: RoutingFacts) -> list[str]:
    lines = [f"    routed at {_when(facts.at)}"]
    if facts.territory:
        lines.append(f"    territory {facts.territory}, team {facts.team}")
    if facts.weights:
        lines += [
            f"    weights: {', '.join(f'{rep} {w}' for rep, w in facts.weights.items())}",
            f"    credits before: {_pairs(facts.credits_before)}",
            f"    credits after:  {_pairs(facts.credits_after)}",
        ]
    if facts.held_until:
        lines.append(f"    held for the first rep on shift, {_when(facts.held_until)}")
    for skipped in facts.skipped:
        where = f" (territory {skipped.territory})" if skipped.territory else ""
        lines.append(f"    skipped {skipped.rep}{where}: {skipped.reason}")
    if facts.note:
        lines.append(f"    {facts.note}")
    return lines
