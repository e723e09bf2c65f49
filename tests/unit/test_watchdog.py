"""The watchdog against a /health on loopback that stops answering: a short outage is
waited out (the work finishes, Prefect's loggers speak again), a long one cancels the
work with OrchestratorDown; while it lasts, Prefect's outage messages are held back."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from leadflow.flows import watchdog
from leadflow.flows.watchdog import OUTAGE_LOGGERS, OrchestratorDown, watched
from leadflow.loopback_vendor import FaultServer


@pytest.fixture
def api(monkeypatch):
    """A Prefect API stand-in whose /health answers 503 while `api.down` is set."""
    monkeypatch.setattr(watchdog, "PROBE_EVERY_SECONDS", 0.05)
    state = {"down": False}

    def health(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if state["down"] else 200, json={})

    before = {name: logging.getLogger(name).disabled for name in OUTAGE_LOGGERS}
    raise_exceptions = logging.raiseExceptions
    with FaultServer(health) as server, temporary_settings({PREFECT_API_URL: server.base_url}):
        yield state
    for name, disabled in before.items():  # as a command that ended would leave them
        logging.getLogger(name).disabled = disabled
    logging.raiseExceptions = raise_exceptions


def hushed() -> bool:
    return all(logging.getLogger(name).disabled for name in OUTAGE_LOGGERS)


async def test_a_short_outage_is_waited_out_and_prefect_speaks_again(api) -> None:
    seen = []

    async def work() -> str:
        await asyncio.sleep(0.2)
        api["down"] = True
        await asyncio.sleep(0.3)
        seen.append(hushed())
        api["down"] = False
        await asyncio.sleep(0.3)
        seen.append(hushed())
        return "done"

    assert await watched(work(), down_after=2.0) == "done"
    assert seen == [True, False]
    assert not hushed()


async def test_a_long_outage_cancels_the_work_and_says_since_when(api) -> None:
    cancelled = asyncio.Event()

    async def work() -> None:
        api["down"] = True
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(OrchestratorDown, match="stopped answering at"):
        await watched(work(), down_after=0.5)
    assert cancelled.is_set()
    assert hushed()  # the command ends with its own line, Prefect's kept quiet
