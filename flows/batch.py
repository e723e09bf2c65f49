"""`process_file_batched`: a backlog at bulk-API speed, in micro-batches.

The per-lead path (`process_file`) costs five task runs per lead, and at volume the
orchestration, not the vendors, is the bound. Here each step is one task over a
batch of leads (`LEADFLOW_PIPELINE__BATCH_SIZE`, 100 by default) and each adapter is
called through its bulk method:

    file --stream, validate--> look up --> decide --> fan out: CRM | notify | log --> summary
         (bad records to the   (N+2)       (N+1)      (N)
          quarantine as read)

- The file is streamed (`leadflow.flows.batch_intake`): encoding, delimiter and
  columns found as the per-lead path finds them, rows with the same email merged
  into one lead, but read twice a row at a time instead of held: the leads are in
  memory only a batch at a time, and finished batches are dropped once counted (the
  summary aggregates as it goes).
- Batches are pipelined, one stage per step: batch N+2 is looked up while N+1 is
  decided and N fans out; each stage takes batches in file order.
- A failing lead fails alone: when a bulk call fails for a reason retrying will not
  fix, the batch falls back to one call per lead and only the lead that fails is
  reported; transient errors retry the batch task (Prefect retries, as per lead).
- Once only: each side effect is claimed by its once-only key (`leadflow.flows.lead.once_key`:
  notify and event per person, CRM per lead and data version) in leadflow's database
  before the vendor is called and marked done after (leadflow/once.py), so a retried
  task or a rerun of the file repeats nothing that finished; the adapters get the same
  key and enforce it themselves too. Leads whose every side effect succeeded go to
  `runtime.done` (leadflow/done.py), and a rerun answers those from there without
  calling anything.
- Task parameters are a plain `Batch` object, which Prefect neither walks nor
  hashes, and no result is persisted: a task run costs the same for 1 or 1,000 leads.
  The tasks write into the batch and return None: Prefect keeps, for the whole flow
  run, a state per object a task returns (and per item of a returned collection),
  which grew memory with every batch.
- An interrupted run stops reading and gives the batches it already took
  `LEADFLOW_PIPELINE__DRAIN_SECONDS` to finish before cancelling them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from leadflow.decide import decide, decide_many
from leadflow.done import DoneLead
from leadflow.flows.batch_intake import StreamedIntake
from leadflow.flows.context import current_runtime
from leadflow.flows.files import (
    FailedBranch,
    FileRunSummary,
    LeadFile,
    LeadsFailedError,
    Merged,
    SetAside,
    _listener,
    open_contents,
)
from leadflow.flows.lead import once_key, record_failures
from leadflow.flows.mode import mode_now, start_run
from leadflow.flows.retries import retry_options
from leadflow.intake import Rejection
from leadflow.integrations.base import Adapter, LeadEvent
from leadflow.integrations.errors import TransientError
from leadflow.logging import get_logger
from leadflow.models import CrmMatch, Decision, Lead
from leadflow.once import OnceStore
from leadflow.settings import PipelineSettings

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

# Items kept in the summary's lists; the quarantine and the log hold every one.
SUMMARY_LIST_LIMIT = 1000

OK, SKIPPED = "ok", "skipped"


class Batch:
    """The leads of one micro-batch and what has been decided about them.

    A plain class on purpose: Prefect walks dataclasses and pydantic models in task
    parameters (to find upstream futures) but passes other objects as they are."""

    __slots__ = ("decisions", "failed", "leads", "matches", "number", "outcomes")

    def __init__(self, number: int, leads: list[Lead]) -> None:
        self.number = number
        self.leads = leads
        self.matches: list[CrmMatch | None] = [None] * len(leads)
        self.decisions: dict[str, Decision] = {}
        self.failed: dict[str, FailedBranch] = {}  # lead id -> why the pipeline stopped
        self.outcomes: dict[str, dict[str, str]] = {}  # branch -> lead id -> ok/skipped/error

    def live(self) -> list[Lead]:
        """Leads that have not failed so far."""
        return [lead for lead in self.leads if lead.id not in self.failed]

    def fail(self, lead_id: str, branch: str, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.failed[lead_id] = FailedBranch(lead_id=lead_id, branch=branch, reason=reason)

    def __repr__(self) -> str:  # what Prefect shows for the parameter
        return f"Batch(number={self.number}, leads={len(self.leads)})"


class BatchRunSummary(FileRunSummary):
    """`FileRunSummary` for the batch path: the lists keep the first
    SUMMARY_LIST_LIMIT items, the totals count all."""

    batches: int = 0
    batch_size: int = 0
    set_aside_total: int = 0
    failed_total: int = 0
    leads_per_second: float = 0.0
    truncated: bool = Field(default=False, description="lists hold only the first items")


# --- helpers -------------------------------------------------------------------------


async def _each_or_all(
    batch: Batch,
    branch: str,
    leads: Sequence[Lead],
    bulk: Callable[[], Awaitable[list[Any] | None]],
    one: Callable[[int], Awaitable[Any]],
) -> list[Any]:
    """The bulk call; if it fails for a reason a retry will not fix, one call per
    lead, so that only the leads that fail are failed (marked in the batch).
    Transient errors propagate: the task is retried as a whole."""
    try:
        result = await bulk()
        return list(result) if result is not None else [None] * len(leads)
    except TransientError:
        raise
    except Exception as exc:
        log.info("bulk call failed, one call per lead", branch=branch, error=str(exc))
    results = await asyncio.gather(*(one(i) for i in range(len(leads))), return_exceptions=True)
    for lead, result in zip(leads, results, strict=True):
        if isinstance(result, BaseException):
            batch.fail(lead.id, branch, result)
    return results


def _scope(adapter: Adapter) -> str:
    """Where an adapter's side effects land, as a short hash: the scope may hold a
    database URL, and URLs may hold passwords."""
    return hashlib.sha256(adapter.once_scope.encode()).hexdigest()[:12]


# --- the tasks -----------------------------------------------------------------------


@task(name="look-up-batch", cache_policy=NO_CACHE, persist_result=False)
async def look_up_batch(batch: Batch) -> None:
    """The CRM look-up for every lead of the batch, in one bulk call."""
    crm = current_runtime().adapters.crm
    leads = batch.live()
    matches = await _each_or_all(
        batch,
        "look_up",
        leads,
        lambda: crm.look_up_many(leads),
        lambda i: crm.look_up(leads[i]),
    )
    by_id = {lead.id: match for lead, match in zip(leads, matches, strict=True)}
    batch.matches = [by_id.get(lead.id) for lead in batch.leads]


@task(name="decide-batch", cache_policy=NO_CACHE, persist_result=False)
async def decide_batch(batch: Batch) -> None:
    """Score, follow-up and assignment for the batch: one bulk scoring call and one
    assignment transaction."""
    runtime = current_runtime()
    pairs = [(lead, m) for lead, m in zip(batch.leads, batch.matches, strict=True)]
    pairs = [(lead, m) for lead, m in pairs if lead.id not in batch.failed]
    leads = [lead for lead, _ in pairs]
    matches = [m for _, m in pairs]
    options = {"rules": runtime.rules, "scorer": runtime.adapters.scorer}

    async def one(i: int) -> Decision:
        decision, _steps = await decide(leads[i], matches[i], assigner=runtime.assigner, **options)
        return decision

    decisions = await _each_or_all(
        batch,
        "decide",
        leads,
        lambda: decide_many(leads, matches, assigner=runtime.assigner, **options),
        one,
    )
    for lead, decision in zip(leads, decisions, strict=True):
        if isinstance(decision, Decision):
            batch.decisions[lead.id] = decision


async def _side_effect(
    batch: Batch,
    branch: str,
    effect: str,
    adapter: Adapter,
    bulk: Callable[[list[tuple[Lead, Decision, str]]], Awaitable[Any]],
    one: Callable[[tuple[Lead, Decision, str]], Awaitable[Any]],
) -> dict[str, str]:
    """Claim, call the adapter for what was claimed, mark done or failed. Returns
    each decided lead's result: ok, skipped (done before) or the error."""
    store = OnceStore(current_runtime().settings.database_url)
    scope = _scope(adapter)
    decided = [lead for lead in batch.leads if lead.id in batch.decisions]
    keys = {lead.id: once_key(effect, lead) for lead in decided}
    token, taken_keys = await store.claim(effect, scope, list(dict.fromkeys(keys.values())))
    taken = {lead_id for lead_id, key in keys.items() if key in taken_keys}
    items = [
        (lead, batch.decisions[lead.id], keys[lead.id]) for lead in decided if lead.id in taken
    ]
    results: dict[str, str] = {lead.id: SKIPPED for lead in decided if lead.id not in taken}
    failures: dict[str, str] = {}
    try:
        await bulk(items)
        results.update({lead.id: OK for lead, _d, _k in items})
    except TransientError:
        await store.finish(
            effect, scope, token, failed=dict.fromkeys(taken_keys, "transient error")
        )
        raise  # Prefect retries the task; the failed rows are claimed again
    except Exception as exc:
        log.info("bulk call failed, one call per lead", branch=branch, error=str(exc))
        each = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        for (lead, _d, _k), result in zip(items, each, strict=True):
            if isinstance(result, BaseException):
                failures[lead.id] = f"{type(result).__name__}: {result}"
            else:
                results[lead.id] = OK
    await store.finish(
        effect,
        scope,
        token,
        done=[keys[lead_id] for lead_id, status in results.items() if status == OK],
        failed={keys[lead_id]: reason for lead_id, reason in failures.items()},
    )
    results.update(failures)
    return results


@task(name="update-crm-batch", cache_policy=NO_CACHE, persist_result=False)
async def update_crm_batch(batch: Batch) -> None:
    crm = current_runtime().adapters.crm
    batch.outcomes["update_crm"] = await _side_effect(
        batch,
        "update_crm",
        "crm",
        crm,
        crm.upsert_many,
        lambda item: crm.upsert(item[0], item[1], idempotency_key=item[2]),
    )


@task(name="notify-team-batch", cache_policy=NO_CACHE, persist_result=False)
async def notify_team_batch(batch: Batch) -> None:
    notifier = current_runtime().adapters.notifier
    batch.outcomes["notify_team"] = await _side_effect(
        batch,
        "notify_team",
        "notify",
        notifier,
        notifier.notify_many,
        lambda item: notifier.notify(item[0], item[1], idempotency_key=item[2]),
    )


def _event(item: tuple[Lead, Decision, str]) -> LeadEvent:
    lead, decision, key = item
    return LeadEvent(
        event_id=key, lead_id=lead.id, occurred_at=datetime.now(UTC), decision=decision
    )


@task(name="log-event-batch", cache_policy=NO_CACHE, persist_result=False)
async def log_event_batch(batch: Batch) -> None:
    sink = current_runtime().adapters.event_sink
    batch.outcomes["log_event"] = await _side_effect(
        batch,
        "log_event",
        "event",
        sink,
        lambda items: sink.record_many([_event(item) for item in items]),
        lambda item: sink.record(_event(item)),
    )


BRANCH_TASKS = {
    "update_crm": update_crm_batch,
    "notify_team": notify_team_batch,
    "log_event": log_event_batch,
}


@functools.cache
def _configured(settings: PipelineSettings) -> dict[str, Any]:
    """The batch tasks with this configuration's retry policy (built once)."""
    options = retry_options(settings)
    tasks = {"look_up": look_up_batch, "decide": decide_batch, **BRANCH_TASKS}
    return {
        name: t.with_options(**options, task_run_name=f"{t.name}-{{batch.number}}")
        for name, t in tasks.items()
    }


# --- the stages ----------------------------------------------------------------------


class _Tally:
    """The summary, built as batches finish; holds no lead beyond its batch."""

    def __init__(self, file: str, batch_size: int) -> None:
        self.summary = BatchRunSummary(file=file, records=0, batch_size=batch_size)
        self.tiers: Counter[str] = Counter()
        self.reps: Counter[str] = Counter()
        self.listener = _listener.get()

    def set_aside(self, rejections: list[Rejection]) -> None:
        self.summary.records += len(rejections)
        self.summary.set_aside_total += len(rejections)
        room = SUMMARY_LIST_LIMIT - len(self.summary.set_aside)
        self.summary.truncated |= len(rejections) > room
        self.summary.set_aside += [SetAside.of(r) for r in rejections[: max(room, 0)]]
        for rejection in rejections:
            log.info("record set aside", where=rejection.where, reason=rejection.reason)

    def merged(self, merged: list[Merged]) -> None:
        """Rows merged into an earlier row with the same email: one lead, not set aside."""
        self.summary.records += len(merged)
        room = SUMMARY_LIST_LIMIT - len(self.summary.merged)
        self.summary.truncated |= len(merged) > room
        self.summary.merged += merged[: max(room, 0)]

    def left(self, leads: list[Lead], mode: str) -> None:
        """Leads not started when the mode left `live`: left to the current process,
        not marked done (leadflow.flows.mode)."""
        self.summary.records += len(leads)
        routes = self.summary.routes
        routes["current process"] = routes.get("current process", 0) + len(leads)
        if mode not in self.summary.modes:
            self.summary.modes.append(mode)
        for lead in leads:
            if self.listener:
                self.listener.finished(lead.id, True)

    def already_done(self, done: dict[str, DoneLead]) -> None:
        """Leads leadflow's records show done (`runtime.done`): counted, not run."""
        self.summary.records += len(done)
        self.summary.processed += len(done)
        self.summary.already_done += len(done)
        for lead_id, found in done.items():
            self.tiers[found.tier] += 1
            self.reps[found.rep] += 1
            if self.listener:
                self.listener.finished(lead_id, True)

    def batch_done(self, batch: Batch) -> list[tuple[Lead, str, str]]:
        """Count a finished batch; returns (lead, tier, rep) of the leads whose every
        side effect is done, for `runtime.done`."""
        summary = self.summary
        finished: list[tuple[Lead, str, str]] = []
        summary.batches += 1
        summary.records += len(batch.leads)
        failures = list(batch.failed.values())
        for branch, results in batch.outcomes.items():
            failures += [
                FailedBranch(lead_id=lead_id, branch=branch, reason=result)
                for lead_id, result in results.items()
                if result not in (OK, SKIPPED)
            ]
        failed_ids = {failure.lead_id for failure in failures}
        for lead in batch.leads:
            decision = batch.decisions.get(lead.id)
            if decision is not None:
                summary.processed += 1
                self.tiers[decision.tier] += 1
                self.reps[decision.rep] += 1
                if all(results.get(lead.id) == SKIPPED for results in batch.outcomes.values()):
                    summary.already_done += 1
                if lead.id not in failed_ids:
                    finished.append((lead, decision.tier, decision.rep))
            if self.listener:
                self.listener.finished(lead.id, lead.id not in failed_ids)
        summary.failed_total += len(failures)
        room = SUMMARY_LIST_LIMIT - len(summary.failed)
        summary.truncated |= len(failures) > room
        summary.failed += failures[: max(room, 0)]
        for failure in failures:
            log.warning(
                "lead failed", lead_id=failure.lead_id, branch=failure.branch, error=failure.reason
            )
        log.info(
            "batch processed",
            batch=batch.number,
            leads=len(batch.leads),
            decided=len(batch.decisions),
            failed=len(failed_ids),
        )
        return finished

    def final(self, wall_seconds: float) -> BatchRunSummary:
        self.summary.by_tier = dict(self.tiers)
        self.summary.by_rep = dict(self.reps)
        self.summary.wall_seconds = round(wall_seconds, 3)
        if self.summary.routes:
            self.summary.routes["leadflow"] = self.summary.processed
        if wall_seconds > 0:
            self.summary.leads_per_second = round(self.summary.processed / wall_seconds, 1)
        return self.summary


_DONE = object()


async def _produce(
    runtime: Runtime, path: Path, size: int, out: asyncio.Queue, tally: _Tally
) -> None:
    """Stream the file (`StreamedIntake`: encoding, delimiter and columns as the
    per-lead path finds them, one lead per email), set aside the bad records, answer
    the leads already done from `runtime.done`, and put the rest into `out` a batch
    at a time (bounded: waits while the pipeline is full). The file is read in a
    worker thread, a piece at a time."""
    with _ends(out):
        stream = await asyncio.to_thread(open_contents, path, runtime)
        tally.summary.columns = stream.report()
        log.info("file opened", file=str(path), report=tally.summary.columns)
        intake = StreamedIntake(stream)
        total = await asyncio.to_thread(intake.count)
        if tally.listener:
            tally.listener.started(total)
        pieces = intake.pieces(size)
        number = 0
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
            await runtime.quarantine.put(piece.bad)
            tally.set_aside(piece.bad)
            tally.merged(piece.merged)
            if not piece.leads:
                continue
            if (mode := await mode_now()) != "live":  # switched since the run started
                tally.left(piece.leads, mode)
                continue
            done = await runtime.done.find(piece.leads)
            tally.already_done(done)
            leads = [lead for lead in piece.leads if lead.id not in done]
            if leads:
                number += 1
                await out.put(Batch(number, leads))
        await out.put(_DONE)


@contextlib.contextmanager
def _ends(out: asyncio.Queue) -> Iterator[None]:
    """On an error or a cancellation, tell the next stage there is no more, if
    there is room (the drain's timeout covers the case where there is not)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(asyncio.QueueFull):
            out.put_nowait(_DONE)
        raise


async def _step_stage(
    tasks: dict[str, Any], step: str, inbox: asyncio.Queue, out: asyncio.Queue
) -> None:
    """One step over each batch in turn (look-up, then decide, each a stage of its
    own): while one batch is decided the next is looked up."""
    with _ends(out):
        while (batch := await inbox.get()) is not _DONE:
            if batch.live():
                await _run_step(batch, step, tasks[step])
            await out.put(batch)
        await out.put(_DONE)


async def _run_step(batch: Batch, branch: str, step) -> None:
    """Run a batch task; if it fails after its retries, every lead still in the
    batch fails with that reason (the task is Failed in the UI)."""
    state = await step(batch, return_state=True)
    if not state.is_completed():
        exc = await state.aresult(raise_on_failure=False)
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else state.message
        for lead in batch.live():
            batch.fail(lead.id, branch, reason or "failed")


async def _fan_out_stage(
    runtime: Runtime, tasks: dict[str, Any], inbox: asyncio.Queue, tally: _Tally
) -> None:
    while (batch := await inbox.get()) is not _DONE:
        if batch.decisions:
            names = list(BRANCH_TASKS)
            states = await asyncio.gather(
                *(tasks[name](batch, return_state=True) for name in names)
            )
            for name, state in zip(names, states, strict=True):
                if not state.is_completed():
                    exc = await state.aresult(raise_on_failure=False)
                    reason = f"{type(exc).__name__}: {exc}"
                    batch.outcomes[name] = dict.fromkeys(batch.decisions, reason)
            await record_failures(
                current_runtime(),
                [
                    (name, lead, batch.decisions[lead.id], result)
                    for name, results in batch.outcomes.items()
                    for lead in batch.leads
                    if (result := results.get(lead.id)) not in (None, OK, SKIPPED)
                ],
            )
        finished = tally.batch_done(batch)
        await runtime.done.add(finished)


async def run_batches(
    runtime: Runtime, path: Path, batch_size: int | None = None
) -> BatchRunSummary:
    """The pipeline over a file in micro-batches, inside the current flow run."""
    started = time.perf_counter()
    settings = runtime.settings.pipeline
    size = batch_size or settings.batch_size
    tally = _Tally(str(path), size)
    tasks = _configured(settings)
    read: asyncio.Queue = asyncio.Queue(maxsize=2)
    looked_up: asyncio.Queue = asyncio.Queue(maxsize=1)
    decided: asyncio.Queue = asyncio.Queue(maxsize=1)
    stages = [
        asyncio.create_task(_produce(runtime, path, size, read, tally)),
        asyncio.create_task(_step_stage(tasks, "look_up", read, looked_up)),
        asyncio.create_task(_step_stage(tasks, "decide", looked_up, decided)),
        asyncio.create_task(_fan_out_stage(runtime, tasks, decided, tally)),
    ]
    try:
        await asyncio.gather(*stages)
    except asyncio.CancelledError:
        await _drain(stages, settings.drain_seconds)
        raise
    except BaseException:
        for stage in stages:
            stage.cancel()
        await asyncio.gather(*stages, return_exceptions=True)
        raise
    return tally.final(time.perf_counter() - started)


async def _drain(stages: list[asyncio.Task], seconds: float) -> None:
    """Interrupted: stop reading, let the batches already taken finish for up to
    `seconds`, then cancel what is left."""
    producer, *rest = stages
    producer.cancel()
    log.warning("interrupted: finishing the batches in flight", seconds=seconds)
    _done, pending = await asyncio.wait(rest, timeout=seconds)
    for stage in pending:
        stage.cancel()
    await asyncio.gather(*stages, return_exceptions=True)


@flow(name="process-file-batched")
async def process_file_batched(path: LeadFile, batch_size: int | None = None) -> BatchRunSummary:
    """Process every lead in a CSV or JSONL file in micro-batches (the backlog path);
    bad records are set aside. Ends Failed, naming them, if any lead failed."""
    runtime = current_runtime()
    if (mode := await start_run()) != "live":  # the cut-over switch (leadflow.flows.mode)
        from leadflow.flows.cutover import file_in_mode  # it builds on the per-lead path

        return await file_in_mode(Path(path), mode)
    summary = await run_batches(runtime, Path(path), batch_size)
    await acreate_markdown_artifact(
        key="process-file-summary", markdown=summary.as_markdown(), description=str(path)
    )
    log.info(
        "file processed",
        file=str(path),
        processed=summary.processed,
        set_aside=summary.set_aside_total,
        failed=summary.failed_total,
        batches=summary.batches,
        leads_per_second=summary.leads_per_second,
    )
    if summary.failed:
        raise LeadsFailedError(summary)
    return summary
