"""The deployments of prefect.yaml on a real Prefect server with workers: a scenario
that drops lead files where the scheduled polls look and waits for what they do."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import yaml

from tests.support.paths import ROOT
from tests.support.stack import (
    BIN,
    PrefectServer,
    Processes,
    sql_rows,
    wait_for,
)

POLL_SECONDS = 10


DOMAIN = "e2e-drop.test"


WAIT = 240  # seconds for one scheduled poll to pick a file up, on a busy 2-core machine


def derived_prefect_file(target: Path, manual_outbox: Path) -> Path:
    """deployments/prefect.yaml with a POLL_SECONDS poll interval and, to show that
    per-deployment settings reach the runs, process-file's notifications sent to a
    file of their own through `job_variables.env`."""
    project = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in project["deployments"]}
    poll = deployments["poll-leads"]
    assert poll["schedules"] and "interval" in poll["schedules"][0]
    poll["schedules"][0]["interval"] = POLL_SECONDS
    deployments["process-file"]["work_pool"]["job_variables"] = {
        "env": {"LEADFLOW_TERMINAL_OUTBOX_PATH": str(manual_outbox)}
    }
    target.write_text(yaml.safe_dump(project, sort_keys=False))
    return target


def lead_file(path: Path, *people: str) -> None:
    rows = "".join(f"{p}@{DOMAIN},{p.title()},Dropco,VP Sales,US,website,120\n" for p in people)
    path.write_text("email,first_name,company,title,country,source,employee_count\n" + rows)


def leadflow_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """What the worker's environment gives deployed runs: their own stores here; the
    rules and seed paths keep their relative defaults, resolved in the repository root
    the pull step changes into."""
    return {
        "LEADFLOW_DATABASE_URL": database_url,
        "LEADFLOW_DROP_FOLDER": str(tmp_path / "inbox"),
        "LEADFLOW_TERMINAL_OUTBOX_PATH": str(tmp_path / "outbox.jsonl"),
        "LEADFLOW_TERMINAL_ECHO": "false",
        "LEADFLOW_ADAPTERS__CRM": "local",
        "LEADFLOW_ADAPTERS__NOTIFIER": "terminal",
        "LEADFLOW_ADAPTERS__EVENT_SINK": "sqlite",
        "LEADFLOW_LOG__FORMAT": "json",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }


class Scenario:
    """One run of the whole path; `run()` does it and checks as it goes."""

    def __init__(
        self,
        tmp_path: Path,
        server: PrefectServer,
        processes: Processes,
        database_url: str,
        workers: int,
    ) -> None:
        self.tmp = tmp_path
        self.server = server
        self.processes = processes
        self.database_url = database_url
        self.workers = workers
        self.inbox = tmp_path / "inbox"
        self.outbox = tmp_path / "outbox.jsonl"
        self.manual_outbox = tmp_path / "outbox-process-file.jsonl"
        self.began = time.monotonic()
        self.alive = [server.started]  # processes whose exit fails the test at once

    def mark(self, phase: str) -> None:
        """Print how long the scenario has run (pytest -s shows it): where the time goes."""
        print(f"[{time.monotonic() - self.began:6.1f} s] {phase}", flush=True)

    def context(self) -> str:
        ledger = self.rows("select name, status, detail from processed_files")
        polls = [
            (r["name"], r["state_type"], r["auto_scheduled"])
            for r in self.server.flow_runs("poll-leads")
            if r["state_type"] != "SCHEDULED"
        ]
        return f"ledger: {ledger}\npoll runs: {polls}\n{self.processes.tails()}"

    def rows(self, query: str) -> list[tuple]:
        try:
            return sql_rows(self.database_url, query)
        except Exception as exc:  # the table is created by the first run that needs it
            return [("query failed", type(exc).__name__)]

    def ok(self, result, what: str) -> None:
        assert result.returncode == 0, f"{what} failed:\n{result.stdout[-3000:]}{result.stderr}"

    def set_up(self) -> None:
        self.ok(self.server.prefect("work-pool", "create", "leadflow", "--type", "process"), "pool")
        prefect_file = derived_prefect_file(self.tmp / "prefect.yaml", self.manual_outbox)
        deployed = self.server.prefect(
            "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)
        )
        self.ok(deployed, "prefect deploy --all")
        self.mark("deployed")
        env = {**self.server.env, **leadflow_env(self.tmp, self.database_url)}
        # the operator's step before starting workers on a new release (on SQLite the
        # workers would also do it themselves)
        upgraded = subprocess.run(
            [str(BIN / "leadflow"), "db", "upgrade"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.ok(upgraded, "leadflow db upgrade")
        self.alive += [
            self.processes.start(
                f"worker-{n}",
                [str(BIN / "prefect"), "worker", "start", "--pool", "leadflow", "--name", f"w{n}"],
                env,
                cwd=self.tmp,  # anywhere: the pull step moves each run into the repository
            )
            for n in range(1, self.workers + 1)
        ]
        self.inbox.mkdir()

    def dropped_file_done(self, name: str) -> str:
        """Wait until a poll has processed the file; the process-file run id."""

        def done():
            server_log = self.server.started.tail(10**7)
            assert "Can't evaluate bulk DML" not in server_log, (
                "the Prefect scheduler cannot create runs (SQLAlchemy 2.1 under prefect 3.8?)"
            )
            rows = self.rows(f"select status, run_id from processed_files where name = '{name}'")
            return rows[0][1] if rows and rows[0][0] == "done" else None

        return wait_for(
            f"scheduled poll-leads run processing {name}",
            done,
            timeout=WAIT,
            alive=self.alive,
            context=self.context,
        )

    def poll_run_of(self, child_run_id: str) -> dict:
        """The poll-leads run a process-file child run belongs to."""
        child = self.server.api("GET", f"/flow_runs/{child_run_id}")
        parent_task = self.server.api("GET", f"/task_runs/{child['parent_task_run_id']}")
        return self.server.api("GET", f"/flow_runs/{parent_task['flow_run_id']}")

    @staticmethod
    def outbox_counts(outbox: Path) -> Counter[str]:
        lines = outbox.read_text().splitlines() if outbox.exists() else []
        return Counter(json.loads(line)["email"] for line in lines if line.strip())

    def run(self) -> None:
        self.set_up()

        # A manual run of process-file, watched to its end, with its default parameter.
        watched = self.server.prefect(
            "deployment", "run", "process-file/process-file", "--watch", timeout=600
        )
        self.ok(watched, "prefect deployment run process-file --watch")
        self.mark("process-file watched to its end")
        assert "Completed" in watched.stdout
        (sample_events,) = self.rows("select count(*) from lead_events")[0]
        assert sample_events == 57  # examples/leads.csv: 60 rows, 3 set aside
        assert len(self.outbox_counts(self.manual_outbox)) == 57  # its job_variables.env

        # A parameter out of range is refused when the run is created, and named.
        refused = self.server.prefect(
            "deployment", "run", "process-file/process-file", "--param", "concurrency=0"
        )
        assert refused.returncode != 0 and "concurrency" in refused.stdout + refused.stderr

        # One lead through process-lead.
        lee = json.dumps({"email": f"lee@{DOMAIN}", "title": "CTO", "country": "GB"})
        one = self.server.prefect(
            "deployment",
            "run",
            "process-lead/process-lead",
            "--param",
            f"record={lee}",
            "--watch",
            timeout=600,
        )
        self.ok(one, "prefect deployment run process-lead --watch")
        self.mark("process-lead watched to its end")

        # First drop, after the worker started.
        lead_file(self.inbox / "a.csv", "ann", "abe", "amy")
        first_child = self.dropped_file_done("a.csv")
        first_poll = self.poll_run_of(first_child)
        self.mark("a.csv processed by a scheduled poll")
        ann_before = self.rows(f"select updated_at from crm_contacts where email = 'ann@{DOMAIN}'")

        # Second drop: new leads, one lead seen before, and a renamed copy of a.csv.
        lead_file(self.inbox / "b.csv", "bob", "bea", "ann")
        shutil.copy(self.inbox / "a.csv", self.inbox / "a-copy.csv")
        second_child = self.dropped_file_done("b.csv")
        second_poll = self.poll_run_of(second_child)
        self.mark("b.csv processed by a scheduled poll")

        # Both polls were created by the scheduler, and are two different runs.
        poll_deployment = self.server.api("GET", "/deployments/name/poll-leads/poll-leads")
        for poll in (first_poll, second_poll):
            assert poll["deployment_id"] == poll_deployment["id"]
            assert poll["auto_scheduled"] is True, poll
        assert first_poll["id"] != second_poll["id"]
        # Nobody created a poll-leads run by hand in this test.
        assert all(run["auto_scheduled"] for run in self.server.flow_runs("poll-leads"))

        # The stores: each lead once, nothing missing, nothing repeated.
        people = {f"{p}@{DOMAIN}" for p in ("lee", "ann", "abe", "amy", "bob", "bea")}
        contacts = self.rows(f"select email from crm_contacts where email like '%@{DOMAIN}'")
        assert sorted(email for (email,) in contacts) == sorted(people)
        lead_ids = [lead_id for (lead_id,) in self.rows("select lead_id from lead_events")]
        assert len(lead_ids) == len(set(lead_ids)) == 57 + len(people)
        assert self.outbox_counts(self.outbox) == dict.fromkeys(people, 1)
        manual = self.outbox_counts(self.manual_outbox)
        assert len(manual) == 57 and set(manual.values()) == {1}
        # ann came again in b.csv: her contact was not written a second time.
        assert (
            self.rows(f"select updated_at from crm_contacts where email = 'ann@{DOMAIN}'")
            == ann_before
        )
        ledger = dict(self.rows("select name, status from processed_files"))
        assert ledger == {"a.csv": "done", "b.csv": "done"}  # a-copy.csv: same content as a.csv

        server_log = self.server.started.tail(10**7)
        assert "Can't evaluate bulk DML" not in server_log
