"""Kill trials' machinery: a loopback vendor that counts what became of each side
effect, leadflow commands started in process groups of their own and killed at a
seeded random moment, and one trial per way in (`run_path`). benchmarks/kill_trials.py
runs ten or more per path and prints the table; tests/reliability/test_kill_trials.py
and test_orchestrator_faults.py run them in the test suite. From a source checkout
(the commands use examples/rules.toml); nothing leadflow runs imports this module.

Every side effect goes over HTTP to one loopback stub vendor (`KillVendor`, 20 ms a
call): the CRM is the HubSpot adapter with its base URL at the stub (one batch upsert
per group, the once-only key as `objectWriteTraceId`), the notifier the webhook
notifier (`Idempotency-Key`), the event sink the webhook event sink (each event's
`event_id`). The paths:

- batch: `leadflow run FILE --batch-size 100`;
- single: `leadflow run FILE --batch-size 1 --concurrency 16` (a group of one per lead);
- receiver: `leadflow serve-webhook`, leads posted 20 at a time; killed right after
  the last 202 (every other trial) or at a random moment while posting, then a new
  receiver on the same database finishes every lead that was answered 202;
- two: two `leadflow run` processes on one file, one of them killed; the other must
  finish everything by itself, then the same command again sends nothing;
- sigint: Ctrl-C (SIGINT to the process group, as a terminal sends it) with
  `LEADFLOW_PIPELINE__DRAIN_SECONDS=1`: the groups still in flight after the drain
  are cancelled (their claims handed back); then the same command again.

A kill lands at a seeded random moment: when the vendor has received a random number
of requests (look-ups included, so a kill can land before, during or after a group's
decision and its side effects). The leadflow processes run with
LEADFLOW_PIPELINE__CLAIM_LEASE_SECONDS=2, so a killed holder's claims expire quickly.

Counted per lead and side effect, from what the vendor received: lost (a lead with no
CRM update, no notification or no event: must be 0), repeated under the same key
(what was in flight at the kill, absorbed by the vendor's idempotency), repeats under
another key (must be 0), and what the rerun's summary says it re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx

from leadflow.loopback_vendor import FaultServer
from leadflow.models import lead_id_of

# the source checkout this module sits in (leadflow/..): its example rules
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LEADFLOW = BIN / "leadflow"
LEASE_SECONDS = 2
EFFECTS = ("crm", "notify", "event")
PATHS = ("batch", "single", "receiver", "two", "sigint")
RESENT = re.compile(r"(\d+)\s+side\s+effects\s+sent\s+again\s+under\s+their\s+keys")


# --- the vendor ------------------------------------------------------------------------


class KillVendor(FaultServer):
    """HubSpot (look-up, owners, batch upsert), a webhook notifier's endpoint (`/hook`)
    and a webhook event sink's (`/events`) on one loopback port, keeping every request."""

    def __init__(self, latency: float = 0.02) -> None:
        super().__init__(_answer, latency=latency)

    def requests(self) -> int:
        return len(self.received)

    def writes(self) -> int:
        """Side-effect requests received (look-ups and owner reads are GETs)."""
        return sum(r.request.method == "POST" for r in self.received)

    def side_effects(self) -> dict[str, dict[str, list[str]]]:
        """{effect: {lead: [key of each time it was received]}}: CRM and notifications
        per email, events per lead id."""
        return self._seen()[0]

    def reps(self) -> dict[str, set[str]]:
        """{lead id: the reps its notifications and events named}: one per lead, or two
        runs sent two decisions for it."""
        return self._seen()[1]

    def _seen(self) -> tuple[dict[str, dict[str, list[str]]], dict[str, set[str]]]:
        seen: dict[str, dict[str, list[str]]] = {e: defaultdict(list) for e in EFFECTS}
        reps: dict[str, set[str]] = defaultdict(set)
        for received in self.received:
            request = received.request
            if request.method != "POST":
                continue
            body = json.loads(request.content)
            path = request.url.path
            if path.endswith("/batch/upsert"):
                for item in body["inputs"]:
                    seen["crm"][item["id"]].append(item["objectWriteTraceId"])
            elif path == "/hook":
                seen["notify"][body["lead"]["email"]].append(request.headers["idempotency-key"])
                reps[body["lead"]["id"]].add(body["decision"]["rep"])
            elif path == "/events":
                for event in body.get("events", [body]):
                    seen["event"][event["lead_id"]].append(event["event_id"])
                    reps[event["lead_id"]].add(event["decision"]["rep"])
        return seen, reps

    def count(self, emails: list[str]) -> Count:
        """What happened to each side effect of the leads with `emails`."""
        seen, reps = self._seen()
        wanted: dict[str, list[str]] = {
            "crm": emails,
            "notify": emails,
            "event": [str(lead_id_of({"email": e})) for e in emails],
        }
        count = Count(leads=len(emails))
        for effect, leads in wanted.items():
            for lead in leads:
                keys = seen[effect].get(lead, [])
                count.sent += len(keys)
                if not keys:
                    count.lost += 1
                    count.lost_examples.append(f"{effect}:{lead}")
                count.repeated += len(keys) - len(set(keys))
                count.other_key += max(len(set(keys)) - 1, 0)
        count.two_decisions = sum(len(reps.get(lead, ())) > 1 for lead in wanted["event"])
        return count


def _answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if request.method == "GET" and path.startswith("/crm/v3/objects/contacts/"):
        return httpx.Response(404, json={"status": "error", "category": "OBJECT_NOT_FOUND"})
    if request.method == "GET" and path.startswith("/crm/v3/owners"):
        email = parse_qs(request.url.query.decode()).get("email", ["rep@kill.test"])[0]
        owner = {"id": "7", "email": unquote(email)}
        return httpx.Response(200, json={"results": [owner], **owner})
    if path.endswith("/batch/upsert"):
        inputs = json.loads(request.content)["inputs"]
        results = [{"id": str(n), "properties": {"email": i["id"]}} for n, i in enumerate(inputs)]
        return httpx.Response(200, json={"status": "COMPLETE", "results": results})
    return httpx.Response(200, json={"ok": True})


@dataclass
class Count:
    leads: int
    sent: int = 0
    lost: int = 0
    repeated: int = 0  # received again under the same key
    other_key: int = 0  # received again under another key
    two_decisions: int = 0  # leads sent with two different reps
    lost_examples: list[str] = field(default_factory=list)


# --- leadflow processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def leadflow_env(folder: Path, vendor: KillVendor, api_url: str, **more: str) -> dict[str, str]:
    """The environment of a leadflow command in `folder`: its own database and Prefect
    home, the API at `api_url`, every side effect at `vendor`, a short lease."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LEADFLOW_"))}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        LEADFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'leadflow.db'}",
        LEADFLOW_RULES_PATH=str(ROOT / "examples" / "rules.toml"),
        LEADFLOW_ADAPTERS__CRM="hubspot",
        LEADFLOW_HUBSPOT_BASE_URL=vendor.base_url,
        LEADFLOW_HUBSPOT_TOKEN="pat-kill-trials",
        LEADFLOW_HUBSPOT_RATE_LIMIT_REQUESTS="100000",
        LEADFLOW_HUBSPOT_RATE_LIMIT_SECONDS="1",
        LEADFLOW_HUBSPOT_MAX_CONCURRENT="64",
        LEADFLOW_ADAPTERS__NOTIFIER="webhook",
        LEADFLOW_WEBHOOK_URL=f"{vendor.base_url}/hook",
        LEADFLOW_ADAPTERS__EVENT_SINK="webhook",
        LEADFLOW_WEBHOOK_EVENTS_URL=f"{vendor.base_url}/events",
        LEADFLOW_PIPELINE__CLAIM_LEASE_SECONDS=str(LEASE_SECONDS),
        LEADFLOW_PIPELINE__RETRY_BACKOFF_SECONDS="0.2",
        LEADFLOW_STREAM_DECISION_ARTIFACTS="false",
        COLUMNS="200",
    )
    env.update(more)
    return env


def leads_file(folder: Path, count: int, tag: str) -> list[str]:
    """`folder/leads.csv` with `count` leads; returns their emails."""
    emails = [f"lead{i}.{tag}@kill.test" for i in range(count)]
    rows = [f"{e},Lee,VP Sales,Acme {i % 7},US,120" for i, e in enumerate(emails)]
    header = "email,first_name,title,company,country,employee_count\n"
    (folder / "leads.csv").write_text(header + "\n".join(rows) + "\n")
    return emails


_started: list[subprocess.Popen[bytes]] = []


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default in the child: a shell's background job (`cmd &`, nohup, a
    CI step) inherits it ignored, and Python then installs no Ctrl-C handler, so the
    Ctrl-C trials would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv: list[str], folder: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """A leadflow command in a process group of its own, its output in `folder/name.log`."""
    with (folder / f"{name}.log").open("ab") as log:
        process = subprocess.Popen[bytes](
            argv,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ctrl_c_as_in_a_terminal,
        )
    _started.append(process)
    return process


def stop_started() -> None:
    """SIGKILL what a trial started and left running (it failed half-way)."""
    while _started:
        process = _started.pop()
        if process.poll() is None:
            signal_group(process)
            process.wait(30)


def output(folder: Path, name: str) -> str:
    path = folder / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def signal_group(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def finish(process: subprocess.Popen[bytes], timeout: float = 300) -> int:
    """Wait for `process`; kill its group if it overruns."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_group(process)
        process.wait(30)
        raise


def when(
    vendor: KillVendor,
    requests: int,
    process: subprocess.Popen[bytes],
    timeout: float = 300,
    counted: Callable[[KillVendor], int] = KillVendor.requests,
) -> bool:
    """Wait until the vendor has received `requests` requests (or what `counted`
    counts); False if the process ended first."""
    deadline = time.monotonic() + timeout
    while counted(vendor) < requests:
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(f"the vendor never received {requests} requests")
        time.sleep(0.005)
    return True


def expected_requests(leads: int, batch_size: int) -> int:
    """Requests a whole run makes to the vendor: a look-up and a notification per lead,
    a CRM upsert and an event post per group, a few owner reads."""
    groups = -(-leads // batch_size)
    return 2 * leads + 2 * groups


# --- one trial per path ----------------------------------------------------------------


@dataclass
class Trial:
    path: str
    count: Count
    resent: int  # as the rerun's summary (or the new receiver) said
    killed_at: int  # vendor requests received when the kill landed (-1: it ended first)
    notes: str = ""

    def line(self) -> str:
        c = self.count
        return (
            f"killed at {self.killed_at} requests; {c.sent} side effects sent, {c.lost} lost, "
            f"{c.repeated} repeated under the same key, {c.other_key} under another key, "
            f"{c.two_decisions} leads with two decisions; the rerun re-sent {self.resent}"
            + (f"; {self.notes}" if self.notes else "")
        )


@dataclass
class Setup:
    """Where one trial runs: its folder (database, file, logs), the Prefect API, the
    seeded random source, how many leads, and a tag that makes its emails its own."""

    folder: Path
    api_url: str
    rng: random.Random
    leads: int
    tag: str

    def env(self, vendor: KillVendor, **more: str) -> dict[str, str]:
        return leadflow_env(self.folder, vendor, self.api_url, **more)

    def kill_moment(self, requests: int) -> int:
        return self.rng.randint(1, requests)


# The `leadflow run` arguments of each file path, and the signal that stops it.
FILE_PATHS = {
    "batch": (["--batch-size", "100"], signal.SIGKILL),
    "single": (["--batch-size", "1", "--concurrency", "16"], signal.SIGKILL),
    "sigint": (["--batch-size", "20"], signal.SIGINT),
}
# Leads per trial by default: a group of one per lead costs five task runs a lead.
DEFAULT_LEADS = {"batch": 300, "single": 100, "receiver": 300, "two": 300, "sigint": 300}


def run_path(path: str, setup: Setup, **options: Any) -> Trial:
    """One trial of `path`; whatever it started is stopped when it ends."""
    try:
        if path in FILE_PATHS:
            return file_trial(path, setup)
        if path == "receiver":
            return receiver_trial(setup, **options)
        if path == "two":
            return two_trial(setup)
        raise ValueError(f"no path {path!r}: one of {', '.join(PATHS)}")
    finally:
        stop_started()


def file_trial(path: str, setup: Setup) -> Trial:
    """`leadflow run`, stopped at a random moment (SIGKILL, or Ctrl-C with a drain of
    1 s), then the same command again."""
    args, sig = FILE_PATHS[path]
    emails = leads_file(setup.folder, setup.leads, setup.tag)
    size = int(args[args.index("--batch-size") + 1])
    argv = [str(LEADFLOW), "run", "leads.csv", *args]
    more = {"LEADFLOW_PIPELINE__DRAIN_SECONDS": "1"} if sig == signal.SIGINT else {}
    with KillVendor() as vendor:
        env = setup.env(vendor, **more)
        first = start(argv, setup.folder, env, "first")
        killed = when(vendor, setup.kill_moment(expected_requests(setup.leads, size)), first)
        signal_group(first, sig)
        code = finish(first)
        if killed and sig == signal.SIGINT and code == 0:
            raise AssertionError(f"a run stopped by Ctrl-C exited 0:\n{_tail(setup, 'first')}")
        at = vendor.requests() if killed else -1
        said = _must_succeed(setup, argv, env, "rerun")
        return Trial(path, vendor.count(emails), _resent(said), at)


def two_trial(setup: Setup) -> Trial:
    """Two `leadflow run` on one file at once, one killed at a random moment: the other
    must finish every lead by itself; then the same command again sends nothing."""
    emails = leads_file(setup.folder, setup.leads, setup.tag)
    argv = [str(LEADFLOW), "run", "leads.csv", "--batch-size", "20"]
    with KillVendor() as vendor:
        env = setup.env(vendor)
        one = start(argv, setup.folder, env, "one")
        other = start(argv, setup.folder, env, "other")
        both = expected_requests(setup.leads, 20) + setup.leads  # both look every lead up
        killed = when(vendor, setup.kill_moment(both), one)
        signal_group(one)
        finish(one)
        at = vendor.requests() if killed else -1
        code = finish(other)
        if code != 0:
            raise AssertionError(f"the other run exited {code}:\n{_tail(setup, 'other')}")
        count = vendor.count(emails)
        _must_succeed(setup, argv, env, "rerun")
        more = vendor.count(emails).sent - count.sent
        notes = f"the rerun sent {more} more" if more else ""
        resent = sum(_resent(output(setup.folder, name)) for name in ("one", "other"))
        return Trial("two", count, resent, at, notes)


def receiver_trial(setup: Setup, after_last: bool | None = None) -> Trial:
    """`leadflow serve-webhook`, leads posted 20 at a time, SIGKILLed right after the
    last 202 (`after_last`, a notifier answering in 200 ms so most are in flight) or
    when the vendor has received a random number of requests (while posting or
    after); then a new receiver on the same database must finish every lead that was
    answered 202. None: either, at random."""
    if after_last is None:
        after_last = setup.rng.random() < 0.5
    emails = [f"lead{i}.{setup.tag}@kill.test" for i in range(setup.leads)]
    kill_at = 0 if after_last else setup.kill_moment(2 * setup.leads)
    with KillVendor(latency=0.2 if after_last else 0.02) as vendor:
        env = setup.env(vendor)
        first, url = _receiver(setup, env, "receiver-1")
        accepted = asyncio.run(_post_all(url, emails, vendor, kill_at, first))
        signal_group(first)
        at = vendor.requests()
        finish(first)
        second, _url = _receiver(setup, env, "receiver-2")
        _wait_done(vendor, accepted, second)
        signal_group(second, signal.SIGTERM)
        finish(second, 90)
        said = output(setup.folder, "receiver-2")
        how = "killed right after the last 202" if after_last else "killed at a random moment"
        notes = f"{len(accepted)} of {len(emails)} accepted, {how}"
        return Trial("receiver", vendor.count(accepted), _resent(said), at, notes)


def _tail(setup: Setup, name: str) -> str:
    return output(setup.folder, name)[-4000:]


def _must_succeed(setup: Setup, argv: list[str], env: dict[str, str], name: str) -> str:
    code = finish(start(argv, setup.folder, env, name))
    if code != 0:
        raise AssertionError(f"{name} exited {code}:\n{_tail(setup, name)}")
    return output(setup.folder, name)


def _resent(said: str) -> int:
    found = RESENT.search(said)
    return int(found.group(1)) if found else 0


def _receiver(setup: Setup, env: dict[str, str], name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [str(LEADFLOW), "serve-webhook", "--port", str(port)]
    process = start(argv, setup.folder, env, name)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{name} did not start:\n{_tail(setup, name)}")
        time.sleep(0.2)


async def _post_all(
    url: str, emails: list[str], vendor: KillVendor, kill_at: int, process: subprocess.Popen[bytes]
) -> list[str]:
    """POST every lead, 20 at a time; SIGKILL the receiver once the vendor has received
    `kill_at` requests (0: not here). Returns the emails answered 202."""
    accepted: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(email: str) -> None:
            record = {
                "email": email,
                "first_name": "Lee",
                "title": "VP Sales",
                "company": "Acme",
                "country": "US",
                "employee_count": 120,
            }
            with contextlib.suppress(httpx.HTTPError):
                response = await client.post(f"{url}/leads", json=record)
                if response.status_code == 202:
                    accepted.append(email)

        for first in range(0, len(emails), 20):
            if kill_at and vendor.requests() >= kill_at:
                signal_group(process)
                break
            await asyncio.gather(*(post(e) for e in emails[first : first + 20]))
    if kill_at and process.poll() is None:  # every lead posted before the kill moment
        await asyncio.to_thread(when, vendor, kill_at, process)
    return accepted


def _wait_done(vendor: KillVendor, emails: list[str], process: subprocess.Popen[bytes]) -> None:
    """Until every side effect of `emails` has reached the vendor (at most 120 s), and
    a lease more for what is still in flight to land."""
    deadline = time.monotonic() + 120
    while vendor.count(emails).lost and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(LEASE_SECONDS)
