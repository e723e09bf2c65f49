"""Stub vendors on loopback for `leadflow bench`: real sockets, a latency per call,
and vendor-like rate limits that answer 429 with Retry-After when exceeded.

    .venv/bin/python benchmarks/stub_vendors.py --port 8765 --latency-ms 50

Every vendor (crm, scorer, router, notifier, events) answers `POST /<vendor>/<op>`
after the configured latency, whatever the size of the batch in the body (as bulk
endpoints roughly do), and counts requests in a fixed window per vendor: past
`--requests` per `--per-seconds`, or past `--concurrent` requests in flight, it
answers 429 with the seconds left in the window as Retry-After. `GET /_stats` gives
the counts; `POST /_config` sets the latency (and resets the counts) between runs.

The stub runs in its own process, so its work does not share the measured event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter, defaultdict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

VENDORS = ("crm", "scorer", "router", "notifier", "events")


class Limits:
    def __init__(self, requests: int, per_seconds: float, concurrent: int) -> None:
        self.requests = requests
        self.per_seconds = per_seconds
        self.concurrent = concurrent


def make_app(latency_ms: float, limits: Limits) -> Starlette:
    state = {"latency": latency_ms / 1000}
    stats: Counter[str] = Counter()
    windows: dict[str, tuple[int, int]] = {}  # vendor -> (window number, requests in it)
    in_flight: defaultdict[str, int] = defaultdict(int)

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

    async def call(request: Request) -> JSONResponse:
        vendor, op = request.path_params["vendor"], request.path_params["op"]
        if vendor not in VENDORS:
            return JSONResponse({"error": f"no vendor {vendor}"}, status_code=404)
        body = await request.json()
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
            await asyncio.sleep(state["latency"])
        finally:
            in_flight[vendor] -= 1
        stats[f"{vendor}.{op}"] += 1
        return JSONResponse({"ok": True, "items": int(body.get("n", 1))})

    async def get_stats(_request: Request) -> JSONResponse:
        return JSONResponse(dict(stats))

    async def configure(request: Request) -> JSONResponse:
        body = await request.json()
        state["latency"] = float(body.get("latency_ms", state["latency"] * 1000)) / 1000
        stats.clear()
        return JSONResponse({"latency_ms": state["latency"] * 1000})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/_health", health),
            Route("/_stats", get_stats),
            Route("/_config", configure, methods=["POST"]),
            Route("/{vendor}/{op}", call, methods=["POST"]),
        ]
    )


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
