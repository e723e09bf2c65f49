"""Keeping leases alive: a holder renews what it holds while it works, so that a
holder that dies stops renewing and its rows become takeable after one lease.

Used by the once-only store (side-effect claims) and the inbox (accepted leads being
processed). One renewal task per event loop renews every token held in that loop, a
third of a lease apart, with one UPDATE per store.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from leadflow.logging import get_logger

log = get_logger(__name__)


class LeaseKeeper:
    """Renews the tokens held in `holding` blocks by calling `renew(tokens)`."""

    def __init__(
        self, renew: Callable[[Sequence[str]], Awaitable[None]], lease_seconds: float
    ) -> None:
        self._renew = renew
        self.every = lease_seconds / 3
        self._held: dict[str, int] = {}
        self._tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )

    @asynccontextmanager
    async def holding(self, token: str) -> AsyncIterator[None]:
        """Keep `token`'s leases alive while the block runs (nested blocks for one
        token are counted)."""
        self._held[token] = self._held.get(token, 0) + 1
        loop = asyncio.get_running_loop()
        task = self._tasks.get(loop)
        if task is None or task.done():
            self._tasks[loop] = loop.create_task(self._keep(), name="leadflow-leases")
        try:
            yield
        finally:
            left = self._held.get(token, 0) - 1
            if left > 0:
                self._held[token] = left
            else:
                self._held.pop(token, None)

    @property
    def held(self) -> list[str]:
        return list(self._held)

    async def _keep(self) -> None:
        while self._held:
            await asyncio.sleep(self.every)
            tokens = list(self._held)
            if not tokens:
                break
            try:
                await self._renew(tokens)
            except Exception as exc:  # the next beat tries again: a lease is three beats
                log.warning("could not renew leases", error=str(exc)[:200])
