"""One person, one lead, and a rerun answered from leadflow's decisions store before
any task, under a real Prefect API and real SQLite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from leadflow.db import get_engine
from leadflow.flows.files import process_file
from leadflow.flows.summary import (
    AlreadyDone,
    FailedBranch,
    FileRunSummary,
    Merged,
    RunTally,
    SetAside,
)
from leadflow.integrations.local_crm import contacts
from leadflow.integrations.sql_events import lead_events

pytestmark = pytest.mark.usefixtures("prefect_api")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def outbox(tmp_path: Path) -> list[dict]:
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def rows(runtime, table, email: str) -> list[dict]:
    async with get_engine(runtime.settings.database_url).connect() as connection:
        if table is contacts:
            query = sa.select(contacts).where(contacts.c.email == email)
        else:
            query = sa.select(lead_events)
        return [dict(row) for row in (await connection.execute(query)).mappings()]


async def test_same_email_other_case_and_ids_is_one_lead_in_a_file(runtime, tmp_path):
    path = write(
        tmp_path / "dup.csv",
        "id,email,first_name,company\n1,Dup@Example.org,Dup,Acme\n2,dup@example.org,,Acme Inc\n",
    )
    summary = await process_file(path=path)

    assert summary.processed == 1 and summary.set_aside == []
    assert summary.merged == [Merged(position=3, email="dup@example.org", into_row=2)]
    assert len(outbox(tmp_path)) == 1
    events = await rows(runtime, lead_events, "")
    assert len(events) == 1
    (contact,) = await rows(runtime, contacts, "dup@example.org")
    assert contact["company"] == "Acme Inc"  # the later row's value
    assert contact["first_name"] == "Dup"  # an empty later value does not erase


async def test_a_later_file_updates_the_contact_without_notifying_again(runtime, tmp_path):
    first = write(tmp_path / "a.csv", "id,email,company,source\n1,ann@example.org,Acme,web\n")
    later = write(tmp_path / "b.csv", "id,email,company,source\n7,ANN@example.org,Acme EU,fair\n")

    await process_file(path=first)
    summary = await process_file(path=later)

    assert summary.processed == 1 and summary.failed == []
    assert len(outbox(tmp_path)) == 1  # the rep was told once
    assert len(await rows(runtime, lead_events, "")) == 1  # reporting counts the person once
    (contact,) = await rows(runtime, contacts, "ann@example.org")
    assert (contact["company"], contact["lead_id"]) == ("Acme EU", "7")


async def test_a_rerun_of_a_done_file_creates_no_task(runtime, tmp_path):
    body = "email,title\n" + "".join(f"p{i}@rerun{i}.test,CTO\n" for i in range(12))
    path = write(tmp_path / "rerun.csv", body)
    await process_file(path=path)

    state = await process_file(path=path, return_state=True)
    summary = await state.aresult()

    assert summary.processed == 12 and summary.already_done == 12
    assert sum(summary.by_tier.values()) == 12  # tiers come from leadflow's records
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    assert task_runs == []
    assert len(outbox(tmp_path)) == 12


def test_lead_text_is_escaped_in_the_summary_artifact():
    evil = "<img src=x onerror=alert(1)>|x"
    summary = FileRunSummary(
        file="leads|x.csv",
        records=2,
        by_rep={"rep|<b>": 1},
        failed=[FailedBranch(lead_id="l1", branch="notify_team", reason=evil, email=evil, row=4)],
        set_aside=[SetAside(position=3, lead_ref=evil, reason=f"email: {evil!r}")],
        columns="columns ignored: <script>|",
    )
    markdown = summary.as_markdown()
    # Every "<" is backslash-escaped (markdown shows it as text, never as HTML).
    assert re.search(r"(?<!\\)<", markdown) is None
    assert "\\<img src=x onerror=alert\\(1\\)\\>\\|x" in markdown
    for line in markdown.splitlines():
        if line.startswith("|"):  # every table row keeps its column count
            unescaped = line.replace("\\|", "")
            assert unescaped.count("|") in (3, 4, 5), line


def test_already_done_results_count_in_the_summary():
    tally = RunTally("f.csv")
    tally.add([AlreadyDone(lead_id="x", tier="hot", rep="r")])
    summary = tally.final(1.0)
    assert (summary.processed, summary.already_done, summary.by_tier) == (1, 1, {"hot": 1})
