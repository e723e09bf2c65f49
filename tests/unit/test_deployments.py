"""deployments/prefect.yaml: the deployments are declared as the README says, every
entrypoint loads as a Prefect flow, and the `process-file` path parameter is checked
before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.exceptions import ParameterTypeError

from leadflow.flows.serve import load_flow, served_deployments
from tests.support.paths import PREFECT_FILE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def deployments(project) -> dict[str, dict]:
    return {d["name"]: d for d in project["deployments"]}


def test_project_header(project):
    assert project["name"] == "leadflow"
    assert str(project["prefect-version"]).startswith("3.8")


def test_runs_start_in_the_directory_deploy_ran_in(project):
    """The pull step's directory is the output of the build step that prints the
    working directory, so it is fixed when the deployment is created."""
    (build,) = project["build"]
    step = build["prefect.deployments.steps.run_shell_script"]
    assert step["script"] == "pwd"
    (pull,) = project["pull"]
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ " + step["id"] + ".stdout }}"


def test_the_deployments_on_the_leadflow_pool(deployments):
    assert set(deployments) == {
        "process-file",
        "process-lead",
        "poll-leads",
        "watch-slas",
        "shadow-report",
    }
    for deployment in deployments.values():
        assert deployment["work_pool"]["name"] == "leadflow"
        assert deployment["description"].strip()


def test_process_file_is_manual_with_the_sample_file(deployments):
    process = deployments["process-file"]
    assert process["entrypoint"] == "flows/files.py:process_file"
    assert not process.get("schedules")
    assert process["parameters"] == {"path": "examples/leads.csv"}
    assert (ROOT / process["parameters"]["path"]).is_file()


def test_poll_leads_every_minute_one_at_a_time(deployments):
    poll = deployments["poll-leads"]
    assert poll["entrypoint"] == "flows/poll.py:poll_leads"
    assert poll["schedules"] == [{"interval": 60}]
    assert poll["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


@pytest.mark.parametrize(
    "name", ["process-file", "process-lead", "poll-leads", "watch-slas", "shadow-report"]
)
def test_entrypoint_is_a_flow_with_the_deployment_name(deployments, name):
    deployment = deployments[name]
    flow = load_flow(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    assert flow.name == name
    # Every deployment parameter is one the flow takes.
    assert set(deployment.get("parameters") or {}) <= set(flow.parameters.properties)
    # Every parameter has the description the UI's run form shows.
    for parameter, schema in flow.parameters.properties.items():
        assert len(schema.get("description") or "") > 20, parameter
    assert deployment["enforce_parameter_schema"] is True


def test_watch_slas_every_minute_one_at_a_time(deployments):
    watch = deployments["watch-slas"]
    assert watch["entrypoint"] == "flows/sla.py:watch_slas"
    assert watch["schedules"] == [{"interval": 60}]
    assert watch["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert not watch.get("parameters")  # give_up_hours keeps its default


def test_process_lead_needs_its_record(deployments):
    process = deployments["process-lead"]
    assert process["entrypoint"] == "flows/lead.py:process_lead"
    assert not process.get("schedules") and not process.get("parameters")
    assert load_flow(process["entrypoint"]).parameters.required == ["record"]


@pytest.mark.parametrize(
    ("parameters", "named", "reason"),
    [
        ({"path": "no/such/file.csv"}, "path", "Path does not point to a file"),
        ({"path": "pyproject.toml"}, "path", "leadflow reads .csv, .tsv"),
        ({"path": "examples/leads.csv", "concurrency": 0}, "concurrency", "greater than or equal"),
    ],
)
async def test_process_file_refuses_a_bad_parameter_before_running(
    prefect_api, parameters, named, reason
):
    from leadflow.flows.files import process_file

    parameters = {**parameters, "path": str(ROOT / parameters["path"])}
    state = await process_file(**parameters, return_state=True)

    assert state.is_failed()
    with pytest.raises(ParameterTypeError) as raised:
        await state.aresult()
    assert named in str(raised.value)
    assert reason in str(raised.value)


async def test_watch_slas_refuses_a_give_up_time_of_zero(prefect_api):
    from leadflow.flows.sla import watch_slas

    state = await watch_slas(give_up_hours=0, return_state=True)

    with pytest.raises(ParameterTypeError, match="give_up_hours"):
        await state.aresult()


async def test_poll_leads_refuses_a_negative_settle_time(prefect_api):
    from leadflow.flows.poll import poll_leads

    state = await poll_leads(settle_seconds=-1, return_state=True)

    with pytest.raises(ParameterTypeError, match="settle_seconds"):
        await state.aresult()


def test_prefect_deploy_finds_the_file_from_the_root():
    """`prefect deploy --all` reads ./prefect.yaml: the root one is the same file."""
    root_file = ROOT / "prefect.yaml"
    assert root_file.is_symlink()
    assert root_file.resolve() == PREFECT_FILE.resolve()


def test_leadflow_serve_serves_what_prefect_yaml_declares(deployments):
    served = {d.name: d for d in served_deployments()}
    assert set(served) == set(deployments)
    for name, spec in deployments.items():
        assert served[name].description == spec["description"]
        assert served[name].parameters == (spec.get("parameters") or {})
        assert served[name].work_pool_name is None  # the serving process runs them
    poll = served["poll-leads"]
    ((schedule,),) = [[s.schedule for s in poll.schedules]]
    assert schedule.interval.total_seconds() == 60
    assert poll.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert poll.concurrency_limit == 1
    (fast,) = [d for d in served_deployments(poll_interval=5) if d.name == "poll-leads"]
    assert fast.schedules[0].schedule.interval.total_seconds() == 5
