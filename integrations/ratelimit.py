"""A client-side limiter for calls to one vendor: requests per window and requests
in flight, so a backlog stays inside the vendor's published limits instead of
learning them from 429s.

    limiter = RateLimiter(requests=100, per_seconds=10, concurrent=10)
    async with limiter:
        response = await client.send(request)

The window is a sliding log of start times: any interval of `per_seconds` holds at
most `requests` starts, which a vendor's fixed or sliding window then never exceeds.
A limiter belongs to one adapter instance (one vendor account) and one event loop.
`RateLimiter.unlimited()` lets an adapter always say `async with self.limiter:`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import TracebackType


class RateLimiter:
    def __init__(
        self,
        requests: int | None = None,
        per_seconds: float = 1.0,
        concurrent: int | None = None,
    ) -> None:
        if requests is not None and requests < 1:
            raise ValueError("requests must be at least 1")
        if per_seconds <= 0:
            raise ValueError("per_seconds must be positive")
        if concurrent is not None and concurrent < 1:
            raise ValueError("concurrent must be at least 1")
        self.requests = requests
        self.per_seconds = per_seconds
        self.concurrent = concurrent
        self._starts: deque[float] = deque()
        self._window_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(concurrent) if concurrent else None

    @classmethod
    def unlimited(cls) -> RateLimiter:
        return cls()

    async def acquire(self) -> None:
        if self._slots is not None:
            await self._slots.acquire()
        try:
            await self._wait_for_window()
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _wait_for_window(self) -> None:
        if self.requests is None:
            return
        # One waiter at a time decides when it may start: starts stay in order.
        async with self._window_lock:
            while True:
                now = time.monotonic()
                while self._starts and now - self._starts[0] >= self.per_seconds:
                    self._starts.popleft()
                if len(self._starts) < self.requests:
                    self._starts.append(now)
                    return
                await asyncio.sleep(self.per_seconds - (now - self._starts[0]) + 0.001)

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"RateLimiter(requests={self.requests}, per_seconds={self.per_seconds}, "
            f"concurrent={self.concurrent})"
        )
