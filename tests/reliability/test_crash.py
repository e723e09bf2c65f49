"""SIGKILL in the middle of `leadflow run`, then the same command again.

The run's side effects go over HTTP to a loopback stub vendor (the webhook notifier
and the webhook event sink, 20 ms a call), the CRM is leadflow's local one, and the
runs use one `prefect server start` for the module. The command is killed with
SIGKILL (its whole process group) when the stub has received a given number of
notifications: early (before most leads' side effects), half-way (during them) and
when every notification is in (after them, before the run ended); then rerun to
the end. Counted from what the stub received:

- lost: a lead with no notification or no event: must be 0;
- repeated: a lead notified (or logged) more than once. A vendor that cannot
  de-duplicate makes this unavoidable for a side effect in flight at the kill (sent,
  answer not yet recorded); every repeat must carry the same Idempotency-Key, so a
  receiver that honours the key keeps one. The figures are printed (`-s`).

Two processes on the same file at once are counted the same way. The file sizes are
CI-sized: 60 leads in groups of one and 200 in groups of 20 still kill
mid-side-effects (the kill lands while requests are in flight).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leadflow.loopback_vendor import FaultServer
from tests.support.paths import ROOT
from tests.support.stack import clean_env, prefect_stack

pytestmark = pytest.mark.e2e

LEADFLOW = ROOT / ".venv" / "bin" / "leadflow"
PER_LEAD, BATCHED = 60, 200


@pytest.fixture(scope="module")
def prefect_url(tmp_path_factory) -> Iterator[str]:
    with prefect_stack(tmp_path_factory.mktemp("crash-prefect")) as (server, _processes):
        yield server.api_url


def leads_file(folder: Path, count: int) -> Path:
    path = folder / "leads.csv"
    rows = [f"lead{i}@crash.test,Lee,VP Sales,Acme,US,120" for i in range(count)]
    path.write_text("email,first_name,title,company,country,employee_count\n" + "\n".join(rows))
    return path


def command(folder: Path, stub: FaultServer, prefect_url: str, *args: str):
    env = clean_env(
        PREFECT_API_URL=prefect_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        LEADFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'leadflow.db'}",
        LEADFLOW_RULES_PATH=str(ROOT / "examples" / "rules.toml"),
        LEADFLOW_LOCAL_CRM_SEED_PATH=str(ROOT / "examples" / "crm_seed.json"),
        LEADFLOW_ADAPTERS__NOTIFIER="webhook",
        LEADFLOW_WEBHOOK_URL=f"{stub.base_url}/hook",
        LEADFLOW_ADAPTERS__EVENT_SINK="webhook",
        LEADFLOW_WEBHOOK_EVENTS_URL=f"{stub.base_url}/events",
        LEADFLOW_PIPELINE__RETRY_BACKOFF_SECONDS="0.2",
        # a killed run's claims expire this fast, so the rerun resends them soon
        LEADFLOW_PIPELINE__CLAIM_LEASE_SECONDS="2",
        COLUMNS="160",
    )
    return [str(LEADFLOW), "run", "leads.csv", *args], env


def start(folder: Path, stub: FaultServer, prefect_url: str, *args: str) -> subprocess.Popen:
    argv, env = command(folder, stub, prefect_url, *args)
    return subprocess.Popen(
        argv,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def notifications(stub: FaultServer) -> int:
    return sum(1 for r in stub.received if r.request.url.path == "/hook")


def tally(stub: FaultServer, count: int) -> dict[str, int]:
    """What the stub received, per lead: lost, repeated, repeats under another key."""
    keys: dict[str, dict[str, list[str]]] = {
        "/hook": defaultdict(list),
        "/events": defaultdict(list),
    }
    for r in stub.received:
        body = json.loads(r.request.content)
        path = r.request.url.path
        items = body["events"] if "events" in body else [body]
        for item in items:
            email = item["lead"]["email"] if path == "/hook" else item["lead_id"]
            keys[path][email].append(r.request.headers["idempotency-key"])
    notified, logged = keys["/hook"], keys["/events"]
    return {
        "leads": count,
        "notifications": sum(map(len, notified.values())),
        "events": sum(map(len, logged.values())),
        "lost": count - len(notified) + count - len(logged),
        "repeated": sum(len(k) > 1 for k in notified.values())
        + sum(len(k) > 1 for k in logged.values()),
        "repeats under another key": sum(
            len(set(k)) > 1 for d in (notified, logged) for k in d.values()
        ),
    }


def kill_when(process: subprocess.Popen, stub: FaultServer, sent: int, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while notifications(stub) < sent:
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run never got that far"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    return notifications(stub)


def finish(folder: Path, stub: FaultServer, prefect_url: str, *args: str) -> None:
    argv, env = command(folder, stub, prefect_url, *args)
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def ok_stub() -> FaultServer:
    return FaultServer(lambda r: httpx.Response(200), latency=0.02)


@pytest.mark.parametrize(
    ("mode", "count", "kill_at"),
    [
        ("per-lead", PER_LEAD, 1),
        ("per-lead", PER_LEAD, PER_LEAD // 2),
        ("per-lead", PER_LEAD, PER_LEAD),
        ("batched", BATCHED, BATCHED // 2),
    ],
    ids=["per-lead-early", "per-lead-half", "per-lead-after", "batched-half"],
)
def test_killed_then_rerun_loses_nothing(tmp_path, prefect_url, mode, count, kill_at) -> None:
    leads_file(tmp_path, count)
    args = (
        ("--batch-size", "20")
        if mode == "batched"
        else ("--batch-size", "1", "--concurrency", "16")
    )
    with ok_stub() as stub:
        at = kill_when(start(tmp_path, stub, prefect_url, *args), stub, kill_at)
        finish(tmp_path, stub, prefect_url, *args)
        figures = tally(stub, count)
    print(f"\ncrash {mode}: killed at {at} notifications received; after the rerun: {figures}")
    assert figures["lost"] == 0
    assert figures["repeats under another key"] == 0
    # only what was in flight at the kill can repeat: the groups in flight (8 by
    # default) times their leads, for the notification and the event
    assert figures["repeated"] <= (2 * 20 * 8 if mode == "batched" else 2 * 16)


def test_two_processes_on_one_file(tmp_path, prefect_url) -> None:
    leads_file(tmp_path, PER_LEAD)
    with ok_stub() as stub:
        both = [
            start(tmp_path, stub, prefect_url, "--batch-size", "1", "--concurrency", "16")
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=600)[0] for p in both]
        figures = tally(stub, PER_LEAD)
    print(f"\ntwo processes at once: {figures}")
    assert all(p.returncode == 0 for p in both), [o[-2000:] for o in outputs]
    assert figures["lost"] == 0
    assert figures["repeats under another key"] == 0
