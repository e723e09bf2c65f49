"""The benchmark's stub vendors over real sockets: past their limit they answer 429
with Retry-After, which the adapters' HTTP layer turns into RateLimited; a client-side
RateLimiter at the vendor's limit receives none."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from leadflow.integrations.errors import RateLimited
from leadflow.integrations.ratelimit import RateLimiter
from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from stub_adapters import Vendor
from stub_vendors import Limits, make_app

LIMIT = Limits(requests=5, per_seconds=0.5, concurrent=50)


@pytest.fixture(scope="module")
def vendors() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(make_app(20, LIMIT), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "stub vendors did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


async def calls(
    base_url: str, limiter: RateLimiter | None, count: int
) -> list[BaseException | None]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        await client.post("/_config", json={})  # reset the counts
        await asyncio.sleep(LIMIT.per_seconds)  # a fresh window
        vendor = Vendor(client, "crm", limiter)
        return await asyncio.gather(
            *(vendor.call("upsert") for _ in range(count)), return_exceptions=True
        )


async def test_past_the_limit_the_vendor_answers_429_with_retry_after(vendors):
    results = await calls(vendors, None, 12)
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert 0 < len(limited) <= 12 - LIMIT.requests
    assert all(r.retry_after and r.retry_after >= 1 for r in limited)
    assert all(r is None or isinstance(r, RateLimited) for r in results)


async def test_a_client_side_limiter_within_the_vendors_limit_gets_no_429(vendors):
    # The vendor counts arrivals, the limiter starts; arrivals jitter by up to a window
    # on a busy machine, so one vendor window may see two of the limiter's: 2 + 2 < 5.
    began = time.monotonic()
    results = await calls(vendors, RateLimiter(requests=2, per_seconds=0.5), 12)
    assert results == [None] * 12
    assert time.monotonic() - began >= 5 * 0.5  # 12 calls at 2 per window: 6 windows
    async with httpx.AsyncClient(base_url=vendors) as client:
        stats = (await client.get("/_stats")).json()
    assert stats.get("rate_limited", 0) == 0 and stats["crm.upsert"] == 12
