"""The artifacts a user reads in the Prefect UI, read back from the real Prefect API:
content, headings, keys that keep history, and lead text escaped."""

from __future__ import annotations

import csv
import re
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from leadflow.flows.artifacts import LEADS_KEY, decision_key
from leadflow.flows.files import process_file
from leadflow.flows.lead import process_lead
from leadflow.markdown import escape, table

pytestmark = pytest.mark.usefixtures("prefect_api")

HOSTILE_COMPANY = "<img src=x onerror=alert(1)>|Evil *Corp* [x](javascript:1)"


async def artifacts_of(run_id: UUID) -> dict[str, str]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {artifact.key: artifact.data for artifact in found}


def cells(line: str) -> list[str]:
    """A markdown table row's cells, split on pipes that are not escaped."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def unescaped(markdown: str, *marks: str) -> list[str]:
    """The marks that appear in `markdown` without a backslash before them."""
    return [mark for mark in marks if re.search(r"(?<!\\)" + re.escape(mark), markdown)]


def row_of(markdown: str, first_cell: str) -> list[str]:
    return next(cells(line) for line in markdown.splitlines() if cells(line)[:1] == [first_cell])


def test_escape_keeps_lead_text_literal():
    assert escape("<b>x</b>|*y*") == r"\<b\>x\</b\>\|\*y\*"
    assert escape("line\nbreak") == "line break" and escape(None) == ""
    assert cells(table(("a", "b"), [("p|q", "r")]).splitlines()[2]) == [r"p\|q", "r"]


async def test_a_lead_run_publishes_its_decision_keyed_by_lead(runtime):
    record = {
        "email": "ada@example.org",
        "title": "CTO",
        "company": HOSTILE_COMPANY,
        "country": "US",
        "employee_count": "120",
        "demo_requested": "yes",
    }
    first = await process_lead(record, return_state=True)
    outcome = await first.aresult()
    second = await process_lead(record, return_state=True)

    markdown = (await artifacts_of(first.state_details.flow_run_id))[decision_key(outcome.lead_id)]
    decision = outcome.decision
    assert markdown.startswith("# Decision for ada@example.org")
    for heading in ("## Decision", f"## Score: {decision.score} points", "## Side effects"):
        assert heading in markdown
    assert row_of(markdown, "tier") == ["tier", decision.tier]
    assert row_of(markdown, "rep") == ["rep", decision.rep]
    assert row_of(markdown, "chosen by") == ["chosen by", escape(decision.assignment_rule)]
    assert row_of(markdown, "due")[1] == f"{decision.due_at:%Y-%m-%d %H:%M} UTC"
    for reason in decision.score_reasons:
        assert [escape(reason.group), escape(reason.rule), f"{reason.points:+d}"] in [
            cells(line) for line in markdown.splitlines()
        ]
    for branch in ("update_crm", "notify_team", "log_event"):
        assert row_of(markdown, escape(branch))[1] == "ok"
    # why this rep: the routing facts kept with the assignment, as `leadflow why` prints
    why = markdown.split(f"## Why {escape(decision.rep)}\n", 1)[1].split("## Side effects")[0]
    assert "- routed at " in why
    assert "- territory north" in why and "team na" in why
    # the company is text, in one cell, not HTML, a link or a second column
    assert row_of(markdown, "company") == ["company", escape(HOSTILE_COMPANY)]
    assert not unescaped(markdown, "<", "](")

    # the same key on the second run: the UI lists both under the lead
    again = await artifacts_of(second.state_details.flow_run_id)
    assert decision_key(outcome.lead_id) in again
    assert row_of(again[decision_key(outcome.lead_id)], escape("notify_team"))[1] == "skipped"


async def test_a_file_run_publishes_a_table_per_lead_and_a_summary_with_headings(runtime, tmp_path):
    path = tmp_path / "mixed.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "company", "title", "country", "employee_count", "source"])
        writer.writerow(["grace@navy.test", "US Navy", "Director", "US", "5000", "referral"])
        writer.writerow(["pipe|user@evil.test", HOSTILE_COMPANY, "Analyst", "DE", "12", "web"])
        writer.writerow(["no-email-here", "Nowhere", "", "", "", ""])

    state = await process_file(path=path, return_state=True)
    summary = await state.aresult()
    found = await artifacts_of(state.state_details.flow_run_id)

    leads = found[LEADS_KEY]
    assert leads.startswith(f"# Each lead in {escape(str(path))}")
    header = cells(next(line for line in leads.splitlines() if line.startswith("| email")))
    assert header == [
        "email",
        "company",
        "tier",
        "score",
        "rep",
        "follow-up",
        "due (UTC)",
        "branches",
    ]
    grace = row_of(leads, "grace@navy.test")
    assert grace[1] == "US Navy" and grace[7] == "ok" and grace[4] in summary.by_rep
    hostile = row_of(leads, escape("pipe|user@evil.test"))
    assert len(hostile) == 8 and hostile[1] == escape(HOSTILE_COMPANY)
    assert not unescaped(leads, "<", "](")

    overview = found["process-file-summary"]
    for heading in ("## By tier", "## By rep", "## Set aside"):
        assert heading in overview
    _, record, reason = row_of(overview, "4")
    assert record == "no-email-here" and reason.startswith("email:")
