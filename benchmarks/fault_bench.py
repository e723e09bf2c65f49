"""`leadflow bench --faults`: a run over stub vendors that fail on purpose, and what
came of every side effect.

A file of leads (a few of them bad on purpose) goes through `process_file` with the
webhook notifier and the webhook event sink pointed at loopback stub vendors
(`leadflow.loopback_vendor.FaultServer`: real sockets) that answer with injected faults of every
kind, interleaved with normal answers: 5xx, 429 with Retry-After in seconds and as
an HTTP date, connection resets, hangs past the timeout, bodies dripped a byte at a
time, malformed JSON. Then a second file while the event vendor is down for longer
than the retries last, the vendor back, and `replay_side_effects`. Counted from what
the stubs received (a receiver keeps one delivery per Idempotency-Key):

- side effects done once: a lead's notification (or event) delivered under its key;
- duplicated: a lead delivered under two different keys (must be 0);
- lost: a valid lead with no delivery after the replay (must be 0);
- retries spent: requests beyond one per side effect (the replay's included).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from leadflow.loopback_vendor import Fault, FaultServer, every_kind

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 1.0

FAULTS = every_kind(TIMEOUT, retry_after=1)

# Faults after which the vendor has acted: it answered 200, then the body was bad
# or too slow, so the client cannot know and retries under the same key.
ACTED = {None, "malformed_json", "slow_drip"}


def write_file(path: Path, prefix: str, count: int, bad: int = 0) -> Path:
    rows = [f"{prefix}{i}@faults.test,Lee,VP Sales,Acme,US,120" for i in range(count)]
    rows += [f"not-an-email-{i},Bad,,,,{i}" for i in range(bad)]
    path.write_text("email,first_name,title,company,country,employee_count\n" + "\n".join(rows))
    return path


def interleaved(per_kind: int, requests: int) -> list[Fault]:
    """Each kind `per_kind` times, kinds taking turns, spread evenly over the first
    `requests` requests (a normal answer between two faults), as faults come in
    production: a retry usually finds the vendor answering again."""
    faults = [FAULTS[kind]() for _ in range(per_kind) for kind in FAULTS]
    gap = max(1, requests // len(faults) - 1)
    spread: list[Fault] = []
    for fault in faults:
        spread += [fault, *(Fault.passes() for _ in range(gap))]
    return spread


async def _run(workdir: Path, leads: int, per_kind: int) -> dict:
    from leadflow.app.runtime import build_runtime, use_runtime
    from leadflow.db import dispose_engines
    from leadflow.flows.files import process_file
    from leadflow.flows.replay_effects import replay_side_effects
    from leadflow.integrations.file_events import WebhookEventSink, WebhookEventsSettings
    from leadflow.integrations.local_crm import LocalCRM
    from leadflow.integrations.webhook_notifier import WebhookNotifier
    from leadflow.settings import PipelineSettings, Settings

    ok = lambda request: httpx.Response(200)  # noqa: E731
    hook, events = FaultServer(ok, latency=0.01), FaultServer(ok, latency=0.01)
    with hook, events:
        hook.inject(*interleaved(per_kind, leads))
        events.inject(*interleaved(per_kind, leads))
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{workdir / 'leadflow.db'}",
            rules_path=ROOT / "examples" / "rules.toml",
            pipeline=PipelineSettings(
                retries=4, retry_backoff_seconds=0.2, concurrency=16, max_retry_after_seconds=5
            ),
        )
        runtime = build_runtime(
            settings,
            crm=LocalCRM(settings.database_url, ROOT / "examples" / "crm_seed.json"),
            notifier=WebhookNotifier(f"{hook.base_url}/hook", timeout=TIMEOUT),
            event_sink=WebhookEventSink(
                WebhookEventsSettings(
                    _env_file=None, url=f"{events.base_url}/events", timeout_seconds=TIMEOUT
                )
            ),
        )
        began = time.perf_counter()
        with use_runtime(runtime):
            main = write_file(workdir / "leads.csv", "lead", leads, bad=max(1, leads // 50))
            # groups of one: one request per lead, so each queued fault meets one lead
            first = await process_file(str(main), batch_size=1, return_state=True)
            summary = await _summary(first)
            events.down = True  # longer than the retries last
            down_file = write_file(workdir / "while-down.csv", "down", max(2, leads // 20))
            second = await process_file(str(down_file), batch_size=1, return_state=True)
            down_summary = await _summary(second)
            events.down = False
            replay = await replay_side_effects()
        seconds = time.perf_counter() - began
        await runtime.aclose()
        await dispose_engines()
        valid = {f"lead{i}@faults.test" for i in range(leads)}
        valid |= {f"down{i}@faults.test" for i in range(max(2, leads // 20))}
        injected = hook.faults_given() + events.faults_given()
        return {
            "faults injected": dict(sorted(injected.items())),
            "leads processed": summary.processed + down_summary.processed,
            "leads set aside": len(summary.set_aside) + len(down_summary.set_aside),
            "failed after retries": len(summary.failed) + len(down_summary.failed),
            "replayed": replay.counts.get("replayed", 0),
            "replay": replay.line(),
            "notifications": _tally(hook, valid, "/hook"),
            "events": _tally(events, valid, "/events"),
            "seconds": round(seconds, 1),
            "load": [round(x, 2) for x in os.getloadavg()],
        }


async def _summary(state):
    from leadflow.flows.summary import LeadsFailedError

    if state.is_completed():
        return await state.aresult()
    exc = await state.aresult(raise_on_failure=False)
    if isinstance(exc, LeadsFailedError):
        return exc.summary
    raise exc


def _tally(server: FaultServer, valid: set[str], path: str) -> dict[str, int]:
    keys: dict[str, set[str]] = defaultdict(set)
    requests = 0
    for received in server.received:
        if received.request.url.path != path:
            continue
        requests += 1
        if received.fault not in ACTED:
            continue
        body = json.loads(received.request.content)
        if "events" in body:  # a group's events in one request: each keeps its own id
            for event in body["events"]:
                keys[event["lead_id"]].add(event["event_id"])
            continue
        who = body["lead"]["email"] if path == "/hook" else body["lead_id"]
        keys[who].add(body.get("event_id") or received.request.headers["idempotency-key"])
    delivered = {who for who in keys if "@" in who} if path == "/hook" else set(keys)
    done = sum(len(k) == 1 for k in keys.values())
    return {
        "done once": done,
        "duplicated": sum(len(k) > 1 for k in keys.values()),
        "lost": len(valid) - len(delivered) if path == "/hook" else len(valid) - len(keys),
        "retries spent": requests - sum(len(k) for k in keys.values()),
    }


def run_fault_bench(leads: int = 200, per_kind: int = 3) -> dict:
    from leadflow.logging import configure_logging
    from leadflow.settings import LogSettings

    configure_logging(LogSettings(), console_level="ERROR")
    from bench import prefect_server

    with tempfile.TemporaryDirectory(prefix="leadflow-faults-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect-client"))
        with prefect_server(workdir) as api_url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                figures = asyncio.run(_run(workdir, leads, per_kind))
    print_figures(figures)
    return figures


def print_figures(f: dict) -> None:
    n, e = f["notifications"], f["events"]
    lines = [
        "faults injected: "
        + ", ".join(f"{kind} {count}" for kind, count in f["faults injected"].items())
        + f" ({sum(f['faults injected'].values())} in all)",
        f"leads processed: {f['leads processed']}; set aside (bad records): {f['leads set aside']}",
        f"failed after their retries: {f['failed after retries']} side effects "
        f"(vendor down); replayed: {f['replayed']}",
        f"replay: {f['replay']}",
    ]
    for name, t in (("notifications", n), ("events", e)):
        lines.append(
            f"{name}: done once {t['done once']}, duplicated {t['duplicated']}, "
            f"lost {t['lost']}, retries spent {t['retries spent']}"
        )
    lines.append(f"{f['seconds']} s, load average {f['load']}")
    print("\n".join(lines))
