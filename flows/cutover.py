"""Cutting over from the current process to leadflow, one switch at a time.

The mode is the Prefect Variable `leadflow_mode` (leadflow.flows.mode); every run
reads it when it starts and file runs again before each lead, so switching to
`legacy` is also the kill switch for a run already going. Runs that start in a mode
other than `live` come here: `process-file` and `process-file-batched` through
`file_in_mode`, `process-lead` (and so the webhook receiver) through `route_record`;
`cutover-file` is the same routing as a flow of its own.

- `legacy`: leadflow leaves every lead to the current process: no look-up, no
  decision, no side effect, nothing stored; the run lists the leads as left.
- `shadow`: both run, leadflow with its side effects recorded, not performed
  (flows.shadow); the current process's result is the one that counts.
- `pilot`: a sticky share of leads (`LEADFLOW_SHADOW__PILOT_SHARE`, chosen by a hash
  of the lead id, so a lead always lands in the same bucket) goes through leadflow for
  real, with the current process's decision taken beside it for comparison; the rest
  stay with the current process. A pilot lead whose decision or side effects fail
  after their retries falls back to the current process, and the fallback is stored
  and counted in the report.
- `live`: leadflow handles every lead; the current process is not asked.

Shadow and pilot need the current process: `--legacy` or `LEADFLOW_SHADOW__LEGACY`.
A run that starts in either without it fails at once, having done nothing; a switch
to either in the middle of a file without it leaves the remaining leads to the
current process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel, Field

from leadflow.flows.context import current_runtime, use_runtime
from leadflow.flows.files import (
    FailedBranch,
    FileRunSummary,
    Intake,
    LeadFile,
    LeadsFailedError,
    SetAside,
    _listener,
    read_contents,
    split_records,
)
from leadflow.flows.lead import run_pipeline
from leadflow.flows.mode import (
    MODE_VARIABLE,
    ModeError,
    ModeReader,
    current_mode,
    in_mode,
    in_pilot,
    mode_now,
    set_mode,
    start_run,
)
from leadflow.flows.shadow import (
    ShadowContext,
    _guarded,
    _warm_up,
    _with_records,
    shadow_context,
    shadow_one,
)
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.logging import get_logger
from leadflow.models import Lead, LeadOutcome, lead_id_of
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
    "file_in_mode",
    "in_pilot",
    "route_record",
    "set_mode",
]

log = get_logger(__name__)

CURRENT = "current process"


class CutoverSummary(BaseModel):
    """Where each lead went: `current process`, `shadow`, `leadflow`, `fallback`."""

    file: str
    modes: list[str] = Field(default_factory=list)  # the modes seen, in order
    routes: dict[str, int] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)
    set_aside: int = 0


class RoutedLead(BaseModel):
    """What `process-lead` did with one lead in a mode other than `live`."""

    lead_id: str | None
    mode: str
    route: str  # current process, shadow, leadflow or fallback
    comparison: str | None = None  # matched / mismatched / ignored / error, if compared
    note: str = ""


def _context(live: Runtime, legacy: str | None, settings: ShadowSettings) -> ShadowContext | None:
    """What shadow and pilot leads of one run share; None without a current process."""
    return shadow_context(live, legacy, settings) if legacy else None


def _needs_legacy(mode: str, legacy: str | None) -> None:
    if mode in ("shadow", "pilot") and not legacy:
        raise ModeError(
            f"mode {mode}: the current process must be given (--legacy SPEC, or the "
            "setting LEADFLOW_SHADOW__LEGACY); nothing was done"
        )


async def _pilot_one(
    lead: Lead, raw: dict[str, Any], live: Runtime, context: ShadowContext
) -> tuple[ComparisonRecord, LeadOutcome | None]:
    """leadflow for real beside the current process's decision; a failure hands the
    lead back to the current process (the outcome is then None)."""
    timeout = context.settings.timeout_seconds
    done: list[LeadOutcome] = []

    async def candidate():
        outcome = await run_pipeline(lead, live, [])
        if not outcome.ok:
            raise RuntimeError(
                "; ".join(f"{name}: {why}" for name, why in outcome.failed_branches.items())
            )
        done.append(outcome)
        return outcome.decision, outcome.steps

    with use_runtime(live):
        control, ours = await asyncio.gather(
            _guarded(lambda: context.legacy.decide_with_steps(raw), timeout),
            _guarded(candidate, timeout),
        )
    fallback = ours.error is not None
    if fallback:
        log.warning("pilot lead handed back to the current process", lead_id=lead.id)
    record = context.record(
        lead,
        raw,
        control,
        ours,
        kind="pilot",
        fallback=fallback,
    )
    return record, None if fallback else (done[0] if done else None)


@dataclass
class Routed:
    """A file routed lead by lead: the summary, and what the file run reports."""

    summary: CutoverSummary
    intake: Intake
    outcomes: list[LeadOutcome] = field(default_factory=list)
    failures: list[FailedBranch] = field(default_factory=list)


async def route_file(
    path: Path, legacy: str | None, concurrency: int | None, first: str | None = None
) -> Routed:
    """Each lead of a file the way the mode says when the lead starts (see the module
    docstring). `first` is the mode the run started in, if already read."""
    live = current_runtime()
    settings = ShadowSettings()
    legacy = legacy or settings.legacy
    first = first or await mode_now()
    _needs_legacy(first, legacy)
    contents = read_contents(path, live)
    intake = split_records(contents)
    raw = {lead.id: record for lead, record in _with_records(contents, intake.leads)}
    context = _context(live, legacy, settings)
    if context:
        # A backlog's shadow leads skip the five task runs per lead, as the batch path
        # does; each still reads the mode when it starts.
        context.in_process = len(intake.leads) > live.settings.pipeline.batch_threshold
        await _warm_up(settings)
    routed = Routed(CutoverSummary(file=str(path), set_aside=len(intake.bad)), intake)
    seen, routes = routed.summary.modes, Counter[str]()
    stored: list[ComparisonRecord] = []
    listener = _listener.get()
    if listener:
        listener.started(len(intake.leads))
    limit = asyncio.Semaphore(concurrency or live.settings.pipeline.concurrency)

    async def one(lead: Lead) -> None:
        async with limit:
            mode = await mode_now()
            if not seen or seen[-1] != mode:
                seen.append(mode)
            with in_mode(mode):
                route, ok = await _route_one(
                    lead, raw[lead.id], mode, live, context, routed, stored
                )
            routes[route] += 1
        if listener:
            listener.finished(lead.id, ok)

    try:
        await asyncio.gather(*(one(lead) for lead in intake.leads))
    finally:
        if context:
            await context.legacy.aclose()
    await ComparisonStore(settings.database_url).add_many(stored)
    routed.summary.routes = dict(routes)
    routed.summary.failed = [f"{f.lead_id}: {f.branch}: {f.reason}" for f in routed.failures]
    return routed


async def _route_one(
    lead: Lead,
    raw: dict[str, Any],
    mode: str,
    live: Runtime,
    context: ShadowContext | None,
    routed: Routed,
    stored: list[ComparisonRecord],
) -> tuple[str, bool]:
    """One lead in one mode: where it went and whether it went well."""
    if mode == "legacy" or (mode == "pilot" and not in_pilot(lead.id, context_share(context))):
        return CURRENT, True
    if mode in ("shadow", "pilot") and context is None:
        log.warning("no current process to compare with: lead left to it", lead_id=lead.id)
        return CURRENT, True
    if mode == "shadow":
        with use_runtime(context.runtime):
            records = await shadow_one(lead, raw, context)
        stored.extend(records)
        return "shadow", records[0].outcome.value != "error"
    if mode == "pilot":
        record, outcome = await _pilot_one(lead, raw, live, context)
        stored.append(record)
        if outcome is None:
            return "fallback", True
        routed.outcomes.append(outcome)
        return "leadflow", True
    return "leadflow", await _live_one(lead, live, routed)


def context_share(context: ShadowContext | None) -> float:
    return (context.settings if context else ShadowSettings()).pilot_share


async def _live_one(lead: Lead, live: Runtime, routed: Routed) -> bool:
    with use_runtime(live):
        try:
            outcome = await run_pipeline(lead, live, [])
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            routed.failures.append(
                FailedBranch(lead_id=lead.id, branch="pipeline", reason=reason, email=lead.email)
            )
            return False
    outcome.email = lead.email
    routed.outcomes.append(outcome)
    routed.failures += FailedBranch.all_in(outcome, routed.intake.rows.get(lead.id, 0))
    return outcome.ok


@flow(name="cutover-file")
async def cutover_file(
    path: LeadFile, legacy: str | None = None, concurrency: int | None = None
) -> CutoverSummary:
    """Process a file the way the current mode says (see the module docstring).
    `legacy` names the current process (needed in shadow and pilot modes; default
    LEADFLOW_SHADOW__LEGACY)."""
    first = await start_run()
    routed = await route_file(Path(path), legacy, concurrency, first)
    return routed.summary


async def file_in_mode(path: Path, mode: str, concurrency: int | None = None) -> FileRunSummary:
    """`process-file` (and the batch path) in a mode other than `live`: the file routed
    lead by lead, reported as a file run. Bad records are listed, not quarantined: in
    these modes the current process is the one that handles the file's records."""
    started = time.perf_counter()
    routed = await route_file(path, None, concurrency, mode)
    intake = routed.intake
    tiers = Counter(o.decision.tier for o in routed.outcomes)
    reps = Counter(o.decision.rep for o in routed.outcomes)
    summary = FileRunSummary(
        file=str(path),
        records=len(intake.leads) + len(intake.bad) + len(intake.merged),
        processed=len(routed.outcomes),
        by_tier=dict(tiers),
        by_rep=dict(reps),
        failed=routed.failures,
        set_aside=[SetAside.of(r) for r in sorted(intake.bad, key=lambda r: r.position)],
        merged=intake.merged,
        columns=intake.contents_report,
        modes=routed.summary.modes,
        routes=routed.summary.routes,
        wall_seconds=round(time.perf_counter() - started, 3),
    )
    by_id = {lead.id: lead for lead in intake.leads}
    await current_runtime().done.add(  # handled for real (pilot, or live after a switch)
        (by_id[o.lead_id], o.decision.tier, o.decision.rep) for o in routed.outcomes if o.ok
    )
    await acreate_markdown_artifact(
        key="process-file-summary", markdown=summary.as_markdown(), description=str(path)
    )
    log.info("file routed", file=str(path), modes=summary.modes, **summary.routes)
    if summary.failed:
        raise LeadsFailedError(summary)
    return summary


async def route_record(record: dict[str, Any], mode: str, origin: str, position: int) -> RoutedLead:
    """`process-lead` in a mode other than `live`: one lead to the current process,
    through shadow, or (pilot) through leadflow for real with fallback."""
    lead_id = lead_id_of(record)
    if mode == "legacy":
        log.info("lead left to the current process", mode=mode, lead_id=lead_id)
        return RoutedLead(lead_id=lead_id, mode=mode, route=CURRENT)
    settings = ShadowSettings()
    _needs_legacy(mode, settings.legacy)
    checked = validate_record(RawRecord(origin=origin, position=position, data=record))
    if isinstance(checked, Rejection):
        log.warning("lead left to the current process", reason=checked.reason)
        return RoutedLead(lead_id=lead_id, mode=mode, route=CURRENT, note=checked.reason)
    if mode == "pilot" and not in_pilot(checked.id, settings.pilot_share):
        return RoutedLead(lead_id=checked.id, mode=mode, route=CURRENT, note="outside the pilot")
    live = current_runtime()
    context = _context(live, settings.legacy, settings)
    await _warm_up(settings)
    try:
        if mode == "shadow":
            with use_runtime(context.runtime):
                records = await shadow_one(checked, record, context)
            route = "shadow"
        else:
            stored, outcome = await _pilot_one(checked, record, live, context)
            records = [stored]
            route = "leadflow" if outcome else "fallback"
    finally:
        await context.legacy.aclose()
    await ComparisonStore(settings.database_url).add_many(records)
    return RoutedLead(
        lead_id=checked.id, mode=mode, route=route, comparison=records[0].outcome.value
    )
