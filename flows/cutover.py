"""Cutting over from the current process to leadflow, one switch at a time.

The mode is the Prefect Variable `leadflow_mode` (leadflow.flows.mode). Every way in
reads it when it takes leads in (a file a group at a time, the receiver and the
polls a group at a time, `process-lead` once), so switching to `legacy` is also the
kill switch for a run already going. Leads taken in while the mode is not `live`
come here, to `route_leads`, the one router:

- `legacy`: leadflow leaves every lead to the current process: no look-up, no
  decision, no side effect, nothing stored.
- `shadow`: both run, leadflow through the one engine with its side effects recorded,
  not performed (flows/shadow.py); the current process's result is the one that
  counts, and each lead's comparison is stored.
- `pilot`: a sticky share of leads (`LEADFLOW_SHADOW__PILOT_SHARE`, chosen by a hash
  of the lead id, so a lead always lands in the same bucket) goes through leadflow for
  real, with the current process's decision taken beside it for comparison; the rest
  stay with the current process. A pilot lead whose decision or side effects fail
  after their retries falls back to the current process, and the fallback is stored
  and counted in the report.
- `live`: leadflow handles every lead; the current process is not asked.

Shadow and pilot need the current process: `--legacy` or `LEADFLOW_SHADOW__LEGACY`.
A run that starts in either without it fails at once, having done nothing; a switch
to either in the middle of a run without it leaves the leads to the current process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow

from leadflow.flows.context import current_runtime, use_runtime
from leadflow.flows.engine import Group, run_group
from leadflow.flows.files import LeadFile, run_file
from leadflow.flows.mode import (
    MODE_VARIABLE,
    ModeError,
    ModeReader,
    current_mode,
    in_mode,
    in_pilot,
    needs_legacy,
    set_mode,
    start_run,
)
from leadflow.flows.shadow import (
    ShadowContext,
    compare_group,
    shadow_context,
    shadow_results,
    side_of,
    warm_up,
)
from leadflow.flows.summary import (
    AlreadyDone,
    EngineResult,
    FileRunSummary,
    LeadResult,
    LeadsFailedError,
    LeftToCurrentProcess,
)
from leadflow.logging import get_logger
from leadflow.models import Lead, LeadOutcome
from leadflow.shadow_settings import ShadowSettings
from leadflow.shadow_store import ComparisonRecord, ComparisonStore

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

__all__ = [
    "MODE_VARIABLE",
    "ModeError",
    "ModeReader",
    "current_mode",
    "cutover_file",
    "in_pilot",
    "route_leads",
    "set_mode",
]

log = get_logger(__name__)


async def route_leads(
    runtime: Runtime,
    leads: Sequence[Lead],
    raw: dict[str, dict[str, Any]],
    mode: str,
    *,
    rows: dict[str, int] | None = None,
    legacy: str | None = None,
) -> list[LeadResult]:
    """Where `mode` sends each lead (see the module docstring); one result per lead, in
    order. `raw` holds each lead's record as received, which the current process is
    given; `legacy` overrides LEADFLOW_SHADOW__LEGACY."""
    settings = ShadowSettings()
    spec = legacy or settings.legacy
    if mode == "live":
        return list(await run_group(Group(leads, rows=rows), runtime))
    if mode == "legacy" or not spec:
        if mode != "legacy":
            log.warning("no current process to compare with: leads left to it", leads=len(leads))
        return [_left(lead, mode) for lead in leads]
    context = shadow_context(runtime, spec, settings, baseline=False)
    await warm_up(settings)
    try:
        if mode == "shadow":
            records = await compare_group(leads, raw, context)
            await ComparisonStore(settings.database_url).add_many(records)
            return shadow_results(records)
        return await _pilot(leads, raw, runtime, context, rows or {})
    finally:
        await context.aclose()


def _left(lead: Lead, mode: str, route: str = "current process") -> LeftToCurrentProcess:
    return LeftToCurrentProcess(lead_id=lead.id, mode=mode, route=route, email=lead.email)


async def _pilot(
    leads: Sequence[Lead],
    raw: dict[str, dict[str, Any]],
    live: Runtime,
    context: ShadowContext,
    rows: dict[str, int],
) -> list[LeadResult]:
    """The pilot share through leadflow for real beside the current process's
    decision; a pilot lead leadflow fails is handed back to the current process, and
    its failed side effects are closed, not left for `leadflow replay`."""
    share = context.settings.pilot_share
    pilot = [lead for lead in leads if in_pilot(lead.id, share)]
    if not pilot:
        return [_left(lead, "pilot") for lead in leads]
    limit = context.settings.timeout_seconds

    async def leadflow() -> tuple[dict[str, EngineResult | Exception], float]:
        began = time.perf_counter()
        try:
            with use_runtime(live), in_mode("pilot"):
                results = await run_group(Group(pilot, rows=rows), live)
            answers: dict[str, EngineResult | Exception] = {r.lead_id: r for r in results}
        except Exception as exc:  # the engine's own failure (its database): all handed back
            log.warning("pilot group failed in leadflow", error=f"{type(exc).__name__}: {exc}")
            answers = dict.fromkeys((lead.id for lead in pilot), exc)
        return answers, (time.perf_counter() - began) * 1000

    controls, (ours, ms) = await asyncio.gather(context.controls(pilot, raw), leadflow())
    records: list[ComparisonRecord] = []
    by_id: dict[str, LeadResult] = {}
    handed_back: list[str] = []
    for lead in pilot:
        result = ours[lead.id]
        if isinstance(result, AlreadyDone):  # leadflow finished it in an earlier run
            by_id[lead.id] = result
            continue
        done = result if isinstance(result, LeadOutcome) and result.ok else None
        candidate = side_of(result, ms, limit)
        records.append(
            context.record(
                lead,
                raw[lead.id],
                controls[lead.id],
                candidate,
                kind="pilot",
                fallback=done is None,
            )
        )
        if done is not None:
            by_id[lead.id] = done
        else:
            log.warning("pilot lead handed back to the current process", lead_id=lead.id)
            by_id[lead.id] = _left(lead, "pilot", "fallback")
            handed_back.append(lead.id)
    await ComparisonStore(context.settings.database_url).add_many(records)
    await live.failed_effects.hand_back(handed_back)
    return [by_id.get(lead.id) or _left(lead, "pilot") for lead in leads]


@flow(name="cutover-file")
async def cutover_file(
    path: LeadFile,
    legacy: str | None = None,
    concurrency: int | None = None,
    batch_size: int | None = None,
) -> FileRunSummary:
    """Process a file the way the current mode says (see the module docstring), with
    `legacy` as the current process (needed in shadow and pilot modes; default
    LEADFLOW_SHADOW__LEGACY). Ends Failed if a lead failed in leadflow's hands."""
    mode = await start_run()
    needs_legacy(mode, legacy or ShadowSettings().legacy)
    summary = await run_file(
        current_runtime(),
        Path(path),
        batch_size=batch_size,
        concurrency=concurrency,
        legacy=legacy,
    )
    log.info("file routed", file=str(path), modes=summary.modes, **summary.routes)
    if summary.failed_total:
        raise LeadsFailedError(summary)
    return summary
