"""`leadflow serve` against a real `prefect server start`: the poll runs on its own
schedule from the one serving process and picks up a dropped file; without a server
the command refuses, saying why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.deployments import DOMAIN, Scenario, lead_file, leadflow_env
from tests.support.paths import ROOT
from tests.support.stack import BIN, clean_env, prefect_stack

pytestmark = pytest.mark.e2e


def test_serve_refuses_without_a_prefect_server(tmp_path: Path):
    result = subprocess.run(
        [str(BIN / "leadflow"), "serve"],
        cwd=ROOT,
        env=clean_env(PREFECT_HOME=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "PREFECT_API_URL is not set" in result.stderr
    assert "prefect server start" in result.stderr


def test_serve_polls_on_schedule(tmp_path: Path):
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'leadflow.db'}"
    with prefect_stack(tmp_path) as (server, processes):
        scenario = Scenario(tmp_path, server, processes, database_url, workers=0)
        env = {
            **server.env,
            **leadflow_env(tmp_path, database_url),
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        }
        scenario.alive.append(
            processes.start(
                "leadflow-serve", [str(BIN / "leadflow"), "serve", "--poll-interval", "5"], env
            )
        )
        scenario.inbox.mkdir()
        lead_file(scenario.inbox / "served.csv", "sam", "sue")

        child = scenario.dropped_file_done("served.csv")

        poll = scenario.poll_run_of(child)
        assert poll["auto_scheduled"] is True
        deployment = server.api("GET", f"/deployments/{poll['deployment_id']}")
        assert deployment["name"] == "poll-leads"
        assert deployment["work_pool_name"] is None  # served, not from a work pool
        names = {d["name"] for d in server.api("POST", "/deployments/filter", json={})}
        assert names == {
            "process-file",
            "process-lead",
            "poll-leads",
            "shadow-report",
            "watch-slas",
        }
        contacts = scenario.rows(f"select email from crm_contacts where email like '%@{DOMAIN}'")
        assert sorted(contacts) == [(f"sam@{DOMAIN}",), (f"sue@{DOMAIN}",)]
