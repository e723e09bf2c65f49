"""The real-time way in: accepted leads run as task runs inside long-lived flow runs.

A flow run per lead costs more than the lead's own work (on a 2-core machine,
1.8 times the plain-asyncio bound at the median and 9 times at p95, against 1.07
times for task runs inside a running flow). So the webhook receiver (and any
long-running process that takes leads one at a time) hands its accepted leads to a
`LeadStream`:

- leads come from the inbox (leadflow.stores.inbox): accepted and durable before the
  receiver answered; at start the stream also takes the unfinished leads of holders
  that are gone (a killed receiver), and looks again every minute;
- they run inside a `lead-stream` flow run that lasts up to
  `LEADFLOW_STREAM_ROLL_SECONDS` or `_ROLL_LEADS`, then hands over to the next one
  (the next run starts and takes over before the last one stops taking leads, so no
  lead waits for a flow run to be created), keeping the UI readable;
- leads that arrive together are grouped: a group takes whatever is waiting when the
  engine has room, so a lone lead goes straight through and a burst becomes bulk
  calls. Groups overlap in the engine's pipeline (flows/engine.py);
- each lead's mode is read when its group is taken (leadflow.flows.mode), from a
  cache the stream keeps fresh in the background (at most `MODE_TTL_SECONDS` old, as
  anywhere else), so no lead waits for the Prefect API to say it;
- each lead's Decision is published as an artifact after its side effects, off its
  path, a few at a time; during a burst, once the burst has passed (at most
  `ARTIFACTS_WAIT_SECONDS` later), so the Prefect API and this process spend the
  burst on its leads (an artifact per lead cost the Prefect server about 2 s of CPU
  in a burst of 500 on 2 cores);
- `stop()` stops taking leads, gives those in flight `drain_seconds`, and hands the
  rest back to the inbox for the next start.

`InboxRunner` is the part shared with `poll-source`: inbox entries validated,
de-duplicated, routed, grouped and submitted, then closed in the inbox as their group
settles.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prefect import flow
from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from leadflow.flows import mode as run_modes
from leadflow.flows.artifacts import publish_decision
from leadflow.flows.batch_intake import merge_rows
from leadflow.flows.context import use_runtime
from leadflow.flows.engine import Group, Pipeline
from leadflow.flows.summary import AlreadyDone, FailedBranch, LeadResult, LeftToCurrentProcess
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.logging import get_logger
from leadflow.models import Lead, LeadOutcome
from leadflow.settings import AdapterSettings
from leadflow.stores.inbox import FAILED, FINISHED, LEFT, InboxEntry

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

RECOVER_EVERY_SECONDS = 60.0
ARTIFACTS_AT_ONCE = 4
ARTIFACTS_WAIT_SECONDS = 30.0


class StreamSettings(AdapterSettings):
    """How the real-time stream runs (`LEADFLOW_STREAM_*`)."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_STREAM_")

    roll_seconds: float = Field(
        default=3600.0, gt=0, description="a lead-stream flow run hands over after this long"
    )
    roll_leads: int = Field(
        default=5000, ge=1, description="... or after this many leads, whichever comes first"
    )
    queue_limit: int = Field(
        default=2000,
        ge=1,
        description="accepted leads waiting or in flight beyond which the receiver answers 503",
    )
    decision_artifacts: bool = Field(
        default=True, description="publish each lead's Decision as a Prefect artifact"
    )


def status_of(result: LeadResult) -> tuple[str, str | None]:
    """How an inbox entry is closed for a lead's result."""
    if isinstance(result, FailedBranch):
        return FAILED, f"{result.branch}: {result.reason}"[:1000]
    if isinstance(result, LeftToCurrentProcess):
        return LEFT, result.route
    if isinstance(result, LeadOutcome) and not result.ok:
        failed = "; ".join(f"{b}: {why}" for b, why in result.failed_branches.items())
        return FAILED, failed[:1000]
    return FINISHED, None


class InboxRunner:
    """Inbox entries through the engine (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        pipeline: Pipeline,
        on_results: Callable[[Group | None, Sequence[LeadResult]], Awaitable[None]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.pipeline = pipeline
        self.on_results = on_results
        self._entries: dict[int, dict[str, list[str]]] = {}  # group -> lead id -> entry ids
        self._number = 0
        pipeline.on_done = self._settled

    async def submit(self, entries: Sequence[InboxEntry]) -> None:
        """One group of `entries`, routed by mode. As in a file, one person is one
        lead: entries with the same email are merged into the first (later non-empty
        values win)."""
        leads: dict[str, Lead] = {}  # by email
        raw: dict[str, dict] = {}  # by lead id
        ids: dict[str, list[str]] = {}  # lead id -> inbox entries
        bad: list[tuple[InboxEntry, Rejection]] = []
        for entry in entries:
            record = RawRecord(origin=entry.origin, position=entry.position, data=entry.record)
            checked = validate_record(record)
            if isinstance(checked, Rejection):
                bad.append((entry, checked))
                continue
            first = leads.get(checked.email)
            lead = leads[checked.email] = merge_rows(first, checked) if first else checked
            raw.setdefault(lead.id, entry.record)
            ids.setdefault(lead.id, []).append(entry.id)
        if bad:  # valid when accepted; not any more (a changed validation): set aside
            await self.runtime.quarantine.put([rejection for _e, rejection in bad])
            for entry, rejection in bad:
                await self.runtime.inbox.finish([entry.id], FAILED, rejection.reason)
        if not leads:
            return
        self._number += 1
        mode = await self.runtime.modes.get()
        if mode == "live":
            group = Group(list(leads.values()), number=self._number)
            self._entries[self._number] = ids
            await self.pipeline.submit(group)
            return
        from leadflow.flows.cutover import route_leads  # it builds on the engine

        results = await route_leads(self.runtime, list(leads.values()), raw, mode)
        await self._close(ids, results)
        if self.on_results:
            await self.on_results(None, results)

    async def _settled(self, group: Group) -> None:
        results = group.results()
        await self._close(self._entries.pop(group.number, {}), results)
        if self.on_results:
            await self.on_results(group, results)

    async def _close(self, ids: dict[str, list[str]], results: Sequence[LeadResult]) -> None:
        by_status: dict[tuple[str, str | None], list[str]] = {}
        for result in results:
            by_status.setdefault(status_of(result), []).extend(ids.get(result.lead_id, []))
        for (status, detail), entry_ids in by_status.items():
            await self.runtime.inbox.finish(entry_ids, status, detail)


@dataclass
class _Handover:
    """One `lead-stream` run's signals: `ready` once it takes leads, `due` when it
    should hand over, `stop_taking` when its successor is ready (or the stream stops)."""

    stream: LeadStream
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    due: asyncio.Event = field(default_factory=asyncio.Event)
    stop_taking: asyncio.Event = field(default_factory=asyncio.Event)


_handover: ContextVar[_Handover | None] = ContextVar("leadflow_stream", default=None)


class StreamRunSummary(BaseModel):
    """What one `lead-stream` flow run did."""

    opened: str
    leads: int = 0
    groups: int = 0
    failed: int = 0
    already_done: int = 0
    left_to_current_process: int = 0
    resent: int = Field(
        default=0,
        description="side effects sent again under their key: their earlier holder was gone",
    )

    def add(self, results: Sequence[LeadResult]) -> None:
        """Count one settled group's results."""
        self.leads += len(results)
        self.groups += 1
        for result in results:
            self.failed += bool(FailedBranch.all_in(result))
            self.already_done += isinstance(result, AlreadyDone)
            self.left_to_current_process += isinstance(result, LeftToCurrentProcess)
            if isinstance(result, LeadOutcome):
                self.resent += sum(b.resent for b in result.branches.values())


@flow(name="lead-stream", flow_run_name="leads-{opened}", log_prints=False)
async def lead_stream(opened: str) -> StreamRunSummary:
    """Leads accepted in real time (the webhook receiver), as task runs in this run,
    until it hands over to the next run (LEADFLOW_STREAM_ROLL_SECONDS / _ROLL_LEADS)
    or the receiver stops."""
    handover = _handover.get()
    if handover is None:
        raise RuntimeError("lead-stream runs inside `leadflow serve-webhook`, not on its own")
    handover.stream.reclaim_signals()
    return await handover.stream.serve_one_run(opened, handover)


class LeadStream:
    """Accepted leads, run in long-lived flow runs (see the module docstring)."""

    def __init__(self, runtime: Runtime, settings: StreamSettings | None = None) -> None:
        self.runtime = runtime
        self.settings = settings or StreamSettings()
        self._queue: asyncio.Queue[InboxEntry] = asyncio.Queue()
        self._in_flight = 0
        self._stopping = asyncio.Event()
        self._quiet = asyncio.Event()  # no lead waiting or in flight
        self._quiet.set()
        self._finished_at: list[float] = []
        self.runs = 0
        self.totals = StreamRunSummary(opened="since the start")  # every run's, added up
        self.recovered = 0  # leads taken from the inbox: accepted earlier, not finished
        self._signals: dict[int, Callable[[], object]] = {}

    def keep_signals(self, handlers: Mapping[int, Callable[[], object]]) -> None:
        """Signal handlers of the process serving the stream (the receiver's graceful
        stop on SIGINT and SIGTERM) that its flow runs must not take over: see
        `reclaim_signals`."""
        self._signals = dict(handlers)

    def reclaim_signals(self) -> None:
        """Put the kept handlers back on the loop. A flow run in the main thread
        installs Prefect's SIGTERM bridge, which raises TerminationSignal wherever the
        loop is: a service manager's stop (SIGTERM) would end the receiver with a
        traceback, no drain and no last words. Prefect restores the loop's own handler
        when the run ends."""
        loop = asyncio.get_running_loop()
        for number, handler in self._signals.items():
            with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
                loop.add_signal_handler(number, handler)

    # --- the receiver's side -------------------------------------------------------

    def put(self, entries: Sequence[InboxEntry]) -> None:
        for entry in entries:
            self._queue.put_nowait(entry)
            self._quiet.clear()

    @property
    def pending(self) -> int:
        """Accepted leads waiting or in flight."""
        return self._queue.qsize() + self._in_flight

    def has_room(self, more: int = 1) -> bool:
        return not self._stopping.is_set() and self.pending + more <= self.settings.queue_limit

    def retry_after(self) -> int:
        """Seconds a refused sender should wait: the backlog at the recent pace."""
        recent = self._finished_at[-200:]
        pace = len(recent) / max(recent[-1] - recent[0], 1.0) if len(recent) > 1 else 10.0
        return max(1, min(60, round(self.pending / max(pace, 1.0))))

    # --- running -------------------------------------------------------------------

    async def run(self, drain_seconds: float | None = None) -> None:
        """Serve until `stop()`: flow run after flow run, each handing over to the next.
        On stop, the leads in flight get `drain_seconds` (the pipeline setting by
        default); what is left goes back to the inbox for the next start."""
        drain = (
            self.runtime.settings.pipeline.drain_seconds if drain_seconds is None else drain_seconds
        )
        inbox = self.runtime.inbox
        runs: set[asyncio.Task] = set()
        current: _Handover | None = None
        async with inbox.holding():
            recovering = asyncio.create_task(self._recover_forever())
            reading_mode = asyncio.create_task(self._keep_mode_fresh(), name="leadflow-mode")
            try:
                while not self._stopping.is_set():
                    handover = _Handover(self)
                    run = asyncio.create_task(self._run_flow(handover))
                    runs.add(run)
                    run.add_done_callback(runs.discard)
                    await _first(handover.ready.wait(), run, self._stopping.wait())
                    if current is not None and handover.ready.is_set():
                        current.stop_taking.set()  # the new run takes over
                    if run.done() and not handover.ready.is_set():
                        await asyncio.sleep(1.0)  # it could not start: the API; try again
                        continue
                    current = handover
                    await _first(handover.due.wait(), run, self._stopping.wait())
            finally:
                if current is not None:
                    current.stop_taking.set()
                recovering.cancel()
                reading_mode.cancel()
                if runs:
                    _done, late = await asyncio.wait(runs, timeout=drain)
                    for run in late:
                        run.cancel()
                    await asyncio.gather(*runs, recovering, reading_mode, return_exceptions=True)
                released = await inbox.release()
                if released:
                    log.info("accepted leads handed back for the next start", leads=released)

    async def _run_flow(self, handover: _Handover) -> None:
        _handover.set(handover)
        self.runs += 1
        opened = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        try:
            with use_runtime(self.runtime):
                state = await lead_stream(opened=opened, return_state=True)
        except Exception as exc:  # the Prefect API did not answer: the leads wait in the inbox
            log.warning("lead-stream run could not start", error=f"{type(exc).__name__}: {exc}")
            return
        if not state.is_completed():
            log.warning("lead-stream run ended", state=state.name, message=state.message)

    async def serve_one_run(self, opened: str, handover: _Handover) -> StreamRunSummary:
        """The body of one `lead-stream` flow run."""
        summary = StreamRunSummary(opened=opened)
        started = time.monotonic()
        publishing: set[asyncio.Task] = set()
        gate = asyncio.Semaphore(ARTIFACTS_AT_ONCE)

        async def settled(group: Group | None, results: Sequence[LeadResult]) -> None:
            self._in_flight -= len(results)
            if self.pending == 0:
                self._quiet.set()
            self._finished_at += [time.monotonic()] * len(results)
            del self._finished_at[:-1000]
            summary.add(results)
            self.totals.add(results)
            if group is not None and self.settings.decision_artifacts:
                for lead, result in zip(group.leads, results, strict=True):
                    if isinstance(result, LeadOutcome):
                        publish = self._publish(gate, lead, result, handover.stop_taking)
                        task = asyncio.create_task(publish)
                        publishing.add(task)
                        task.add_done_callback(publishing.discard)

        pipeline = Pipeline(self.runtime, in_flight=self.runtime.settings.pipeline.concurrency)
        runner = InboxRunner(self.runtime, pipeline, settled)
        size = self.runtime.settings.pipeline.batch_size
        # What is loaded by now (Prefect, SQLAlchemy, the adapters, this run's engine)
        # lives as long as the process: kept out of the garbage collector, whose full
        # collections otherwise stop the event loop for 100-150 ms every few dozen
        # leads (walking that heap), on whichever lead is in flight.
        gc.freeze()
        handover.ready.set()
        try:
            while not handover.stop_taking.is_set():
                entries = await self._take(size, handover.stop_taking)
                if not entries:
                    continue
                self._in_flight += len(entries)
                await runner.submit(entries)
                if time.monotonic() - started > self.settings.roll_seconds or (
                    summary.leads + pipeline.in_flight >= self.settings.roll_leads
                ):
                    handover.due.set()
            await pipeline.drain()
        except asyncio.CancelledError:
            await pipeline.cancel()
            raise
        finally:
            if publishing:
                await asyncio.gather(*publishing, return_exceptions=True)
        return summary

    async def _publish(
        self, gate: asyncio.Semaphore, lead: Lead, outcome: LeadOutcome, hurry: asyncio.Event
    ) -> None:
        """Once no lead waits (at once for a lone lead), the run hands over or stops
        (`hurry`), or `ARTIFACTS_WAIT_SECONDS` have passed."""
        await _first(self._quiet.wait(), hurry.wait(), asyncio.sleep(ARTIFACTS_WAIT_SECONDS))
        async with gate:
            try:
                await publish_decision(lead, outcome)
            except Exception as exc:  # an artifact is a view: its failure loses nothing
                log.warning("decision artifact not published", lead_id=lead.id, error=str(exc))

    async def _take(self, size: int, stop: asyncio.Event) -> list[InboxEntry]:
        """What is waiting, up to `size`: the first entry waited for (until `stop`),
        the rest only if already there."""
        getting = asyncio.ensure_future(self._queue.get())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not getting.done():
            getting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getting
            return []
        entries = [getting.result()]
        while len(entries) < size and not self._queue.empty():
            entries.append(self._queue.get_nowait())
        return entries

    async def _recover_forever(self) -> None:
        """Take the inbox's orphans (accepted by a process that is gone) now and every
        `RECOVER_EVERY_SECONDS`."""
        while True:
            try:
                found = await self.runtime.inbox.take()
            except Exception as exc:
                log.warning("could not read the inbox", error=str(exc)[:200])
                found = []
            if found:
                log.info("finishing leads accepted earlier and not finished", leads=len(found))
                self.recovered += len(found)
                self.put(found)
            await asyncio.sleep(RECOVER_EVERY_SECONDS)

    async def _keep_mode_fresh(self) -> None:
        """Read the mode every half `MODE_TTL_SECONDS`, so the cache a group's mode
        comes from is never too old to use: a lead that arrives after a quiet spell
        would otherwise wait for the Prefect API (a few to tens of milliseconds)."""
        while True:
            ttl = run_modes.MODE_TTL_SECONDS
            if ttl > 0:  # 0: every read asks the API (tests): nothing to keep
                try:
                    await self.runtime.modes.refresh()
                except Exception as exc:  # the leads read it themselves meanwhile
                    log.warning("could not read the mode", error=str(exc)[:200])
            await asyncio.sleep(ttl / 2 if ttl > 0 else 1.0)

    def stop(self) -> None:
        """Stop taking leads (see `run`)."""
        self._stopping.set()

    def describe(self) -> str:
        """What this stream did, in one line for the receiver's last words."""
        done = self.totals
        line = f"{done.leads} leads finished"
        if self.recovered:
            line += f" ({self.recovered} accepted earlier and not finished, taken from the inbox)"
        if done.failed:
            line += f"; {done.failed} failed (see `leadflow replay --list`)"
        if done.resent:
            line += (
                f"; {done.resent} side effects sent again under their keys: an earlier "
                "receiver claimed them and did not confirm them (it was stopped or killed)"
            )
        return line


async def _first(*waits: Awaitable) -> None:
    """Wait until the first of `waits` is done; cancel the others (not tasks passed in)."""
    futures = [asyncio.ensure_future(w) for w in waits]
    owned = [f for f, w in zip(futures, waits, strict=True) if f is not w]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in owned:
            future.cancel()
