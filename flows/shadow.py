"""Shadow mode: leadflow beside the current process, on the same leads, with no effect.

Per lead, the current process (the control) and leadflow (the candidate) run at
the same time. The control's answer is the one that counts; leadflow runs its real
pipeline (the same tasks as `process_file`) with every side-effecting adapter
replaced by a recorder (integrations.recorders), so nothing reaches the CRM, the
notifier or the event sink, and its round-robin state lives in the shadow database,
apart from the live rotation. Either side may raise or hang: that is recorded for the
lead (with the timeout `LEADFLOW_SHADOW__TIMEOUT_SECONDS`) and never reaches the other
side. Both durations are measured. Each lead's comparison goes to the comparison
store; the first `LEADFLOW_SHADOW__BASELINE_SAMPLE` leads are also decided a second
time by the control, to measure its own noise.

`shadow_file` does a file in one flow run (like `process_file`); `shadow_lead` does
one record, for leads that arrive one at a time (polls, webhooks).

A backlog (a file above `LEADFLOW_PIPELINE__BATCH_THRESHOLD` records, where `leadflow
run` switches to micro-batches) is streamed as `leadflow run` streams one, and shadowed
in chunks of `LEADFLOW_PIPELINE__BATCH_SIZE` leads: leadflow decides each chunk in bulk,
without task runs, as the micro-batch path does (flows/shadow_backlog.py), while the
current process decides the chunk's leads one by one. Each chunk's comparisons are
stored and counted (flows/shadow_summary.py) as it ends, and let go. Five task runs per
lead, or the whole file in memory, would make a shadow run of a backlog many times
slower, or larger, than the run it is meant to judge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run

from leadflow.assignment import Assigner
from leadflow.compare import compare
from leadflow.done import DoneLeads
from leadflow.flows.batch_intake import Piece, StreamedIntake
from leadflow.flows.context import current_runtime, use_runtime
from leadflow.flows.files import (
    LeadFile,
    _listener,
    open_contents,
    read_contents,
    split_records,
)
from leadflow.flows.lead import run_pipeline
from leadflow.flows.mode import in_mode, tag_run
from leadflow.flows.shadow_backlog import Decided, decide_chunk, decide_one
from leadflow.flows.shadow_summary import ShadowRunSummary, ShadowTally
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.integrations.base import LegacyProcess
from leadflow.integrations.file_source import FileContents, count_records
from leadflow.integrations.legacy_spec import build_legacy
from leadflow.integrations.recorders import Journal, shadowed
from leadflow.logging import get_logger
from leadflow.models import Decision, Lead, StepTiming
from leadflow.schema import prepare_schema
from leadflow.shadow_settings import ShadowSettings
from leadflow.shadow_store import ComparisonRecord, ComparisonStore

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

# Chunks of a backlog decided at once: one chunk's look-up overlaps the other's
# assignment transaction, which the database serialises anyway.
CHUNKS_IN_FLIGHT = 2


@dataclass
class Side:
    """One side's answer for one lead."""

    decision: Decision | None
    steps: list[StepTiming]
    error: str | None
    ms: float


async def _guarded(work, limit_s: float) -> Side:
    """Run one side; whatever it raises, or a timeout, becomes its recorded error."""
    began = time.perf_counter()
    try:
        answer = await asyncio.wait_for(work(), limit_s)
    except Exception as exc:
        answer = exc
    return _side(answer, (time.perf_counter() - began) * 1000, limit_s)


def _side(answer: Decided | BaseException, ms: float, limit_s: float) -> Side:
    if isinstance(answer, TimeoutError):
        return Side(None, [], f"TimeoutError: no answer within {limit_s:g} s", ms)
    if isinstance(answer, BaseException):
        return Side(None, [], f"{type(answer).__name__}: {answer}", ms)
    decision, steps = answer
    return Side(decision, steps, None, ms)


@dataclass
class ShadowContext:
    """What every lead of one shadow run shares."""

    run_id: str
    spec: str
    legacy: LegacyProcess
    runtime: Runtime  # leadflow with recorders in place of side effects
    journal: Journal
    settings: ShadowSettings
    # leadflow's steps for each lead without task runs (`decide_one`): a backlog that
    # is routed lead by lead, in shadow mode, as the cut-over code does
    in_process: bool = False

    @property
    def rep_teams(self) -> dict[str, list[str]]:
        teams: dict[str, list[str]] = {}
        for name, team in self.runtime.rules.assignment.teams.items():
            for rep in team.reps:
                teams.setdefault(rep.id, []).append(name)
        return teams

    def record(
        self, lead: Lead, raw: dict[str, Any], control: Side, candidate: Side, **extra: Any
    ) -> ComparisonRecord:
        """The stored comparison of two sides' answers for one lead; with `intended`
        (leadflow's recorded side effects), the effects are compared too."""
        return ComparisonRecord(
            run_id=self.run_id,
            legacy=self.spec,
            lead_id=lead.id,
            email=lead.email,
            comparison=self.compare(control.decision, candidate.decision, extra.get("intended")),
            control=control.decision,
            candidate=candidate.decision,
            control_error=control.error,
            candidate_error=candidate.error,
            control_ms=control.ms,
            candidate_ms=candidate.ms,
            control_steps=control.steps,
            candidate_steps=candidate.steps,
            record=raw,
            **extra,
        )

    def compare(
        self,
        control: Decision | None,
        candidate: Decision | None,
        intended: dict[str, Any] | None = None,
    ):
        return compare(
            control,
            candidate,
            rules=self.settings.compare,
            provides=self.legacy.provides,
            rep_teams=self.rep_teams,
            intended=intended,
        )


async def shadow_one(
    lead: Lead, raw: dict[str, Any], context: ShadowContext, *, baseline: bool = False
) -> list[ComparisonRecord]:
    """Both sides for one lead, at once; the comparison (and, for a baseline lead, the
    control against itself)."""
    timeout = context.settings.timeout_seconds

    async def candidate():
        if context.in_process:
            return await decide_one(lead, context.runtime)
        outcome = await run_pipeline(lead, context.runtime, [])
        return outcome.decision, outcome.steps

    control, ours = await asyncio.gather(
        _guarded(lambda: context.legacy.decide_with_steps(raw), timeout),
        _guarded(candidate, timeout),
    )
    records = [context.record(lead, raw, control, ours, intended=context.journal.of(lead.id))]
    if baseline:
        again = await _guarded(lambda: context.legacy.decide_with_steps(raw), timeout)
        records.append(context.record(lead, raw, control, again, kind="baseline"))
    return records


async def shadow_chunk(
    leads: Sequence[Lead],
    raw: dict[str, dict[str, Any]],
    context: ShadowContext,
    calls: asyncio.Semaphore,
    baseline: set[str],
) -> list[ComparisonRecord]:
    """Both sides for a chunk of a backlog, at once: leadflow decides the whole chunk
    in bulk (flows/shadow_backlog.py) while the current process decides its leads one
    by one, at most `calls` at a time. A lead of the chunk waits for all of it, so
    leadflow's time for each lead is the chunk's. The leads in `baseline` are decided a
    second time by the current process."""
    timeout = context.settings.timeout_seconds

    async def control(lead: Lead) -> Side:
        async with calls:
            return await _guarded(lambda: context.legacy.decide_with_steps(raw[lead.id]), timeout)

    async def candidates() -> list[Side]:
        began = time.perf_counter()
        try:
            answers = await asyncio.wait_for(decide_chunk(leads, context.runtime), timeout)
        except Exception as exc:
            answers = [exc] * len(leads)
        ms = (time.perf_counter() - began) * 1000
        return [_side(answer, ms, timeout) for answer in answers]

    controls, ours = await asyncio.gather(
        asyncio.gather(*(control(lead) for lead in leads)), candidates()
    )
    twice = [lead for lead in leads if lead.id in baseline]
    seconds = await asyncio.gather(*(control(lead) for lead in twice))
    again = {lead.id: side for lead, side in zip(twice, seconds, strict=True)}
    records: list[ComparisonRecord] = []
    for lead, control_side, candidate_side in zip(leads, controls, ours, strict=True):
        intended = context.journal.of(lead.id)
        records.append(
            context.record(lead, raw[lead.id], control_side, candidate_side, intended=intended)
        )
        if lead.id in again:
            records.append(
                context.record(lead, raw[lead.id], control_side, again[lead.id], kind="baseline")
            )
    return records


def shadow_context(live: Runtime, spec: str, settings: ShadowSettings) -> ShadowContext:
    """What the leads of one run compared with the current process `spec` share."""
    run_id = _run_id()
    journal = Journal()
    return ShadowContext(
        run_id=run_id,
        spec=spec,
        legacy=build_legacy(spec, live.settings, settings),
        runtime=shadow_runtime(live, journal, run_id, settings),
        journal=journal,
        settings=settings,
    )


def shadow_runtime(live: Runtime, journal: Journal, run_id: str, settings: ShadowSettings):
    """leadflow as configured, with recorders for side effects and its own rotation."""
    return dataclasses.replace(
        live,
        adapters=shadowed(live.adapters, journal, run_id, look_up=settings.look_up),
        assigner=Assigner(live.rules.assignment, settings.database_url),
        # Nothing is done for real in a shadow run: its record of done leads is the
        # shadow database's, never the live one that reruns skip by.
        done=DoneLeads(settings.database_url, f"shadow:{run_id}"),
    )


def _run_id() -> str:
    return str(flow_run.id or f"local-{time.time_ns()}")


@flow(name="shadow-file")
async def shadow_file(
    path: LeadFile, legacy: str, concurrency: int | None = None, batch: bool | None = None
) -> ShadowRunSummary:
    """Run leadflow beside the current process (`legacy`, a spec such as
    `python:examples.legacy.process:decide`) over every lead in a file, with no side
    effects, and store each lead's comparison. Bad records are listed, not quarantined.
    A backlog is streamed and shadowed in chunks: with `batch`, or by default above
    the batch threshold, as `leadflow run` chooses micro-batches."""
    live = current_runtime()
    settings = ShadowSettings()
    started = time.perf_counter()
    await tag_run("shadow")
    file = Path(path)
    tally = ShadowTally(str(path), legacy)
    if batch is None:
        batch = count_records(file) > live.settings.pipeline.batch_threshold
    if batch:
        await _shadow_backlog(live, settings, legacy, file, tally, concurrency)
    else:
        contents = read_contents(file, live)
        intake = split_records(contents)
        raw = {lead.id: record for lead, record in _with_records(contents, intake.leads)}
        tally.set_aside(sorted(intake.bad, key=lambda rejection: rejection.position))
        tally.merged(intake.merged)
        tally.add(await _shadow_leads(live, settings, legacy, intake.leads, raw, concurrency))
    summary = tally.final()
    summary.wall_seconds = round(time.perf_counter() - started, 3)
    await acreate_markdown_artifact(
        key="shadow-run-summary", markdown=summary.as_markdown(), description=str(path)
    )
    log.info("shadow run done", file=str(path), compared=summary.compared, **summary.outcomes)
    return summary


@flow(name="shadow-lead")
async def shadow_lead(record: dict[str, Any], legacy: str) -> ComparisonRecord | None:
    """One record through both sides (polled or webhook leads); None if it is bad."""
    live = current_runtime()
    checked = validate_record(RawRecord(origin="api", data=record))
    if isinstance(checked, Rejection):
        log.warning("lead not compared", reason=checked.reason)
        return None
    results = await _shadow_leads(live, ShadowSettings(), legacy, [checked], {checked.id: record})
    return results[0]


async def _shadow_leads(
    live: Runtime,
    settings: ShadowSettings,
    spec: str,
    leads: list[Lead],
    raw: dict[str, dict[str, Any]],
    concurrency: int | None = None,
) -> list[ComparisonRecord]:
    """Leads one at a time, at most `concurrency` at once, each through `shadow_one`."""
    context = shadow_context(live, spec, settings)
    await _warm_up(settings)
    listener = _listener.get()
    if listener:
        listener.started(len(leads))
    limit = asyncio.Semaphore(concurrency or live.settings.pipeline.concurrency)
    baseline = {lead.id for lead in leads[: settings.baseline_sample]}

    async def one(lead: Lead) -> list[ComparisonRecord]:
        async with limit:
            records = await shadow_one(lead, raw[lead.id], context, baseline=lead.id in baseline)
        return _finished(listener, records)

    try:
        with use_runtime(context.runtime), in_mode("shadow"):
            nested = await asyncio.gather(*(one(lead) for lead in leads))
    finally:
        await context.legacy.aclose()
    results = [record for records in nested for record in records]
    await ComparisonStore(settings.database_url).add_many(results)
    return results


async def _shadow_backlog(
    live: Runtime,
    settings: ShadowSettings,
    spec: str,
    path: Path,
    tally: ShadowTally,
    concurrency: int | None = None,
) -> None:
    """A backlog, streamed as `leadflow run` streams one (`StreamedIntake`) and
    shadowed a chunk of `batch_size` leads at a time (`shadow_chunk`). Each chunk's
    comparisons are stored and counted when it ends, then let go, so memory stays
    flat however long the file is."""
    pipeline = live.settings.pipeline
    context = shadow_context(live, spec, settings)
    await _warm_up(settings)
    store = ComparisonStore(settings.database_url)
    intake = StreamedIntake(await asyncio.to_thread(open_contents, path, live))
    listener = _listener.get()
    total = await asyncio.to_thread(intake.count)
    if listener:
        listener.started(total)
    calls = asyncio.Semaphore(concurrency or pipeline.concurrency)
    slots = asyncio.Semaphore(CHUNKS_IN_FLIGHT)
    baseline_left = settings.baseline_sample

    async def chunk(piece: Piece, baseline: set[str]) -> None:
        try:
            records = await shadow_chunk(piece.leads, piece.rows, context, calls, baseline)
            await store.add_many(records)
            tally.add(records)
            context.journal.forget(lead.id for lead in piece.leads)
            _finished(listener, records)
        finally:
            slots.release()

    pieces = intake.pieces(pipeline.batch_size)
    try:
        with use_runtime(context.runtime), in_mode("shadow"):
            async with asyncio.TaskGroup() as chunks:
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    tally.set_aside(piece.bad)
                    tally.merged(piece.merged)
                    if not piece.leads:
                        continue
                    baseline = {lead.id for lead in piece.leads[: max(baseline_left, 0)]}
                    baseline_left -= len(baseline)
                    await slots.acquire()
                    chunks.create_task(chunk(piece, baseline))
    finally:
        await context.legacy.aclose()


def _finished(listener, records: list[ComparisonRecord]) -> list[ComparisonRecord]:
    """Tell the progress listener, if any, about each lead compared."""
    if listener:
        for record in records:
            if record.kind == "shadow":
                listener.finished(record.lead_id, record.outcome.value != "error")
    return records


def _with_records(contents: FileContents, leads: list[Lead]):
    """Each valid lead with the record it came from (the control gets the record, as
    the current process would)."""
    by_id = {}
    for record in contents.records:
        checked = validate_record(record)
        if isinstance(checked, Lead) and checked.id not in by_id:
            by_id[checked.id] = record.data
    return [(lead, by_id[lead.id]) for lead in leads]


async def _warm_up(settings: ShadowSettings) -> None:
    """Prepare the shadow database's schema before the first leads start, so the first
    few leads' timings (and timeouts) are not spent on it."""
    await prepare_schema(settings.database_url)
