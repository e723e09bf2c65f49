"""The orchestrator failing is a failure, reported within a bound.

A command's flow run talks to the Prefect API as it starts and ends, and Prefect's
client retries a call that fails, with backoff, for minutes; the task runs in between
report through events, which do not fail at all. So with the API gone mid-run, a run
would do its leads and then hang at the end, retrying. `watched(work)` runs the
command's work beside a probe of the API's `/health`; when the API has not answered
for `DOWN_AFTER_SECONDS`, the work is cancelled (groups in flight hand their claims
back, so nothing is counted done that was not) and `OrchestratorDown` is raised with
what failed and since when. What the run finished is in leadflow's own records, so
the same command, once the API is back, does the rest and repeats nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from leadflow.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

PROBE_EVERY_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 5.0
DOWN_AFTER_SECONDS = 20.0
BUSY_FACTOR = 2.0  # a server that takes connections but answers slowly: 40 s


class OrchestratorDown(RuntimeError):
    """The Prefect API stopped answering during a run."""

    def __init__(self, api_url: str, since: datetime) -> None:
        super().__init__(f"the Prefect API at {api_url} stopped answering at {since:%H:%M:%S}")
        self.api_url = api_url
        self.since = since


def api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


# What Prefect's client says while its API does not answer: a warning and an error
# (with the whole event) per queued event every few seconds, "Error logging to API",
# the flow run's "Crash detected!". The watchdog says it once instead, and lets them
# speak again when the API answers.
OUTAGE_LOGGERS = (
    "prefect.events.clients",
    "prefect._internal.concurrency",
    "EventsWorker",
    "APILogWorker",
    "prefect.flow_runs",
    "prefect.task_runs",
)


class _Hush:
    """Prefect's outage messages off (`on`) and back (`off`). Loggers are disabled, not
    raised in level: Prefect's internal loggers ignore their level."""

    def __init__(self) -> None:
        self.disabled: dict[str, bool] | None = None
        self.raise_exceptions = logging.raiseExceptions

    def on(self) -> None:
        if self.disabled is None:
            self.disabled = {n: logging.getLogger(n).disabled for n in OUTAGE_LOGGERS}
            for name in OUTAGE_LOGGERS:
                logging.getLogger(name).disabled = True
            logging.raiseExceptions = False  # Prefect's log shipper prints its errors if set

    def off(self) -> None:
        if self.disabled is not None:
            for name, disabled in self.disabled.items():
                logging.getLogger(name).disabled = disabled
            logging.raiseExceptions = self.raise_exceptions
            self.disabled = None


async def _down(url: str, down_after: float) -> datetime:
    """Return when `url`'s /health has not answered for `down_after` seconds; the
    moment it was last seen answering. While it does not answer, Prefect's own
    messages about it are held back and one warning says it instead."""
    last_ok = time.monotonic()
    last_seen = datetime.now(UTC)
    hush = _Hush()
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS) as client:
            while True:
                busy = False  # it took the connection but did not answer in time
                try:
                    response = await client.get(f"{url.rstrip('/')}/health")
                    answered = response.status_code < 500
                except httpx.TimeoutException:
                    answered, busy = False, True
                except httpx.HTTPError:
                    answered = False
                # a server that refuses connections is gone; one that accepts them and
                # is slow to answer is busy (catching up on events on a small machine),
                # and is given BUSY_FACTOR times as long before the run gives up on it
                silent = time.monotonic() - last_ok
                if answered:
                    last_ok, last_seen = time.monotonic(), datetime.now(UTC)
                    hush.off()
                elif silent >= (down_after * BUSY_FACTOR if busy else down_after):
                    return last_seen  # still hushed: the command ends with its own line
                elif hush.disabled is None:
                    hush.on()
                    log.warning(
                        "the Prefect API is not answering; the run stops unless it answers again",
                        api=url,
                        within_seconds=round(down_after - (time.monotonic() - last_ok)),
                    )
                await asyncio.sleep(PROBE_EVERY_SECONDS)
    except asyncio.CancelledError:  # the work ended first
        hush.off()
        raise


async def watched(work: Awaitable[T], *, down_after: float = DOWN_AFTER_SECONDS) -> T:
    """`work`, cancelled with `OrchestratorDown` if the Prefect API stops answering
    for `down_after` seconds while it runs."""
    url = api_url()
    running = asyncio.ensure_future(work)
    if url is None:
        return await running
    probe = asyncio.create_task(_down(url, down_after))
    try:
        try:
            await asyncio.wait({running, probe}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Ctrl-C: `asyncio.wait` leaves `running` alone, so hand the interruption on
            # to it, once, and wait while it winds down (a file run drains its groups).
            # Left orphaned, it was cancelled again at the loop's close, with the
            # runtime already closing under it: no drain, crashed task runs.
            running.cancel()
            await asyncio.wait({running})
            raise
        if running.done():
            return running.result()
        running.cancel()
        await asyncio.wait({running}, timeout=10)
        raise OrchestratorDown(url, probe.result())
    finally:
        probe.cancel()
