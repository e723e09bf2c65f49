"""What the run does when what it stands on fails, counted at the loopback vendor of
the kill trials (leadflow/kill_trials.py: HubSpot's batch upsert, a webhook
notifier and a webhook event sink on one stub):

- the Prefect server SIGKILLed in the middle of `leadflow run`: the run ends within
  60 s with one clear line (what failed, what was done, what to run next), no
  traceback and none of Prefect's client noise, a non-zero exit; the server back at
  the same address (same database), the same command does the rest: nothing lost,
  repeats only under the same key and counted by the rerun;
- leadflow's SQLite database write-locked by another process for 45 s (longer than
  SQLite's 30 s busy timeout) in the middle of a run: the run waits it out (up to
  LEADFLOW_PIPELINE__RECORD_TIMEOUT_SECONDS) and ends with every lead done; nothing
  delivered is reported failed, and `leadflow replay --list` shows nothing open.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from leadflow.kill_trials import (
    LEADFLOW,
    KillVendor,
    expected_requests,
    finish,
    leadflow_env,
    leads_file,
    output,
    start,
    stop_started,
    when,
)
from tests.support.stack import Processes, start_prefect_server

pytestmark = pytest.mark.e2e

LEADS, GROUP = 200, 20
ARGV = [str(LEADFLOW), "run", "leads.csv", "--batch-size", str(GROUP)]


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    started = Processes(logs=tmp_path)
    yield started
    stop_started()
    started.stop_all()


def test_the_prefect_server_killed_mid_run_ends_it_with_one_line_and_a_rerun_does_the_rest(
    tmp_path, processes
):
    """Small groups one at a time against a vendor answering in 200 ms, so that the
    run is far from done when the server goes (a few seconds in)."""
    rng = random.Random("orchestrator-down")
    emails = leads_file(tmp_path, LEADS, "down")
    home = tmp_path / "prefect-server"
    server = start_prefect_server(processes, home)
    argv = [str(LEADFLOW), "run", "leads.csv", "--batch-size", "5", "--concurrency", "1"]
    with KillVendor(latency=0.2) as vendor:
        env = leadflow_env(tmp_path, vendor, server.api_url)
        run = start(argv, tmp_path, env, "first")
        assert when(vendor, rng.randint(1, expected_requests(LEADS, 5) // 4), run)
        os.killpg(server.started.process.pid, signal.SIGKILL)
        server.started.process.wait(30)
        killed = time.monotonic()
        code = finish(run, 120)
        ended_in = time.monotonic() - killed
        said = output(tmp_path, "first")
        last = said.strip().splitlines()[-1]
        print(f"\nthe server killed; the run ended {ended_in:.1f} s later, exit {code}: {last}")

        assert ended_in < 60
        assert code != 0
        assert "Traceback" not in said
        # Prefect's client says nothing of it (an error with the whole event per queued
        # event, "Crash detected!"); leadflow says it once as it happens, then ends
        assert "the Prefect API is not answering" in said
        for noise in ("Event(occurred", "Crash detected", "Error logging to API"):
            assert noise not in said, said[-3000:]
        assert f"the Prefect API at {server.api_url} stopped answering" in last
        assert "run the same command again" in last
        finished = int(re.search(r"; (\d+) leads were finished before that", last).group(1))
        assert finished < LEADS  # the rerun has work to do

        start_prefect_server(processes, home, port=server.port)  # back, same address
        rerun = start(argv, tmp_path, env, "rerun")
        assert finish(rerun) == 0, output(tmp_path, "rerun")[-3000:]
        count = vendor.count(emails)
    assert count.lost == 0, count.lost_examples[:10]
    assert count.other_key == 0 and count.two_decisions == 0
    resent = output(tmp_path, "rerun")
    assert count.repeated == 0 or "sent again under their keys" in resent


# When the lock lands: while the first group is looked up (its decision and claims
# wait: they could not be stored, and the group failed, before), or once the vendor
# has received the first group's first side effects (delivered, not yet recorded).
LOCK_MOMENTS = {
    "deciding": KillVendor.requests,
    "sending": KillVendor.writes,
}


@pytest.mark.parametrize("moment", LOCK_MOMENTS)
def test_a_database_locked_for_45_s_mid_run_is_waited_for_and_nothing_is_reported_failed(
    tmp_path, processes, moment
):
    rng = random.Random(f"locked-database-{moment}")
    emails = leads_file(tmp_path, LEADS, "locked")
    server = start_prefect_server(processes, tmp_path / "prefect-server")
    with KillVendor() as vendor:
        env = leadflow_env(tmp_path, vendor, server.api_url)
        run = start(ARGV, tmp_path, env, "first")
        assert when(vendor, rng.randint(1, GROUP // 2), run, counted=LOCK_MOMENTS[moment])
        with write_locked(tmp_path / "leadflow.db", seconds=45):
            assert run.poll() is None
        assert finish(run, 300) == 0, output(tmp_path, "first")[-4000:]
        count = vendor.count(emails)
        said = output(tmp_path, "first")
        listed = subprocess.run(
            [str(LEADFLOW), "replay", "--list"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    print(f"\nlocked for 45 s: {count}")
    assert "Failed branches: none" in said
    assert f"{LEADS} of {LEADS} records processed" in said
    assert count.lost == 0 and count.repeated == 0, count
    assert "0 failed side effects open" in listed.stdout, listed.stdout + listed.stderr
    with sqlite3.connect(tmp_path / "leadflow.db") as db:
        open_claims = db.execute(
            "select count(*) from side_effect_claims where status != 'done'"
        ).fetchone()
        unfinished = db.execute(
            "select count(*) from lead_decisions where done_at is null"
        ).fetchone()
    assert open_claims == (0,) and unfinished == (0,)


@contextmanager
def write_locked(path: Path, seconds: float) -> Iterator[None]:
    """Another process's write lock on a SQLite file for `seconds` (BEGIN IMMEDIATE,
    held, then COMMIT), as a backup tool or a stuck writer would hold it."""
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("BEGIN IMMEDIATE")
    until = time.monotonic() + seconds
    try:
        yield
    finally:
        time.sleep(max(0.0, until - time.monotonic()))
        db.execute("COMMIT")
        db.close()
