"""Stub vendors on loopback for `leadflow bench`: real sockets, a latency per call,
and vendor-like rate limits that answer 429 with Retry-After when exceeded.

    .venv/bin/python benchmarks/stub_vendors.py --port 8765 --latency-ms 50

Two kinds of vendor, each answering after the configured latency and counting
requests in a fixed window per vendor: past `--requests` per `--per-seconds`, or past
`--concurrent` requests in flight, it answers 429 with the seconds left in the window
as Retry-After.

- Generic vendors (crm, scorer, router, notifier, events) answer `POST /<vendor>/<op>`
  whatever the size of the batch in the body (as bulk endpoints roughly do): the
  bench's own stub adapters (benchmarks/stub_adapters.py) call them.
- Vendors shaped like the real ones, for leadflow's own adapters configured as a team
  would (`LEADFLOW_ADAPTERS__*`): HubSpot's contact read, owner search and batch
  upsert under `/hubspot` (the owner look-ups answer at once: the adapter caches
  them, so only the first lead per rep would pay them), an OpenAI-compatible
  `/model/v1/chat/completions` for the model scorer, and plain webhooks `/notify` and
  `/events` for the webhook notifier and event sink. These record, per lead, when
  each call was answered (monotonic clock, comparable across processes on Linux):
  `look_up`, `score`, and the side effects `crm`, `notify`, `event`. A lead is known
  by its id, and by the local part of its email where the call carries only that;
  the benchmark gives its leads `id` = that local part.

`GET /_stats` gives the counts; `POST /_config` sets the latency and the limits
(`latency_ms`, `requests`, `concurrent`) and resets the counts and the answer times;
`POST /_wait` with `{"leads": [...], "calls": [...], "timeout": s}` answers once each
lead has each call answered (or at the timeout), with every lead's answer times and
how many times each was called.

The stub runs in its own process, so its work does not share the measured event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter, defaultdict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

VENDORS = ("crm", "scorer", "router", "notifier", "events")
SIDE_EFFECTS = ("crm", "notify", "event")


class Limits:
    def __init__(self, requests: int, per_seconds: float, concurrent: int) -> None:
        self.requests = requests
        self.per_seconds = per_seconds
        self.concurrent = concurrent


class Answers:
    """When each lead's calls were answered, and how often each was made."""

    def __init__(self) -> None:
        self.times: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.changed = asyncio.Condition()

    async def record(self, call: str, leads: list[str]) -> None:
        now = time.monotonic()
        for lead in leads:
            self.times[lead][call] = now  # the last answer (a retry answers later)
            self.calls[lead, call] += 1
        async with self.changed:
            self.changed.notify_all()

    def have(self, leads: list[str], calls: list[str]) -> bool:
        return all(call in self.times.get(lead, {}) for lead in leads for call in calls)

    def report(self, leads: list[str]) -> dict:
        return {
            lead: {
                "times": dict(self.times.get(lead, {})),
                "calls": {c: n for (name, c), n in self.calls.items() if name == lead},
            }
            for lead in leads
        }

    def clear(self) -> None:
        self.times.clear()
        self.calls.clear()


def _key(email_or_id: str) -> str:
    """A lead's key: its id, or the local part of its email."""
    return str(email_or_id).split("@", 1)[0].lower()


def make_app(latency_ms: float, limits: Limits) -> Starlette:
    state = {"latency": latency_ms / 1000}
    stats: Counter[str] = Counter()
    windows: dict[str, tuple[int, int]] = {}  # vendor -> (window number, requests in it)
    in_flight: defaultdict[str, int] = defaultdict(int)
    answers = Answers()

    def admit(vendor: str) -> float | None:
        """None if the request may go ahead, else the Retry-After in seconds."""
        now = time.monotonic()
        window = int(now // limits.per_seconds)
        number, used = windows.get(vendor, (window, 0))
        if number != window:
            used = 0
        if used >= limits.requests or in_flight[vendor] >= limits.concurrent:
            return (window + 1) * limits.per_seconds - now
        windows[vendor] = (window, used + 1)
        return None

    async def serve(vendor: str, op: str, *, latency: bool = True) -> JSONResponse | None:
        """Count the request; a 429 past the limits, else None after the latency."""
        stats["requests"] += 1
        wait = admit(vendor)
        if wait is not None:
            stats["rate_limited"] += 1
            stats[f"rate_limited.{vendor}"] += 1
            return JSONResponse(
                {"error": "rate limited"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        in_flight[vendor] += 1
        try:
            if latency:
                await asyncio.sleep(state["latency"])
        finally:
            in_flight[vendor] -= 1
        stats[f"{vendor}.{op}"] += 1
        return None

    async def call(request: Request) -> JSONResponse:
        vendor, op = request.path_params["vendor"], request.path_params["op"]
        if vendor not in VENDORS:
            return JSONResponse({"error": f"no vendor {vendor}"}, status_code=404)
        body = await request.json()
        if refused := await serve(vendor, op):
            return refused
        return JSONResponse({"ok": True, "items": int(body.get("n", 1))})

    # --- shaped like the real vendors ---------------------------------------------

    async def contact_read(request: Request) -> JSONResponse:
        if refused := await serve("hubspot", "contact_read"):
            return refused
        await answers.record("look_up", [_key(request.path_params["email"])])
        return JSONResponse({"message": "contact not found"}, status_code=404)

    async def owner_search(request: Request) -> JSONResponse:
        if refused := await serve("hubspot", "owner_search", latency=False):
            return refused
        email = request.query_params.get("email", "")
        return JSONResponse({"results": [{"id": _owner_id(email), "email": email}]})

    async def owner_read(request: Request) -> JSONResponse:
        if refused := await serve("hubspot", "owner_read", latency=False):
            return refused
        return JSONResponse({"id": request.path_params["owner"], "email": "owner@bench.test"})

    async def batch_upsert(request: Request) -> JSONResponse:
        inputs = (await request.json()).get("inputs") or []
        if refused := await serve("hubspot", "batch_upsert"):
            return refused
        emails = [str(item.get("id", "")).lower() for item in inputs]
        await answers.record("crm", [_key(email) for email in emails])
        return JSONResponse(
            {
                "status": "COMPLETE",
                "results": [
                    {"id": str(abs(hash(e)) % 10**9), "properties": {"email": e}} for e in emails
                ],
            }
        )

    async def chat_completion(request: Request) -> JSONResponse:
        body = await request.json()
        if refused := await serve("model", "chat_completion"):
            return refused
        facts = json.loads(body["messages"][-1]["content"])
        lead = facts["lead"]
        await answers.record("score", [_key(lead["email"])])
        score = 20 + (int(lead.get("employee_count") or 0) % 61)
        content = {"score": score, "reasons": [{"rule": "bench model", "points": score}]}
        return JSONResponse({"choices": [{"message": {"content": json.dumps(content)}}]})

    async def notify(request: Request) -> JSONResponse:
        body = await request.json()
        if refused := await serve("notify", "notify"):
            return refused
        await answers.record("notify", [_key(body["lead"]["id"])])
        return JSONResponse({"ok": True})

    async def events(request: Request) -> JSONResponse:
        body = await request.json()
        if refused := await serve("events", "events"):
            return refused
        rows = body.get("events", [body])
        await answers.record("event", [_key(row["lead_id"]) for row in rows])
        return JSONResponse({"ok": True})

    # --- the benchmark's side -------------------------------------------------------

    async def wait(request: Request) -> JSONResponse:
        body = await request.json()
        leads, calls = [_key(x) for x in body["leads"]], list(body.get("calls", SIDE_EFFECTS))
        try:
            async with asyncio.timeout(float(body.get("timeout", 60))):
                async with answers.changed:
                    await answers.changed.wait_for(lambda: answers.have(leads, calls))
        except TimeoutError:
            pass
        return JSONResponse(answers.report(leads))

    async def get_stats(_request: Request) -> JSONResponse:
        return JSONResponse(dict(stats))

    async def configure(request: Request) -> JSONResponse:
        body = await request.json()
        state["latency"] = float(body.get("latency_ms", state["latency"] * 1000)) / 1000
        limits.requests = int(body.get("requests", limits.requests))
        limits.concurrent = int(body.get("concurrent", limits.concurrent))
        stats.clear()
        answers.clear()
        return JSONResponse({"latency_ms": state["latency"] * 1000})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    contacts = "/hubspot/crm/v3/objects/contacts"
    return Starlette(
        routes=[
            Route("/_health", health),
            Route("/_stats", get_stats),
            Route("/_config", configure, methods=["POST"]),
            Route("/_wait", wait, methods=["POST"]),
            Route(f"{contacts}/batch/upsert", batch_upsert, methods=["POST"]),
            Route(contacts + "/{email}", contact_read),
            Route("/hubspot/crm/v3/owners/", owner_search),
            Route("/hubspot/crm/v3/owners/{owner}", owner_read),
            Route("/model/v1/chat/completions", chat_completion, methods=["POST"]),
            Route("/notify", notify, methods=["POST"]),
            Route("/events", events, methods=["POST"]),
            Route("/{vendor}/{op}", call, methods=["POST"]),
        ]
    )


def _owner_id(email: str) -> str:
    return str(sum(email.encode()) * 7919 % 10**6)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--requests", type=int, default=100, help="per vendor per window")
    parser.add_argument("--per-seconds", type=float, default=1.0, help="window length")
    parser.add_argument("--concurrent", type=int, default=20, help="per vendor in flight")
    args = parser.parse_args()
    app = make_app(args.latency_ms, Limits(args.requests, args.per_seconds, args.concurrent))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
