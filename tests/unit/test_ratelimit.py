"""The client-side rate limiter, on a virtual clock: its sleeps advance the clock, so
the test checks exactly when each request starts without waiting for real time."""

from __future__ import annotations

import asyncio

import pytest

from leadflow.integrations.ratelimit import RateLimiter


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_no_more_than_n_starts_in_any_window() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def one() -> None:
        async with limiter.slot():
            starts.append(clock())

    await asyncio.gather(*(one() for _ in range(12)))

    assert starts == [0.0] * 5 + [1.0] * 5 + [2.0] * 2
    for i, start in enumerate(starts):
        assert sum(1 for s in starts if start <= s < start + 1.0) <= 5, i


async def test_max_concurrent_holds_requests_in_flight() -> None:
    limiter = RateLimiter(1000, 1.0, max_concurrent=3)
    in_flight = 0
    peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        async with limiter.slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(20)))
    assert peak == 3


async def test_pause_holds_every_request_until_retry_after() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(100, 1.0, clock=clock, sleep=clock.sleep)
    limiter.pause(7.5)
    async with limiter.slot():
        assert clock() == 7.5


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="requests >= 1"):
        RateLimiter(0, 1.0)
