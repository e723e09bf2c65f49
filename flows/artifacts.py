"""The results a sales-ops user reads in the Prefect UI, as markdown artifacts.

- A `process-lead` run and the real-time stream publish each lead's Decision (the
  points behind the score, the tier, the follow-up and when it is due, the rep and the
  rule that chose them, why that rep: the routing facts kept with the assignment) and
  each side effect's result, under a key per lead (`decision-<id>`): the artifact's page
  then lists every run's Decision for that lead, newest first.
- A `process-file` run publishes one row per lead (`process-file-leads`) beside its
  summary (`process-file-summary`).

Every value that came from a record goes through `leadflow.markdown`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from prefect.artifacts import acreate_markdown_artifact

from leadflow.flows.context import current_runtime
from leadflow.flows.naming import label_of, show_emails
from leadflow.flows.summary import AlreadyDone, LeadResult, LeftToCurrentProcess
from leadflow.markdown import escape, table
from leadflow.models import (
    BranchResult,
    BranchStatus,
    Decision,
    Lead,
    LeadOutcome,
    RoutingFacts,
)
from leadflow.why import assignments_of, facts_lines

LEADS_KEY = "process-file-leads"


def decision_key(lead_id: str) -> str:
    """The artifact key of a lead: Prefect keys allow lowercase letters, digits and
    dashes, so anything else becomes a dash."""
    return "decision-" + (re.sub(r"[^a-z0-9]+", "-", lead_id.lower()).strip("-") or "unknown")


def _due(decision: Decision) -> str:
    return f"{decision.due_at:%Y-%m-%d %H:%M} UTC" if decision.due_at else "no deadline"


def decision_markdown(lead: Lead, outcome: LeadOutcome, facts: RoutingFacts | None = None) -> str:
    """The Decision artifact; `facts`: the routing facts kept with the assignment
    (who else could have had the lead and why they did not), shown as "Why this rep"."""
    decision = outcome.decision
    sla = f"within {decision.sla_minutes} min" if decision.sla_minutes else "no SLA"
    return "\n".join(
        [
            f"# Decision for {escape(label_of(lead))}",
            "",
            f"**{escape(decision.tier)}** (score {decision.score}): "
            f"{escape(decision.follow_up.value)}, "
            f"{'due ' + _due(decision) if decision.due_at else 'no deadline'}; "
            f"rep **{escape(decision.rep)}**.",
            "",
            "## Decision",
            "",
            table(
                ("field", "value"),
                [
                    ("lead", label_of(lead)),
                    ("company", lead.company),
                    ("score", decision.score),
                    ("tier", decision.tier),
                    ("follow-up", f"{decision.follow_up.value} ({sla})"),
                    ("due", _due(decision)),
                    ("rep", decision.rep),
                    ("chosen by", decision.assignment_rule),
                    ("rules version", decision.rules_version),
                ],
            ),
            "",
            f"## Score: {decision.score} points",
            "",
            table(
                ("group", "reason", "points"),
                [(r.group, r.rule, f"{r.points:+d}") for r in decision.score_reasons],
            )
            if decision.score_reasons
            else "No rule gave or took points.",
            "",
            *_why_this_rep(decision, facts),
            "## Side effects",
            "",
            table(
                ("branch", "status", "ms", "detail"),
                [
                    (name, r.status.value, f"{r.duration_ms:.0f}", r.error or r.detail)
                    for name, r in outcome.branches.items()
                ],
            ),
        ]
    )


def _why_this_rep(decision: Decision, facts: RoutingFacts | None) -> list[str]:
    """The routing facts as a list (`leadflow why EMAIL` prints the same lines)."""
    if facts is None:
        return []
    lines = [f"- {escape(line)}" for line in facts_lines(facts)]
    return [f"## Why {escape(decision.rep)}", "", *lines, ""]


async def publish_decision(lead: Lead, outcome: LeadOutcome) -> None:
    """Publish the lead's Decision artifact, with the routing facts read from
    leadflow's database (off the lead's path: the callers publish after the side
    effects)."""
    found = await assignments_of(current_runtime().settings.database_url, [lead.id])
    assignment = found.get(lead.id)
    await acreate_markdown_artifact(
        key=decision_key(lead.id),
        markdown=decision_markdown(lead, outcome, assignment.facts if assignment else None),
        description=f"Decision for {label_of(lead)}",
    )


def branch_status(branches: dict[str, BranchResult]) -> str:
    """One cell for a lead's three side effects: `ok`, `done before`, or what failed."""
    failed = [name for name, r in branches.items() if r.status is BranchStatus.FAILED]
    if failed:
        return "failed: " + ", ".join(failed)
    if all(r.status is BranchStatus.SKIPPED for r in branches.values()):
        return "done before"
    return "ok"


def leads_markdown(file: str, leads: Sequence[Lead], results: Sequence[LeadResult]) -> str:
    """One row per lead, in file order, with what became of it."""
    rows = []
    for lead, result in zip(leads, results, strict=True):
        decided: tuple[str, str, str, str, str] = ("",) * 5
        if isinstance(result, LeadOutcome):
            d = result.decision
            due = f"{d.due_at:%Y-%m-%d %H:%M}" if d.due_at else ""
            decided = (d.tier, str(d.score), d.rep, d.follow_up.value, due)
            status = branch_status(result.branches)
        elif isinstance(result, LeftToCurrentProcess):  # left to the current process
            status = result.route
        elif isinstance(result, AlreadyDone):  # found done in leadflow's records: no task ran
            decided = (result.tier, "", result.rep, "", "")
            status = "done before"
        else:
            status = f"failed: {result.reason}"
        rows.append((label_of(lead), lead.company, *decided, status))
    who = "email" if show_emails() else "lead id"
    headers = (who, "company", "tier", "score", "rep", "follow-up", "due (UTC)", "branches")
    heading = f"# Each lead in {escape(file)}\n\n{len(rows)} leads, in file order.\n\n"
    return heading + table(headers, rows)


async def publish_leads(file: str, leads: Sequence[Lead], results: Sequence[LeadResult]) -> None:
    await acreate_markdown_artifact(
        key=LEADS_KEY, markdown=leads_markdown(file, leads, results), description=file
    )
