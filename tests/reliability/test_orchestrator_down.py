"""The Prefect server killed in the middle of `leadflow run`: the run ends within a
bound with one clear line (what failed, what was done, what to run next) and a
non-zero exit, no traceback; with a server back, the same command does the rest,
and every lead is notified once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from benchmarks.fault_vendor import FaultServer
from tests.conftest import ROOT
from tests.e2e.stack import Processes, start_prefect_server
from tests.reliability.test_crash import LEADFLOW, leads_file, notifications

pytestmark = pytest.mark.e2e

LEADS = 120


def command(folder: Path, stub: FaultServer, api_url: str) -> tuple[list[str], dict]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "LEADFLOW_"))
    }
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        LEADFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'leadflow.db'}",
        LEADFLOW_RULES_PATH=str(ROOT / "examples" / "rules.toml"),
        LEADFLOW_LOCAL_CRM_SEED_PATH=str(ROOT / "examples" / "crm_seed.json"),
        LEADFLOW_ADAPTERS__NOTIFIER="webhook",
        LEADFLOW_WEBHOOK_URL=f"{stub.base_url}/hook",
        LEADFLOW_PIPELINE__CLAIM_LEASE_SECONDS="2",
        COLUMNS="200",
    )
    return [str(LEADFLOW), "run", "leads.csv", "--batch-size", "1", "--concurrency", "4"], env


def test_a_dead_orchestrator_ends_the_run_with_one_line_and_a_rerun_does_the_rest(tmp_path):
    leads_file(tmp_path, LEADS)
    processes = Processes(logs=tmp_path)
    stub = FaultServer(lambda r: httpx.Response(200), latency=0.05)
    try:
        with stub:
            server = start_prefect_server(processes, tmp_path / "server-home")
            argv, env = command(tmp_path, stub, server.api_url)
            run = subprocess.Popen(
                argv,
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            deadline = time.monotonic() + 180
            while notifications(stub) < 10:
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.05)
            os.killpg(server.started.process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            stdout, stderr = run.communicate(timeout=120)
            ended_in = time.monotonic() - killed_at
            print(f"\nserver killed; the run ended {ended_in:.1f} s later, exit {run.returncode}")
            print(stderr.strip().splitlines()[-1])

            assert ended_in < 60
            assert run.returncode == 3
            assert "Traceback" not in stderr + stdout
            last = stderr.strip().splitlines()[-1]
            assert "Prefect API" in last and "stopped answering" in last
            assert "run the same command again" in last

            back = start_prefect_server(processes, tmp_path / "server-home-2")
            argv, env = command(tmp_path, stub, back.api_url)
            rerun = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
            )
            assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
            per_lead = Counter(
                json.loads(r.request.content)["lead"]["email"]
                for r in stub.received
                if r.request.url.path == "/hook"
            )
            keys = {
                email: {
                    r.request.headers["idempotency-key"]
                    for r in stub.received
                    if r.request.url.path == "/hook"
                    and json.loads(r.request.content)["lead"]["email"] == email
                }
                for email in per_lead
            }
            assert len(per_lead) == LEADS  # none lost
            assert all(len(k) == 1 for k in keys.values())  # repeats only under one key
    finally:
        processes.stop_all()
