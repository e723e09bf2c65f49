"""Part A of `leadflow bench`: the real-time path end to end, and a burst.

A team's set-up, over loopback HTTP: `leadflow serve-webhook` in its own process
(the same Prefect server as the rest of the bench), leadflow's own adapters chosen
by `LEADFLOW_ADAPTERS__*` and pointed at the stub vendors (benchmarks/stub_vendors.py):
the HubSpot CRM (a contact read for the look-up, a batch upsert for the update), the
model scorer (an OpenAI-compatible chat completion), the webhook notifier and the
webhook event sink. A lead's shape is therefore

    look up (CRM) --> score (model) --> assign (leadflow's round robin, no vendor)
        --> update CRM | notify | log event       (three calls, at once)

Each lead's time is from the moment it is handed over (the POST to the receiver, or
the call) to the stub vendor's answer to the last of its three side effects, read
from the stub's own record of when it answered each lead's calls, the same way for
every way:

- bound: plain asyncio in this process over the same adapters, the side effects
  concurrent: what the vendors' latency alone costs (3 calls on the critical path);
- old way: the same calls one after another (5 calls);
- real-time path: a POST to `leadflow serve-webhook`;
- process_lead: the manual path (a flow run per lead) in this warm process.

The bound, the old way and the real-time path run interleaved lead by lead (their
order rotating), so load on the machine hits all alike, one lead at a time after a
warm-up. `process_lead` runs in a pass of its own, after the burst: each of its flow
runs keeps the Prefect server (on SQLite) busy for seconds after the lead, which would
load the machine under the ways measured beside it.

The burst: `BURST` leads POSTed at once by `BURST_CLIENTS` clients to the same
receiver at 50 ms a call, the stub vendors limited to `VENDOR_RATE`/s and
`VENDOR_CONCURRENT` in flight each (429 past that), the adapters' client-side limits
below them; the time to the last lead's last side effect, the 429s the stubs sent
and the 503s the receiver answered (backpressure: the client waits the Retry-After
and sends again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent

# The stub vendors' limits in this part (per vendor), and the adapters' below them.
VENDOR_RATE = 300
VENDOR_CONCURRENT = 30
CLIENT_RATE = 250
CLIENT_CONCURRENT = 20
BURST = 500
BURST_CLIENTS = 50
SIDE_EFFECTS = ("crm", "notify", "event")
WAYS = ("bound", "legacy", "realtime", "process_lead")


def adapter_env(vendors_url: str, workdir: Path, name: str) -> dict[str, str]:
    """The settings a team would set: leadflow's adapters at the stub vendors."""
    return {
        "LEADFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / f'{name}.db'}",
        "LEADFLOW_RULES_PATH": str(ROOT / "examples" / "rules.toml"),
        "LEADFLOW_ADAPTERS__CRM": "hubspot",
        "LEADFLOW_HUBSPOT_BASE_URL": f"{vendors_url}/hubspot",
        "LEADFLOW_HUBSPOT_TOKEN": "bench-token",
        "LEADFLOW_HUBSPOT_RATE_LIMIT_REQUESTS": str(CLIENT_RATE),
        "LEADFLOW_HUBSPOT_RATE_LIMIT_SECONDS": "1",
        "LEADFLOW_HUBSPOT_MAX_CONCURRENT": str(CLIENT_CONCURRENT),
        "LEADFLOW_ADAPTERS__SCORER": "model",
        "LEADFLOW_MODEL_SCORER_BASE_URL": f"{vendors_url}/model/v1",
        "LEADFLOW_MODEL_SCORER_MODEL": "bench-model",
        "LEADFLOW_MODEL_SCORER_RATE_LIMIT_REQUESTS": str(CLIENT_RATE),
        "LEADFLOW_MODEL_SCORER_RATE_LIMIT_SECONDS": "1",
        "LEADFLOW_MODEL_SCORER_MAX_CONCURRENT": str(CLIENT_CONCURRENT),
        "LEADFLOW_ADAPTERS__NOTIFIER": "webhook",
        "LEADFLOW_WEBHOOK_URL": f"{vendors_url}/notify",
        "LEADFLOW_WEBHOOK_REQUESTS_PER_SECOND": str(CLIENT_RATE),
        "LEADFLOW_WEBHOOK_MAX_CONCURRENT": str(CLIENT_CONCURRENT),
        "LEADFLOW_ADAPTERS__EVENT_SINK": "webhook",
        "LEADFLOW_WEBHOOK_EVENTS_URL": f"{vendors_url}/events",
        "LEADFLOW_WEBHOOK_EVENTS_RATE_LIMIT_REQUESTS": str(CLIENT_RATE),
        "LEADFLOW_WEBHOOK_EVENTS_RATE_LIMIT_SECONDS": "1",
        "LEADFLOW_WEBHOOK_EVENTS_MAX_CONCURRENT": str(CLIENT_CONCURRENT),
    }


@contextlib.contextmanager
def receiver(workdir: Path, api_url: str, vendors_url: str) -> Iterator[str]:
    """`leadflow serve-webhook` in its own process, as a team runs it."""
    from bench import free_port, started, wait_until_up

    port = free_port()
    home = workdir / "receiver"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        **adapter_env(vendors_url, home, "receiver"),
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    args = [str(BIN / "leadflow"), "serve-webhook", "--host", "127.0.0.1", "--port", str(port)]
    with started(args, env, workdir / "receiver.log", cwd=home) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/health", process, 120, "leadflow serve-webhook")
        yield url


def lead_record(key: str, number: int) -> dict[str, str]:
    """A lead known to the stub vendors by `key` (its id and its email's local part)."""
    from bench import lead_record as generated

    return {**generated(key, number), "id": key, "email": f"{key}@co{number % 997}.test"}


# --- the ways -------------------------------------------------------------------------


def in_process_ways(runtime) -> dict[str, Callable[[dict], Awaitable[None]]]:
    """bound, legacy and process_lead over `runtime`'s adapters."""
    from leadflow.decide import decide
    from leadflow.flows.lead import process_lead
    from leadflow.intake import RawRecord, validate_record
    from leadflow.integrations.base import LeadEvent

    adapters = runtime.adapters

    async def decided(record):
        lead = validate_record(RawRecord(origin="bench", data=record))
        match = await adapters.crm.look_up(lead)
        decision, _ = await decide(
            lead, match, rules=runtime.rules, scorer=adapters.scorer, assigner=runtime.assigner
        )
        return lead, decision

    def effects(lead, decision):
        event = LeadEvent(
            event_id=f"event:{lead.id}",
            lead_id=lead.id,
            occurred_at=datetime.now(UTC),
            decision=decision,
        )
        return (
            lambda: adapters.crm.upsert(lead, decision, idempotency_key=f"crm:{lead.id}"),
            lambda: adapters.notifier.notify(lead, decision, idempotency_key=f"notify:{lead.id}"),
            lambda: adapters.event_sink.record(event),
        )

    async def legacy(record):
        lead, decision = await decided(record)
        for effect in effects(lead, decision):
            await effect()

    async def bound(record):
        lead, decision = await decided(record)
        await asyncio.gather(*(effect() for effect in effects(lead, decision)))

    async def manual(record):
        outcome = await process_lead(record)
        assert outcome.ok, outcome.failed_branches

    return {"bound": bound, "legacy": legacy, "process_lead": manual}


class Stub:
    """The stub vendors' side: configuration, counts, and when each lead was answered."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def configure(self, **config: Any) -> None:
        (await self.client.post("/_config", json=config)).raise_for_status()

    async def stats(self) -> dict[str, int]:
        return (await self.client.get("/_stats")).json()

    async def answered(self, keys: list[str], within: float) -> dict[str, dict]:
        """Each lead's answer times and call counts, once all its side effects are
        answered (or at the timeout)."""
        reply = await self.client.post(
            "/_wait",
            json={"leads": keys, "calls": list(SIDE_EFFECTS), "timeout": within},
            timeout=within + 30,
        )
        reply.raise_for_status()
        return reply.json()


def done_at(answer: dict) -> float | None:
    """When the last of a lead's side effects was answered (None if one never was)."""
    times = answer["times"]
    if any(effect not in times for effect in SIDE_EFFECTS):
        return None
    return max(times[effect] for effect in SIDE_EFFECTS)


class Sender:
    """A lead sender's connection to the receiver: HTTP/1.1 over one kept-alive
    socket, as small as a client gets. The load generator shares the machine's cores
    with what it measures; httpx spent about 5 ms of CPU a POST here."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: dict) -> tuple[int, dict[str, str], bytes]:
        raw = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
        for _attempt in range(2):  # an idle connection the server closed: once more
            if self._streams is None:
                self._streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._streams
            writer.write(request)
            try:
                status_line = await reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line:
                break
            await self.close()
        else:
            raise RuntimeError("the receiver closed the connection without answering")
        status = int(status_line.split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, answer

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def post_lead(sender: Sender, record: dict) -> int:
    """POST one lead until it is accepted; the number of 503s answered first."""
    refused = 0
    while True:
        status, headers, answer = await sender.post("/leads", record)
        if status == 202:
            return refused
        if status != 503:
            raise RuntimeError(f"the receiver answered {status}: {answer[:200]!r}")
        refused += 1
        await asyncio.sleep(float(headers.get("retry-after", "1")))


# --- one lead at a time -------------------------------------------------------------------


async def one_at_a_time(
    ways: dict[str, Callable[[dict], Awaitable[None]]],
    stub: Stub,
    latency_ms: int,
    leads: int,
    warmup: int,
) -> dict:
    """Every way, lead by lead, interleaved; each lead's time from its hand-over to its
    last side effect's answer."""
    await stub.configure(latency_ms=latency_ms)
    tag = uuid.uuid4().hex[:6]
    started: dict[str, dict[str, float]] = {name: {} for name in ways}
    load = os.getloadavg()[0]
    for number in range(-warmup, leads):
        turn = list(ways)
        shift = number % len(turn)
        for name in turn[shift:] + turn[:shift]:  # the order rotates lead by lead
            key = f"a{latency_ms}{name[:2]}{tag}n{number + warmup}"
            record = lead_record(key, number + warmup)
            began = time.monotonic()
            await ways[name](record)
            (answer,) = (await stub.answered([key], within=60)).values()
            if done_at(answer) is None:
                raise RuntimeError(f"{name}: lead {key} not done within 60 s: {answer}")
            if number >= 0:
                started[name][key] = began
    result: dict[str, Any] = {"latency_ms": latency_ms, "leads": leads, "load": [load]}
    for name, begun in started.items():
        answers = await stub.answered(list(begun), within=1)
        result[name] = describe([done_at(answers[k]) - t for k, t in begun.items()])
        result[name]["repeated"] = sum(
            n - 1 for a in answers.values() for n in a["calls"].values() if n > 1
        )
    result["load"].append(os.getloadavg()[0])
    result["rate_limited"] = (await stub.stats()).get("rate_limited", 0)
    return result


def describe(samples: list[float]) -> dict[str, float]:
    from bench import describe as summary

    return summary(samples)


# --- a burst ------------------------------------------------------------------------------


async def burst(receiver_url: str, stub: Stub, leads: int, clients: int) -> dict:
    """`leads` POSTed at once by `clients` clients; when the last is done."""
    await stub.configure(latency_ms=50)
    tag = uuid.uuid4().hex[:6]
    records = [lead_record(f"burst{tag}n{i}", i) for i in range(leads)]
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for record in records:
        queue.put_nowait(record)
    refused = 0
    load = os.getloadavg()[0]

    async def client_loop(sender: Sender) -> None:
        nonlocal refused
        try:
            while not queue.empty():
                refused += await post_lead(sender, queue.get_nowait())
        finally:
            await sender.close()

    began = time.monotonic()
    await asyncio.gather(*(client_loop(Sender(receiver_url)) for _ in range(clients)))
    accepted = time.monotonic() - began
    answers = await stub.answered([r["id"] for r in records], within=120)
    finished = [done_at(a) for a in answers.values()]
    done = [t - began for t in finished if t is not None]
    stats = await stub.stats()
    return {
        "leads": leads,
        "clients": clients,
        "accepted_s": accepted,
        "done": len(done),
        "last_done_s": max(done) if done else None,
        "per_lead": describe(done) if done else None,
        "rate_limited": stats.get("rate_limited", 0),
        "receiver_503": refused,
        "repeated": sum(n - 1 for a in answers.values() for n in a["calls"].values() if n > 1),
        "load": [load, os.getloadavg()[0]],
    }


# --- the part -----------------------------------------------------------------------------


async def measure_realtime(
    receiver_url: str, vendors_url: str, workdir: Path, sizes: dict
) -> dict[str, Any]:
    """Part A: one lead at a time at each latency, the burst, then `process_lead`."""
    from bench import environment

    from leadflow.app.runtime import build_runtime, prefect_clients, use_runtime
    from leadflow.db import dispose_engines
    from leadflow.settings import Settings

    home = workdir / "in-process"
    home.mkdir(exist_ok=True)
    with environment(**adapter_env(vendors_url, home, "bench")):
        runtime = build_runtime(Settings(_env_file=None))
    await runtime.prepare_stores()
    results: dict[str, Any] = {"one_lead": []}
    posting = Sender(receiver_url)
    try:
        async with (
            httpx.AsyncClient(base_url=vendors_url, timeout=60) as vendors,
            prefect_clients(),
        ):
            stub = Stub(vendors)
            await stub.configure(requests=VENDOR_RATE, concurrent=VENDOR_CONCURRENT)
            ways = in_process_ways(runtime)

            async def realtime(record: dict) -> None:
                await post_lead(posting, record)

            interleaved = {"bound": ways["bound"], "legacy": ways["legacy"], "realtime": realtime}
            manual = {"process_lead": ways["process_lead"]}
            count, warmup = sizes["one_lead"], sizes["warmup"]
            with use_runtime(runtime):
                for latency in sizes["latencies"]:
                    run = await one_at_a_time(interleaved, stub, latency, count, warmup)
                    results["one_lead"].append(run)
                results["burst"] = await burst(receiver_url, stub, sizes["burst"], BURST_CLIENTS)
                for run in results["one_lead"]:
                    alone = await one_at_a_time(manual, stub, run["latency_ms"], count, warmup)
                    run["process_lead"] = alone["process_lead"]
                    run["load_process_lead"] = alone["load"]
    finally:
        await posting.close()
        await runtime.aclose()
        await dispose_engines()
    return results
