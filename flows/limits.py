"""Vendor limits that hold across every worker: Prefect global concurrency limits.

A vendor's API allows so many calls at once and so many a second, whichever machine
they come from. Per-process semaphores cannot enforce that once several workers run
flows; Prefect's global concurrency limits can, because the server counts the slots.
For each adapter name with limits in the settings there are two limits on the
server:

- `vendor:<name>`: at most `concurrency` calls in flight (`concurrency()`);
- `vendor:<name>:rate`: at most `per_second` calls started a second, in bursts of up
  to that many (`rate_limit()`, a limit whose slots decay).

`leadflow limits apply` creates or updates them from the settings
(LEADFLOW_LIMITS__<ADAPTER>__CONCURRENCY / __PER_SECOND). The tasks that call a
vendor hold `vendor_limit(adapter)` around the call. Prefect's `concurrency()` and
`rate_limit()` do nothing for a limit the server does not have, so `vendor_limit`
looks the limits up first and logs once per process when an adapter has none:
silence would look like a limit in force. A long-running process looks again a
minute later, in the background: the call that finds the answer a minute old goes
ahead on it instead of waiting for the API (on a lead's path, the look-ups of three
side effects' vendors cost tens of milliseconds).

The side-effect tasks of an adapter with limits in the settings also carry a
`vendor:<name>` tag (flows/lead.py), so the runs of one vendor can be found in the UI.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.exceptions import ObjectNotFound

from leadflow.integrations.base import Adapter
from leadflow.logging import get_logger
from leadflow.settings import Settings, VendorLimit

log = get_logger(__name__)

LOOK_AGAIN_SECONDS = 60.0


def vendor_tag(adapter: Adapter) -> str:
    return f"vendor:{adapter.limits_vendor}"


def concurrency_name(vendor: str) -> str:
    return f"vendor:{vendor}"


def rate_name(vendor: str) -> str:
    return f"vendor:{vendor}:rate"


@dataclass(frozen=True)
class AppliedLimit:
    name: str
    limit: int
    slot_decay_per_second: float


def wanted_limits(vendor: str, limit: VendorLimit) -> list[AppliedLimit]:
    """The global concurrency limits one vendor's settings stand for."""
    wanted = []
    if limit.concurrency:
        wanted.append(AppliedLimit(concurrency_name(vendor), limit.concurrency, 0.0))
    if limit.per_second:
        burst = max(1, math.ceil(limit.per_second))
        wanted.append(AppliedLimit(rate_name(vendor), burst, limit.per_second))
    return wanted


async def apply_limits(settings: Settings) -> list[AppliedLimit]:
    """Create or update the server's limits for every vendor in the settings."""
    applied = [
        wanted
        for vendor, limit in sorted(settings.limits.items())
        for wanted in wanted_limits(vendor, limit)
    ]
    async with get_client() as client:
        for limit in applied:
            await client.upsert_global_concurrency_limit_by_name(
                limit.name, limit.limit, slot_decay_per_second=limit.slot_decay_per_second
            )
    return applied


class _Known:
    """Which limits exist on the server: looked up on first use, then again in the
    background once the answer is a minute old."""

    def __init__(self) -> None:
        self.checked: dict[str, tuple[float, bool]] = {}
        self.reported: set[str] = set()
        # One look-up at a time per event loop: a file's leads start together, and
        # should not all ask the server the same question.
        self.locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._refreshing: dict[str, asyncio.Task] = {}

    def _fresh(self, name: str) -> bool | None:
        seen = self.checked.get(name)
        if seen and time.monotonic() - seen[0] < LOOK_AGAIN_SECONDS:
            return seen[1]
        return None

    async def exists(self, name: str) -> bool:
        seen = self.checked.get(name)
        if seen is not None:
            if self._fresh(name) is None:
                self._refresh_later(name)
            return seen[1]
        lock = self.locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if name not in self.checked:
                await self._look_up(name)
            return self.checked[name][1]

    async def _look_up(self, name: str) -> None:
        try:
            async with get_client() as client:
                limit = await client.read_global_concurrency_limit_by_name(name)
            found = bool(limit.active)
        except ObjectNotFound:
            found = False
        self.checked[name] = (time.monotonic(), found)

    def _refresh_later(self, name: str) -> None:
        """Look `name` up again off the caller's path (once at a time); until it
        answers, and if it fails, the last answer stands and the next call tries again."""
        loop = asyncio.get_running_loop()
        running = self._refreshing.get(name)
        if running is not None and not running.done() and running.get_loop() is loop:
            return

        async def refresh() -> None:
            lock = self.locks.setdefault(loop, asyncio.Lock())
            try:
                async with lock:
                    await self._look_up(name)
            except Exception as exc:
                log.warning("could not look up a vendor limit", limit=name, error=str(exc)[:200])

        self._refreshing[name] = loop.create_task(refresh())


_known = _Known()


@asynccontextmanager
async def vendor_limit(adapter: Adapter) -> AsyncIterator[None]:
    """Hold the adapter's vendor limits, those that exist, around one call."""
    vendor = adapter.limits_vendor
    have_rate = await _known.exists(rate_name(vendor))
    have_concurrency = await _known.exists(concurrency_name(vendor))
    if not (have_rate or have_concurrency):
        if vendor not in _known.reported:
            _known.reported.add(vendor)
            log.info(
                "no vendor limit on the Prefect server",
                vendor=vendor,
                limits=[concurrency_name(vendor), rate_name(vendor)],
                hint="set LEADFLOW_LIMITS__<ADAPTER>__* and run `leadflow limits apply`",
            )
        yield
        return
    if have_rate:
        await rate_limit(rate_name(vendor), strict=False)
    if have_concurrency:
        async with concurrency(concurrency_name(vendor), strict=False):
            yield
    else:
        yield
