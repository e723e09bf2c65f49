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
run` switches to micro-batches) is shadowed in chunks of `LEADFLOW_PIPELINE__BATCH_SIZE`
leads: leadflow decides each chunk in bulk, without task runs, as the micro-batch path
does (flows/shadow_backlog.py), while the current process decides the chunk's leads one
by one. Five task runs per lead would make a shadow run of a backlog many times slower
than the run it is meant to judge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from leadflow.assignment import Assigner
from leadflow.compare import EFFECT_FIELDS, compare
from leadflow.done import DoneLeads
from leadflow.flows.context import current_runtime, use_runtime
from leadflow.flows.files import LeadFile, SetAside, _listener, read_contents, split_records
from leadflow.flows.lead import run_pipeline
from leadflow.flows.mode import in_mode, tag_run
from leadflow.flows.shadow_backlog import Decided, decide_chunk
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.integrations.base import LegacyProcess
from leadflow.integrations.file_source import FileContents
from leadflow.integrations.legacy_spec import build_legacy
from leadflow.integrations.recorders import Journal, shadowed
from leadflow.logging import get_logger
from leadflow.markdown import escape, table
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
    again = dict(
        zip(
            (lead.id for lead in twice),
            await asyncio.gather(*(control(lead) for lead in twice)),
            strict=True,
        )
    )
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


class ShadowRunSummary(BaseModel):
    """What `leadflow shadow` prints and the `shadow-run-summary` artifact shows."""

    file: str
    legacy: str
    records: int
    compared: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    agreement: dict[str, float] = Field(default_factory=dict)
    mismatched_fields: dict[str, int] = Field(default_factory=dict)
    control_errors: list[str] = Field(default_factory=list)
    candidate_errors: list[str] = Field(default_factory=list)
    set_aside: list[SetAside] = Field(default_factory=list)
    baseline: int = 0
    wall_seconds: float = 0.0

    def as_markdown(self) -> str:
        """Lead text (file name, errors) goes through `leadflow.markdown`: text, never markup."""
        lines = [
            f"# Shadow run over {escape(self.file)} against {escape(self.legacy)}",
            "",
            f"{self.compared} leads compared in {self.wall_seconds:.1f} s; "
            f"{len(self.set_aside)} records set aside; nothing was sent or written.",
            "",
            table(("outcome", "leads"), sorted(self.outcomes.items())),
            "",
            table(
                ("field", "agreement", "mismatches"),
                [
                    (f, f"{a:.1%}", self.mismatched_fields.get(f, 0))
                    for f, a in self.agreement.items()
                ],
            ),
        ]
        for side, errors in (
            ("current process", self.control_errors),
            ("leadflow", self.candidate_errors),
        ):
            if errors:
                lines += ["", f"Errors on the {side}'s side:", *(f"- {escape(e)}" for e in errors)]
        return "\n".join(lines)


def summarise_shadow(
    file: str, spec: str, records: int, results: list[ComparisonRecord], rejected: list[Rejection]
) -> ShadowRunSummary:
    shadow = [r for r in results if r.kind == "shadow"]
    outcomes = Counter(r.outcome.value for r in shadow)
    agreement: dict[str, float] = {}
    mismatched: Counter[str] = Counter()
    effects = [e for e in EFFECT_FIELDS if any(e in r.comparison.effects for r in shadow)]
    for field in (*Decision.COMPARED_FIELDS, *effects):
        judged = [
            {**r.comparison.fields, **r.comparison.effects}[field].outcome.value
            for r in shadow
            if field in r.comparison.fields or field in r.comparison.effects
        ]
        counted = [o for o in judged if o in ("matched", "mismatched")]
        mismatched[field] = counted.count("mismatched")
        if counted:
            agreement[field] = counted.count("matched") / len(counted)
    return ShadowRunSummary(
        file=file,
        legacy=spec,
        records=records,
        compared=len(shadow),
        outcomes=dict(outcomes),
        agreement=agreement,
        mismatched_fields={k: v for k, v in mismatched.items() if v},
        control_errors=[f"{r.lead_id}: {r.control_error}" for r in shadow if r.control_error],
        candidate_errors=[f"{r.lead_id}: {r.candidate_error}" for r in shadow if r.candidate_error],
        set_aside=[SetAside.of(rejection) for rejection in rejected],
        baseline=sum(r.kind == "baseline" for r in results),
    )


def _run_id() -> str:
    return str(flow_run.id or f"local-{time.time_ns()}")


@flow(name="shadow-file")
async def shadow_file(
    path: LeadFile, legacy: str, concurrency: int | None = None
) -> ShadowRunSummary:
    """Run leadflow beside the current process (`legacy`, a spec such as
    `python:examples.legacy.process:decide`) over every lead in a file, with no side
    effects, and store each lead's comparison. Bad records are listed, not quarantined."""
    live = current_runtime()
    settings = ShadowSettings()
    started = time.perf_counter()
    await tag_run("shadow")
    contents = read_contents(Path(path), live)
    intake = split_records(contents)
    leads, bad, merged = intake.leads, intake.bad, intake.merged
    raw = {lead.id: record for lead, record in _with_records(contents, leads)}
    rejected = sorted(bad, key=lambda rejection: rejection.position)
    results = await _shadow_leads(live, settings, legacy, leads, raw, concurrency)
    records = len(leads) + len(rejected) + len(merged)
    summary = summarise_shadow(str(path), legacy, records, results, rejected)
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
    context = shadow_context(live, spec, settings)
    pipeline = live.settings.pipeline
    await _warm_up(settings)
    listener = _listener.get()
    if listener:
        listener.started(len(leads))
    limit = asyncio.Semaphore(concurrency or pipeline.concurrency)
    baseline = {lead.id for lead in leads[: settings.baseline_sample]}

    def finished(records: list[ComparisonRecord]) -> list[ComparisonRecord]:
        if listener:
            for record in records:
                if record.kind == "shadow":
                    listener.finished(record.lead_id, record.outcome.value != "error")
        return records

    async def one(lead: Lead) -> list[ComparisonRecord]:
        async with limit:
            records = await shadow_one(lead, raw[lead.id], context, baseline=lead.id in baseline)
        return finished(records)

    chunks_in_flight = asyncio.Semaphore(CHUNKS_IN_FLIGHT)

    async def chunk(part: Sequence[Lead]) -> list[ComparisonRecord]:
        async with chunks_in_flight:
            return finished(await shadow_chunk(part, raw, context, limit, baseline))

    try:
        with use_runtime(context.runtime), in_mode("shadow"):
            if len(leads) > pipeline.batch_threshold:
                size = pipeline.batch_size
                parts = [leads[i : i + size] for i in range(0, len(leads), size)]
                nested = await asyncio.gather(*(chunk(part) for part in parts))
            else:
                nested = await asyncio.gather(*(one(lead) for lead in leads))
    finally:
        await context.legacy.aclose()
    results = [record for records in nested for record in records]
    await ComparisonStore(settings.database_url).add_many(results)
    return results


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
