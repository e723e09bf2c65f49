"""Run names and tags as the Prefect UI shows them, read back from the real Prefect API."""

from __future__ import annotations

import csv
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from leadflow.app.runtime import use_runtime
from leadflow.flows.files import process_file
from leadflow.flows.lead import process_lead
from leadflow.flows.settle import settle
from leadflow.settings import UiSettings

pytestmark = pytest.mark.usefixtures("prefect_api")

LEAD = {
    "email": "Ada@Example.org",
    "title": "CTO",
    "company": "Analytical Engines",
    "country": "US",
    "employee_count": "120",
    "source": "Webinar",
}


async def run_and_read(flow_call):
    """Run a flow, wait until the server has every task run; return its result, the
    run and its task runs by name, as the server has them."""
    state = await flow_call(return_state=True)
    run_id: UUID = state.state_details.flow_run_id
    assert await settle(run_id)
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    result = await state.aresult(raise_on_failure=False)
    return result, run, {task_run.name: task_run for task_run in task_runs}


async def test_a_lead_run_and_its_tasks_are_named_and_tagged_after_the_lead(make_runtime):
    runtime = make_runtime()
    runtime.settings = runtime.settings.model_copy(update={"ui": UiSettings(tag_tasks=True)})
    with use_runtime(runtime):
        outcome, run, task_runs = await run_and_read(lambda **kw: process_lead(LEAD, **kw))
    await runtime.aclose()

    assert run.name == "ada@example.org"
    tier, rep = outcome.decision.tier, outcome.decision.rep
    assert {f"tier:{tier}", f"rep:{rep}", "source:webinar", "mode:live"} <= set(run.tags)
    steps = ("look-up", "decide", "update-crm", "notify-team", "log-event")
    assert set(task_runs) == {f"{step} ada@example.org" for step in steps}
    for step in ("look-up", "decide"):
        assert {"source:webinar", "mode:live"} <= set(task_runs[f"{step} ada@example.org"].tags)
    for step in ("update-crm", "notify-team", "log-event"):
        tags = set(task_runs[f"{step} ada@example.org"].tags)
        assert {f"tier:{tier}", f"rep:{rep}", "source:webinar", "mode:live"} <= tags


async def test_with_emails_private_runs_are_named_after_the_lead_id(make_runtime):
    runtime = make_runtime()
    runtime.settings = runtime.settings.model_copy(update={"ui": UiSettings(show_emails=False)})
    with use_runtime(runtime):
        _, run, task_runs = await run_and_read(
            lambda **kw: process_lead({**LEAD, "id": "crm-4711"}, **kw)
        )
    await runtime.aclose()
    assert run.name == "crm-4711"
    assert "notify-team crm-4711" in task_runs
    assert not any("example.org" in name for name in task_runs)
    # task runs are not tagged by default; the run is
    assert "tier:" not in " ".join(task_runs["notify-team crm-4711"].tags)
    assert any(tag.startswith("tier:") for tag in run.tags)


async def test_a_file_run_is_named_after_the_file_and_its_tasks_after_their_group(
    runtime, tmp_path
):
    path = tmp_path / "spring-webinar.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "title", "country", "source"])
        writer.writerow(["grace@navy.test", "Director", "US", "event"])
        writer.writerow(["linus@kernel.test", "Engineer", "FI", "website"])

    _, run, task_runs = await run_and_read(lambda **kw: process_file(path=path, **kw))

    assert run.name == "file-spring-webinar.csv"
    # the file's two leads are one group: five task runs, named after its first lead
    assert set(task_runs) == {
        f"{step} grace@navy.test +1"
        for step in ("look-up", "decide", "update-crm", "notify-team", "log-event")
    }
