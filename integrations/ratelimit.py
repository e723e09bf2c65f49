"""A client-side rate limit for one adapter: at most `requests` starts per `per_seconds`
sliding window, at most `max_concurrent` requests in flight, and a pause when the
vendor answers with Retry-After.

Every HTTP adapter holds one, set from its settings with the vendor's published limit
as the default, so a burst of leads queues here instead of hitting 429s. Vendors
count per app or per token, so the limit is per adapter instance (one per process);
several workers against one vendor account should lower it to their share.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


class RateLimiter:
    def __init__(
        self,
        requests: int,
        per_seconds: float,
        *,
        max_concurrent: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests < 1 or per_seconds <= 0:
            raise ValueError("a rate limit needs requests >= 1 and per_seconds > 0")
        self.requests = requests
        self.per_seconds = per_seconds
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request until `seconds` from now (the vendor's Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait_needed(self, now: float) -> float:
        while self._starts and now - self._starts[0] >= self.per_seconds:
            self._starts.popleft()
        wait = self._paused_until - now
        if len(self._starts) >= self.requests:
            wait = max(wait, self._starts[0] + self.per_seconds - now)
        return max(0.0, wait)

    async def _acquire_start(self) -> None:
        # One waiter at a time takes the next start, so starts stay in arrival order.
        async with self._lock:
            while (wait := self._wait_needed(self._clock())) > 0:
                await self._sleep(wait)
            self._starts.append(self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a concurrency slot and a start in the window for one request."""
        if self._slots is None:
            await self._acquire_start()
            yield
            return
        async with self._slots:
            await self._acquire_start()
            yield
