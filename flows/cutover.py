"""Cutting over from the current process to leadflow, one switch at a time.

The mode lives in the Prefect Variable `leadflow_mode` (default: `LEADFLOW_MODE`,
`live`), so an operator switches it in the UI or with `leadflow mode shadow`, with
no redeploy; it is read when a run starts and again before each lead of a file
(at most every `MODE_TTL_SECONDS`), so switching to `legacy` is also the kill switch
for a run already going.

- `legacy`: leadflow leaves every lead to the current process; nothing runs.
- `shadow`: both run, leadflow with its side effects recorded, not performed
  (flows.shadow); the current process's result is the one that counts.
- `pilot`: a sticky share of leads (`LEADFLOW_SHADOW__PILOT_SHARE`, chosen by a hash
  of the lead id, so a lead always lands in the same bucket) goes through leadflow for
  real, with the current process's decision taken beside it for comparison; the rest
  stay with the current process. A pilot lead whose decision or side effects fail
  after their retries falls back to the current process, and the fallback is stored
  and counted in the report.
- `live`: leadflow handles every lead; the current process is not asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow
from prefect.variables import Variable
from pydantic import BaseModel, Field

from leadflow.flows.context import current_runtime, use_runtime
from leadflow.flows.files import LeadFile, _listener, read_contents, split_records
from leadflow.flows.lead import run_pipeline
from leadflow.flows.shadow import (
    ShadowContext,
    _guarded,
    _run_id,
    _with_records,
    shadow_one,
    shadow_runtime,
)
from leadflow.integrations.legacy_spec import build_legacy
from leadflow.integrations.recorders import Journal
from leadflow.logging import get_logger
from leadflow.models import Lead
from leadflow.shadow_settings import MODES, ShadowSettings
from leadflow.shadow_store import ComparisonRecord, ComparisonStore

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

MODE_VARIABLE = "leadflow_mode"
MODE_TTL_SECONDS = 2.0


class ModeError(ValueError):
    """The mode variable holds something that is not a mode."""


async def current_mode(settings: ShadowSettings | None = None) -> str:
    """The run mode: the Prefect Variable, else the setting."""
    value = await Variable.aget(MODE_VARIABLE, default=None)
    if value is None:
        return (settings or ShadowSettings()).mode
    if value not in MODES:
        raise ModeError(
            f"Prefect Variable {MODE_VARIABLE} is {value!r}; expected one of {', '.join(MODES)}"
        )
    return str(value)


async def set_mode(mode: str) -> None:
    if mode not in MODES:
        raise ModeError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    await Variable.aset(MODE_VARIABLE, mode, overwrite=True)


def in_pilot(lead_id: str, share: float) -> bool:
    """Whether a lead is in the pilot share: the first 8 bytes of the SHA-256 of its
    id as a number in [0, 1). The same lead lands in the same bucket in every run and
    every process; raising the share only adds leads to the pilot."""
    digest = hashlib.sha256(lead_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class ModeReader:
    """The mode, re-read at most every `ttl` seconds during a run."""

    def __init__(self, settings: ShadowSettings, ttl: float | None = None) -> None:
        self.settings = settings
        self.ttl = MODE_TTL_SECONDS if ttl is None else ttl
        self._value: str | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:
            if self._value is None or time.monotonic() - self._read_at >= self.ttl:
                self._value = await current_mode(self.settings)
                self._read_at = time.monotonic()
            return self._value


class CutoverSummary(BaseModel):
    """Where each lead went: `current process`, `shadow`, `leadflow`, `fallback`."""

    file: str
    modes: list[str] = Field(default_factory=list)  # the modes seen, in order
    routes: dict[str, int] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)
    set_aside: int = 0


async def _pilot_one(
    lead: Lead, raw: dict[str, Any], live: Runtime, context: ShadowContext
) -> tuple[ComparisonRecord, bool]:
    """leadflow for real beside the current process's decision; a failure hands the
    lead back to the current process."""
    timeout = context.settings.timeout_seconds

    async def candidate():
        outcome = await run_pipeline(lead, live, [])
        if not outcome.ok:
            raise RuntimeError(
                "; ".join(f"{name}: {why}" for name, why in outcome.failed_branches.items())
            )
        return outcome.decision, outcome.steps

    with use_runtime(live):
        control, ours = await asyncio.gather(
            _guarded(lambda: context.legacy.decide_with_steps(raw), timeout),
            _guarded(candidate, timeout),
        )
    fallback = ours.error is not None
    if fallback:
        log.warning("pilot lead handed back to the current process", lead_id=lead.id)
    record = context.record(lead, raw, control, ours, kind="pilot", fallback=fallback)
    return record, fallback


@flow(name="cutover-file")
async def cutover_file(
    path: LeadFile, legacy: str | None = None, concurrency: int | None = None
) -> CutoverSummary:
    """Process a file the way the current mode says (see the module docstring).
    `legacy` names the current process (needed in shadow and pilot modes)."""
    live = current_runtime()
    settings = ShadowSettings()
    modes = ModeReader(settings)
    first = await modes.get()
    if first in ("shadow", "pilot") and not legacy:
        raise ModeError(f"mode {first}: the current process (legacy) must be given")
    contents = read_contents(Path(path), live)
    intake = split_records(contents)
    leads, bad = intake.leads, intake.bad
    raw = {lead.id: record for lead, record in _with_records(contents, leads)}
    run_id = _run_id()
    journal = Journal()
    context = (
        ShadowContext(
            run_id=run_id,
            spec=legacy,
            legacy=build_legacy(legacy, live.settings, settings),
            runtime=shadow_runtime(live, journal, run_id, settings),
            journal=journal,
            settings=settings,
        )
        if legacy
        else None
    )
    seen: list[str] = []
    routes: Counter[str] = Counter()
    failed: list[str] = []
    stored: list[ComparisonRecord] = []
    listener = _listener.get()
    if listener:
        listener.started(len(leads))
    limit = asyncio.Semaphore(concurrency or live.settings.pipeline.concurrency)

    async def one(lead: Lead) -> None:
        async with limit:
            mode = await modes.get()
            if not seen or seen[-1] != mode:
                seen.append(mode)
            ok = True
            if mode == "legacy" or (
                mode == "pilot" and not in_pilot(lead.id, settings.pilot_share)
            ):
                routes["current process"] += 1
            elif mode == "shadow" and context:
                with use_runtime(context.runtime):
                    stored.extend(await shadow_one(lead, raw[lead.id], context))
                routes["shadow"] += 1
            elif mode == "pilot" and context:
                record, fell_back = await _pilot_one(lead, raw[lead.id], live, context)
                stored.append(record)
                routes["fallback" if fell_back else "leadflow"] += 1
            else:
                ok = await _live_one(lead, live, failed)
                routes["leadflow"] += 1
        if listener:
            listener.finished(lead.id, ok)

    try:
        await asyncio.gather(*(one(lead) for lead in leads))
    finally:
        if context:
            await context.legacy.aclose()
    await ComparisonStore(settings.database_url).add_many(stored)
    return CutoverSummary(
        file=str(path),
        modes=seen or [first],
        routes=dict(routes),
        failed=failed,
        set_aside=len(bad),
    )


async def _live_one(lead: Lead, live: Runtime, failed: list[str]) -> bool:
    with use_runtime(live):
        try:
            outcome = await run_pipeline(lead, live, [])
        except Exception as exc:
            failed.append(f"{lead.id}: {type(exc).__name__}: {exc}")
            return False
    failed.extend(f"{lead.id}: {name}: {why}" for name, why in outcome.failed_branches.items())
    return outcome.ok
