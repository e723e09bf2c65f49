"""Why a lead got its tier and its owner, from leadflow's own database.

A rep asks "why did I get this one", a manager disputes a routing: the answer is the
stored decision (score and its reasons, tier, follow-up, SLA) and the facts its
assignment was made from (leadflow.assignment keeps them: territory, team, weights,
round-robin credits, who was skipped and why). Both are rows in leadflow's database,
so the answer outlives Prefect's run history. `explain` reads them; `describe` turns
one into the lines `leadflow why` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from leadflow.assignment import assignments
from leadflow.db import get_engine
from leadflow.models import RoutingFacts
from leadflow.stores.decisions import DecisionStore, StoredDecision


@dataclass(frozen=True)
class Explanation:
    """One stored decision for the person and its assignment's facts (None: the
    assignment was made before leadflow kept them, or by another assigner)."""

    stored: StoredDecision
    facts: RoutingFacts | None


async def explain(database_url: str, email: str) -> list[Explanation]:
    """Every decision stored for `email` (any scope, every version), newest first."""
    found = await DecisionStore(database_url, scope="").for_email(email)
    ids = sorted({item.lead.id for item in found})
    facts: dict[str, RoutingFacts] = {}
    if ids:
        query = select(assignments.c.lead_id, assignments.c.facts).where(
            assignments.c.lead_id.in_(ids)
        )
        async with get_engine(database_url).connect() as connection:
            for row in await connection.execute(query):
                if row.facts:
                    facts[row.lead_id] = RoutingFacts.model_validate_json(row.facts)
    return [Explanation(item, facts.get(item.lead.id)) for item in found]


def _when(value: datetime | None) -> str:
    """An instant in UTC (SQLite hands stored instants back without their zone)."""
    if value is None:
        return "-"
    return f"{value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _pairs(values: dict[str, int]) -> str:
    return ", ".join(f"{rep} {value:+d}" for rep, value in values.items()) or "none yet"


def describe(explanation: Explanation) -> list[str]:
    """The explanation as plain lines: the decision, the score's arithmetic, the
    owner and the rule, then the routing facts."""
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
    if facts is None:
        lines.append("    (the routing facts were not recorded for this assignment)")
        return lines
    lines.append(f"    routed at {_when(facts.at)}")
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
