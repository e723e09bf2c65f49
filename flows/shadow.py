"""Shadow mode: leadflow beside the current process, on the same leads, with no effect.

For each group of leads, the current process (the control) decides each lead while
leadflow (the candidate) runs the group through the one engine (flows/engine.py)
with every side-effecting adapter replaced by a recorder (integrations/recorders.py):
nothing reaches the CRM, the notifier or the event sink, and leadflow's round robin,
decisions and once-only claims live in the shadow database, apart from the live
ones, the decisions and claims under a scope of the run's and the group's own: each
group is decided afresh, so a lead that comes again in the same run (a webhook sent
twice) is compared again rather than answered as done. Either side may raise or
hang: that is recorded for the lead (with the timeout
`LEADFLOW_SHADOW__TIMEOUT_SECONDS`) and never reaches the other side. Both durations
are measured (a lead of a group takes its group's time on leadflow's side). Each
lead's comparison goes to the comparison store; in `shadow_file` and `shadow_lead`
the first `LEADFLOW_SHADOW__BASELINE_SAMPLE` leads are also decided a second time by
the control, to measure its own noise.

`shadow_file` streams a file as `process_file` does and shadows it a group at a time,
storing and counting each group's comparisons as it ends (memory stays flat);
`shadow_lead` does one record. In shadow and pilot *modes* every way in routes its
leads through `flows/cutover.py`, which uses `compare_group` and `ShadowContext`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run

from leadflow.assignment import Assigner
from leadflow.compare import compare
from leadflow.failed_effects import FailedEffects
from leadflow.flows.context import current_runtime, use_runtime
from leadflow.flows.engine import Group, run_group
from leadflow.flows.files import LeadFile, open_intake
from leadflow.flows.mode import in_mode, tag_run
from leadflow.flows.shadow_summary import ShadowRunSummary, ShadowTally
from leadflow.flows.summary import EngineResult, FailedBranch, LeadResult, progress
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.integrations.base import LegacyProcess
from leadflow.integrations.legacy_spec import build_legacy
from leadflow.integrations.recorders import Journal, shadowed
from leadflow.integrations.wiring import Adapters
from leadflow.logging import get_logger
from leadflow.models import Decision, Lead, LeadOutcome, StepTiming
from leadflow.once import OnceStore
from leadflow.schema import prepare_schema
from leadflow.shadow_settings import ShadowSettings
from leadflow.shadow_store import ComparisonRecord, ComparisonStore
from leadflow.stores.decisions import DecisionStore
from leadflow.stores.inbox import Inbox

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

T = TypeVar("T")

log = get_logger(__name__)

# Groups of a file compared at once: one group's look-ups and the current process's
# calls overlap the other's assignment transaction, which the database serialises.
GROUPS_IN_FLIGHT = 2


@dataclass
class Side:
    """One side's answer for one lead."""

    decision: Decision | None
    steps: list[StepTiming]
    error: str | None
    ms: float


async def guarded(work: Callable[[], Awaitable[T]], limit_s: float) -> tuple[T | Exception, float]:
    """Run one side: its answer, or whatever it raised (a timeout included), and how
    long it took in ms."""
    began = time.perf_counter()
    answer: T | Exception
    try:
        answer = await asyncio.wait_for(work(), limit_s)
    except Exception as exc:
        answer = exc
    return answer, (time.perf_counter() - began) * 1000


def side_of(answer: Any, ms: float, limit_s: float) -> Side:
    """A side from what it answered: (decision, steps), a lead result, or an error."""
    if isinstance(answer, TimeoutError):
        return Side(None, [], f"TimeoutError: no answer within {limit_s:g} s", ms)
    if isinstance(answer, BaseException):
        return Side(None, [], f"{type(answer).__name__}: {answer}", ms)
    if isinstance(answer, FailedBranch):
        return Side(None, [], answer.reason, ms)
    if isinstance(answer, LeadOutcome):
        error = "; ".join(f"{b}: {why}" for b, why in answer.failed_branches.items()) or None
        return Side(answer.decision, answer.steps, error, ms)
    decision, steps = answer
    return Side(decision, steps, None, ms)


@dataclass
class ShadowContext:
    """What every lead of one shadow (or pilot) run shares."""

    run_id: str
    spec: str
    legacy: LegacyProcess
    runtime: Runtime  # leadflow with recorders in place of side effects
    journal: Journal
    settings: ShadowSettings
    live_adapters: Adapters  # what the recorders stand in for (the CRM's reads pass)
    calls: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))
    baseline_left: int = 0

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
            comparison=compare(
                control.decision,
                candidate.decision,
                rules=self.settings.compare,
                provides=self.legacy.provides,
                rep_teams=self.rep_teams,
                intended=extra.get("intended"),
            ),
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

    async def controls(
        self, leads: Sequence[Lead], raw: dict[str, dict[str, Any]]
    ) -> dict[str, Side]:
        """The current process's decision for each lead, at most `calls` at a time."""
        limit = self.settings.timeout_seconds

        async def one(lead: Lead) -> Side:
            async with self.calls:
                answer, ms = await guarded(
                    lambda: self.legacy.decide_with_steps(raw[lead.id]), limit
                )
            return side_of(answer, ms, limit)

        sides = await asyncio.gather(*(one(lead) for lead in leads))
        return {lead.id: side for lead, side in zip(leads, sides, strict=True)}

    def for_group(self) -> Runtime:
        """The shadow runtime for one group: recorders and decisions under a scope of
        the group's own (see the module docstring)."""
        scope = f"{self.run_id}/{uuid.uuid4().hex[:12]}"
        adapters = shadowed(self.live_adapters, self.journal, scope, look_up=self.settings.look_up)
        decisions = DecisionStore(self.settings.database_url, f"shadow:{scope}")
        return dataclasses.replace(self.runtime, adapters=adapters, decisions=decisions)

    def take_baseline(self, leads: Sequence[Lead]) -> list[Lead]:
        """The leads of this group decided a second time by the control (the first
        `baseline_sample` of the run)."""
        chosen = list(leads[: max(self.baseline_left, 0)])
        self.baseline_left -= len(chosen)
        return chosen

    async def aclose(self) -> None:
        await self.legacy.aclose()


async def candidates(
    leads: Sequence[Lead], runtime: Runtime, limit_s: float
) -> tuple[dict[str, EngineResult | Exception], float]:
    """leadflow's answer for each lead of a group through the engine with `runtime`,
    within `limit_s`: its result, or the error that stopped the whole group."""
    with use_runtime(runtime):
        answer, ms = await guarded(lambda: run_group(Group(leads), runtime), limit_s)
    if isinstance(answer, BaseException):
        return dict.fromkeys((lead.id for lead in leads), answer), ms
    return {result.lead_id: result for result in answer}, ms


async def compare_group(
    leads: Sequence[Lead], raw: dict[str, dict[str, Any]], context: ShadowContext
) -> list[ComparisonRecord]:
    """Both sides for a group of leads, at once: the current process decides each
    lead, leadflow runs the group through the engine with recorders. Returns each
    lead's comparison (and a baseline one for the run's first leads)."""
    limit = context.settings.timeout_seconds
    with in_mode("shadow"):
        controls, (answers, ms) = await asyncio.gather(
            context.controls(leads, raw), candidates(leads, context.for_group(), limit)
        )
    twice = context.take_baseline(leads)
    again = await context.controls(twice, raw) if twice else {}
    records: list[ComparisonRecord] = []
    for lead in leads:
        ours = side_of(answers[lead.id], ms, limit)
        control = controls[lead.id]
        intended = context.journal.of(lead.id)
        records.append(context.record(lead, raw[lead.id], control, ours, intended=intended))
        if lead.id in again:
            records.append(
                context.record(lead, raw[lead.id], control, again[lead.id], kind="baseline")
            )
    context.journal.forget(lead.id for lead in leads)
    return records


def shadow_context(
    live: Runtime, spec: str, settings: ShadowSettings, *, baseline: bool = True
) -> ShadowContext:
    """What the leads of one run compared with the current process `spec` share.
    `baseline`: the run's first leads are decided twice by the current process (not
    for leads routed by the mode: each group would ask it twice again)."""
    run_id = str(flow_run.id or f"local-{time.time_ns()}")
    journal = Journal()
    return ShadowContext(
        run_id=run_id,
        spec=spec,
        legacy=build_legacy(spec, live.settings, settings),
        runtime=shadow_runtime(live, journal, run_id, settings),
        journal=journal,
        settings=settings,
        live_adapters=live.adapters,
        calls=asyncio.Semaphore(live.settings.pipeline.concurrency),
        baseline_left=settings.baseline_sample if baseline else 0,
    )


def shadow_runtime(
    live: Runtime, journal: Journal, run_id: str, settings: ShadowSettings
) -> Runtime:
    """leadflow as configured, with recorders for side effects, and every store in the
    shadow database under this run's scope: nothing done in a shadow run is ever taken
    for something done for real. Its settings name the shadow database too: the
    engine stores a decision and claims its side effects in one transaction on the
    runtime's database (the adapters were built already: the CRM's reads still reach
    the live one)."""
    url = settings.database_url
    lease = timedelta(seconds=live.settings.pipeline.claim_lease_seconds)
    return dataclasses.replace(
        live,
        settings=live.settings.model_copy(update={"database_url": url}),
        adapters=shadowed(live.adapters, journal, run_id, look_up=settings.look_up),
        assigner=Assigner(live.rules.assignment, url),
        decisions=DecisionStore(url, f"shadow:{run_id}"),
        once=OnceStore(url, lease=lease),
        failed_effects=FailedEffects(url),
        inbox=Inbox(url, lease=lease),
    )


_prepared: set[str] = set()


async def warm_up(settings: ShadowSettings) -> None:
    """Prepare the shadow database's schema before the first leads start, so the first
    leads' timings (and timeouts) are not spent on it; once per database and process
    (the mode routes each group here, and preparing takes the write lock)."""
    if settings.database_url not in _prepared:
        await prepare_schema(settings.database_url)
        _prepared.add(settings.database_url)


@flow(name="shadow-file")
async def shadow_file(
    path: LeadFile, legacy: str, batch_size: int | None = None, concurrency: int | None = None
) -> ShadowRunSummary:
    """Run leadflow beside the current process (`legacy`, a spec such as
    `python:examples.legacy.process:decide`) over every lead in a file, with no side
    effects, and store each lead's comparison. Bad records are listed, not quarantined.
    The file is streamed and shadowed `batch_size` leads at a time, as `leadflow run`
    processes it; `concurrency` bounds the current process's calls at once."""
    live = current_runtime()
    settings = ShadowSettings()
    started = time.perf_counter()
    await tag_run("shadow")
    tally = ShadowTally(str(path), legacy)
    context = shadow_context(live, legacy, settings)
    if concurrency:
        context.calls = asyncio.Semaphore(concurrency)
    await warm_up(settings)
    store = ComparisonStore(settings.database_url)
    intake = await asyncio.to_thread(open_intake, Path(path), live)
    listener = progress()
    total = await asyncio.to_thread(intake.count)
    if listener:
        listener.started(total)
    pieces = intake.pieces(batch_size or live.settings.pipeline.batch_size)
    slots = asyncio.Semaphore(GROUPS_IN_FLIGHT)

    async def one(piece) -> None:
        try:
            records = await compare_group(piece.leads, piece.rows, context)
            await store.add_many(records)
            tally.add(records)
            _finished(listener, records)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as groups:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                tally.set_aside(piece.bad)
                tally.merged(piece.merged)
                if piece.leads:
                    await slots.acquire()
                    groups.create_task(one(piece))
    finally:
        await context.aclose()
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
    settings = ShadowSettings()
    context = shadow_context(live, legacy, settings)
    await warm_up(settings)
    try:
        (result, *_baseline) = await compare_group([checked], {checked.id: record}, context)
    finally:
        await context.aclose()
    await ComparisonStore(settings.database_url).add_many([result, *_baseline])
    return result


def _finished(listener, records: list[ComparisonRecord]) -> None:
    """Tell the progress listener, if any, about each lead compared."""
    if listener:
        for record in records:
            if record.kind == "shadow":
                listener.finished(record.lead_id, record.outcome.value != "error")


def shadow_results(records: list[ComparisonRecord]) -> list[LeadResult]:
    """What a run that routes leads (flows/cutover.py) reports for shadowed leads: the
    current process has them."""
    from leadflow.flows.summary import LeftToCurrentProcess

    return [
        LeftToCurrentProcess(lead_id=r.lead_id, mode="shadow", route="shadow", email=r.email or "")
        for r in records
        if r.kind == "shadow"
    ]
