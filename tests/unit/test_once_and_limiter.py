"""The batch path's once-only store on a real SQLite file, and the client-side
rate limiter's window and concurrency bounds."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from integrations.ratelimit import RateLimiter
from leadflow.once import OnceStore


@pytest.fixture
def store(tmp_path) -> OnceStore:
    return OnceStore(f"sqlite+aiosqlite:///{tmp_path / 'once.db'}")


async def test_a_claim_is_taken_once_and_done_rows_are_never_taken_again(store):
    token, taken = await store.claim("crm", "scope", ["a", "b", "c"])
    assert taken == {"a", "b", "c"}
    _other, none = await store.claim("crm", "scope", ["a", "b"])  # live claim: not taken
    assert none == set()
    await store.finish("crm", "scope", token, done=["a", "b"], failed={"c": "HTTP 400"})
    assert await store.status("crm", "scope", "c") == "failed"
    _t, again = await store.claim("crm", "scope", ["a", "b", "c", "d"])
    assert again == {"c", "d"}  # the failed one and the new one
    _t, elsewhere = await store.claim("crm", "other-scope", ["a"])
    assert elsewhere == {"a"}  # another CRM: another side effect


async def test_a_stale_claim_is_taken_over(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'once.db'}"
    await OnceStore(url).claim("notify", "s", ["x"])
    _t, taken = await OnceStore(url, stale_after=timedelta(0)).claim("notify", "s", ["x"])
    assert taken == {"x"}


async def test_the_limiter_keeps_any_window_under_its_request_count():
    limiter = RateLimiter(requests=5, per_seconds=0.2)
    starts: list[float] = []

    async def call():
        async with limiter:
            starts.append(time.monotonic())

    await asyncio.gather(*(call() for _ in range(15)))
    starts.sort()
    for i in range(len(starts) - 5):
        assert starts[i + 5] - starts[i] >= 0.2 - 1e-3
    assert starts[-1] - starts[0] >= 0.4 - 1e-3


async def test_the_limiter_bounds_requests_in_flight():
    limiter = RateLimiter(concurrent=3)
    in_flight = peak = 0

    async def call():
        nonlocal in_flight, peak
        async with limiter:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(call() for _ in range(12)))
    assert peak == 3


def test_the_limiter_refuses_nonsense():
    with pytest.raises(ValueError):
        RateLimiter(requests=0)
    with pytest.raises(ValueError):
        RateLimiter(per_seconds=0)
