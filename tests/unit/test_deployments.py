"""deployments/prefect.yaml: both deployments are declared as the README says, every
entrypoint loads as a Prefect flow, and the `process-file` path parameter is checked
before anything runs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.exceptions import ParameterTypeError

ROOT = Path(__file__).resolve().parents[2]
PREFECT_FILE = ROOT / "deployments" / "prefect.yaml"


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def deployments(project) -> dict[str, dict]:
    return {d["name"]: d for d in project["deployments"]}


def load_entrypoint(entrypoint: str) -> object:
    path, name = entrypoint.split(":")
    module = ".".join(Path(path).with_suffix("").parts)
    return getattr(importlib.import_module(module), name)


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


def test_both_deployments_on_the_leadflow_pool(deployments):
    assert {"process-file", "poll-leads"} <= set(deployments)
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


@pytest.mark.parametrize("name", ["process-file", "poll-leads"])
def test_entrypoint_is_a_flow_with_the_deployment_name(deployments, name):
    deployment = deployments[name]
    flow = load_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    assert flow.name == name
    # Every deployment parameter is one the flow takes.
    assert set(deployment.get("parameters") or {}) <= set(flow.parameters.properties)


@pytest.mark.parametrize(
    ("path", "reason"),
    [("no/such/file.csv", "Path does not point to a file"), ("pyproject.toml", ".csv or .jsonl")],
)
async def test_process_file_refuses_a_bad_path_before_running(prefect_api, path, reason):
    from flows.files import process_file

    state = await process_file(path=str(ROOT / path), return_state=True)

    assert state.is_failed()
    with pytest.raises(ParameterTypeError) as raised:
        await state.aresult()
    assert "path" in str(raised.value)
    assert reason in str(raised.value)
