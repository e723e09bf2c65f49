"""The run mode, read as leads are taken in: the cut-over switch and kill switch.

The mode lives in the Prefect Variable `leadflow_mode` (default: `LEADFLOW_MODE`,
`live`), so an operator switches it in the UI or with `leadflow mode legacy`, with no
redeploy. Every way in reads it once per lead, when the lead is taken in: a file
(`process-file`, `cutover-file`, each file of `poll-leads`) as each group can start,
the webhook receiver and `poll-source` as each group is taken from the inbox,
`process-lead` when it starts. Live leads go to the engine; the others to
`flows/cutover.py:route_leads`. Runs also read it when they start, for their tag,
and fail at once in shadow or pilot without the current process (`needs_legacy`).

Reads go through one cache per runtime (`Runtime.modes`), kept `MODE_TTL_SECONDS`: a
file of thousands of leads asks the Prefect API about once per TTL, not once per group,
and a switch reaches every group taken in later than one TTL after it. `set_mode` in
this process updates the cache at once. A new runtime (a test's, a command's) starts
with an empty cache: nothing to reset by hand.

The mode of the current run is also kept in a context variable, so the runs' and
task runs' `mode:` tags (leadflow.flows.naming) say which mode they ran in.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.variables import Variable

from leadflow.flows.context import current_runtime, runtime_in_place
from leadflow.logging import get_logger
from leadflow.shadow_settings import MODES, ShadowSettings

log = get_logger(__name__)

MODE_VARIABLE = "leadflow_mode"
MODE_TTL_SECONDS = 2.0


class ModeError(ValueError):
    """The mode variable holds something that is not a mode, or a mode lacks what it needs."""


async def current_mode(settings: ShadowSettings | None = None) -> str:
    """The run mode: the Prefect Variable, else the setting (uncached)."""
    value = await Variable.aget(MODE_VARIABLE)
    if value is None:
        return (settings or ShadowSettings()).mode
    if value not in MODES:
        raise ModeError(
            f"Prefect Variable {MODE_VARIABLE} is {value!r}; expected one of {', '.join(MODES)}"
        )
    return str(value)


def stored_mode_offline() -> str | None:
    """The mode variable as the local Prefect database holds it, read with one SQLite
    query when no PREFECT_API_URL is set: `leadflow mode` answers in well under a
    second instead of starting a temporary server (several seconds) to ask it. None
    when the database is not local SQLite or does not hold the variable yet (the
    caller then asks Prefect, or falls back to the setting)."""
    import json
    import sqlite3

    from prefect.settings import get_current_settings
    from sqlalchemy.engine import make_url

    settings = get_current_settings()
    if settings.api.url or settings.server.database.connection_url is None:
        return None
    url = make_url(settings.server.database.connection_url.get_secret_value())
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    try:
        with sqlite3.connect(f"file:{url.database}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("select value from variable where name = ?", (MODE_VARIABLE,))
            found = row.fetchone()
    except sqlite3.Error:
        return None
    value = json.loads(found[0]) if found and found[0] is not None else None
    return value if value in MODES else None


async def set_mode(mode: str) -> None:
    if mode not in MODES:
        raise ModeError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    await Variable.aset(MODE_VARIABLE, mode, overwrite=True)
    runtime = runtime_in_place()
    if runtime is not None:  # this process's runs see the switch at once
        runtime.modes.remember(mode)


def needs_legacy(mode: str, legacy: str | None) -> None:
    """A run that starts in shadow or pilot mode without the current process fails at
    once, having done nothing."""
    if mode in ("shadow", "pilot") and not legacy:
        raise ModeError(
            f"mode {mode}: the current process must be given (--legacy SPEC, or the "
            "setting LEADFLOW_SHADOW__LEGACY); nothing was done"
        )


def in_pilot(lead_id: str, share: float) -> bool:
    """Whether a lead is in the pilot share: the first 8 bytes of the SHA-256 of its
    id as a number in [0, 1). The same lead lands in the same bucket in every run and
    every process; raising the share only adds leads to the pilot."""
    digest = hashlib.sha256(lead_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class ModeReader:
    """The mode, re-read at most every `ttl` seconds (default `MODE_TTL_SECONDS`)."""

    def __init__(self, settings: ShadowSettings | None = None, ttl: float | None = None) -> None:
        self.settings = settings
        self.ttl = ttl
        self._value: str | None = None
        self._read_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        ttl = MODE_TTL_SECONDS if self.ttl is None else self.ttl
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # one process may run several loops in turn
            self._loop, self._lock = loop, asyncio.Lock()
        async with self._lock:
            if self._value is None or time.monotonic() - self._read_at >= ttl:
                self._value = await current_mode(self.settings)
                self._read_at = time.monotonic()
            return self._value

    async def refresh(self) -> str:
        """Read the mode now and keep it (without the lock: a reader meanwhile is
        answered from the cache, not made to wait for this read)."""
        mode = await current_mode(self.settings)
        self.remember(mode)
        return mode

    def remember(self, mode: str) -> None:
        self._value, self._read_at = mode, time.monotonic()

    def forget(self) -> None:
        self._value = None


_run_mode: ContextVar[str] = ContextVar("leadflow_run_mode", default="live")


def run_mode() -> str:
    """The mode the current run (or lead, in a routed file) is in: for `mode:` tags."""
    return _run_mode.get()


@contextmanager
def in_mode(mode: str) -> Iterator[None]:
    token = _run_mode.set(mode)
    try:
        yield
    finally:
        _run_mode.reset(token)


async def start_run(*, tag_live: bool = True) -> str:
    """Read the mode as a run starts: remember it for the run's tags and put `mode:<mode>`
    on the current flow run, so the UI's tag filter tells shadow runs from live ones.
    `tag_live=False`: the run tags itself later when live (`process-lead` does, with
    its tier and rep), which saves an API call per lead."""
    mode = await current_runtime().modes.get()
    _run_mode.set(mode)
    if mode != "live" or tag_live:
        await tag_run(mode)
    return mode


async def tag_run(mode: str) -> None:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    if f"mode:{mode}" in run.tags:
        return
    async with get_client() as client:
        await client.update_flow_run(run.id, tags=sorted({*run.tags, f"mode:{mode}"}))
