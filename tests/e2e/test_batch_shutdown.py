"""Ctrl-C during a long `leadflow run` (groups of 50): the process stops reading,
gives the groups in flight LEADFLOW_PIPELINE__DRAIN_SECONDS, and
exits within a bound; no task run it created, and not the flow run, is left Running
on the server, and no notification was sent twice."""

from __future__ import annotations

import csv
import json
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.stack import prefect_stack, wait_for

pytestmark = pytest.mark.e2e

LEADFLOW = Path(sys.executable).parent / "leadflow"
LEADS = 4000
DRAIN_SECONDS = 5
# drain, then the flow run's final state, the log and event flush, the engine
# disposal; generous for a loaded 2-core machine
EXIT_BOUND_SECONDS = DRAIN_SECONDS + 40


def _write_leads(path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "company", "employee_count", "title"])
        for n in range(LEADS):
            writer.writerow([f"p{n}@example{n % 97}.org", f"P{n}", f"Co {n}", 10 + n % 900, "VP"])


def _sent(workdir: Path) -> int:
    outbox = workdir / "outbox.jsonl"
    return len(outbox.read_text().splitlines()) if outbox.exists() else 0


def test_ctrl_c_drains_in_bounded_time_and_leaves_no_task_run_running(tmp_path: Path):
    _write_leads(tmp_path / "leads.csv")
    with prefect_stack(tmp_path) as (server, processes):
        env = {
            **server.env,
            "LEADFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'leadflow.db'}",
            "LEADFLOW_TERMINAL_OUTBOX_PATH": str(tmp_path / "outbox.jsonl"),
            "LEADFLOW_RULES_PATH": str(ROOT / "examples" / "rules.toml"),
            "LEADFLOW_LOCAL_CRM_SEED_PATH": str(ROOT / "examples" / "crm_seed.json"),
            "LEADFLOW_PIPELINE__DRAIN_SECONDS": str(DRAIN_SECONDS),
        }
        argv = [str(LEADFLOW), "run", "leads.csv", "--batch-size", "50"]
        run = processes.start("leadflow-run", argv, env, cwd=tmp_path)
        wait_for("leads notified", lambda: _sent(tmp_path) >= 100, timeout=240, alive=[run])

        run.process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        run.process.wait(timeout=EXIT_BOUND_SECONDS + 60)
        took = time.monotonic() - interrupted
        assert took < EXIT_BOUND_SECONDS, f"exited {took:.0f} s after Ctrl-C\n{run.tail()}"
        assert run.process.returncode != 0, run.tail()
        sent = _sent(tmp_path)
        assert 100 <= sent < LEADS, "interrupted after it had started, before it finished"

        task_runs = server.api("POST", "/task_runs/filter", json={"limit": 200})
        assert task_runs, "the run created task runs"
        states = {run["name"]: run["state"]["type"] for run in task_runs}
        assert not [name for name, state in states.items() if state in ("RUNNING", "PENDING")], (
            states
        )
        (flow_run,) = server.api("POST", "/flow_runs/filter", json={"limit": 10})
        assert flow_run["state"]["type"] not in ("RUNNING", "PENDING"), flow_run["state"]

        keys = [json.loads(line)["key"] for line in (tmp_path / "outbox.jsonl").open()]
        assert len(keys) == len(set(keys))

        # readable at volume: no line per finished task run or per notification; only
        # the task runs in flight when cancelled (at most five: one look-up, one
        # decision, three branches) say they crashed, in two lines each
        terminal = run.tail(1_000_000)
        lines = terminal.splitlines()
        assert "Completed" not in terminal and "notify:" not in terminal, terminal[-3000:]
        assert sum("Task run" in line for line in lines) <= 10, terminal[-3000:]
        assert len(lines) < 40, terminal[-3000:]
        print(f"exited {took:.1f} s after Ctrl-C, {sent} of {LEADS} notified")
