"""The one engine: every lead, whichever way it came in, goes through here.

    look up --> decide --> update CRM | notify the team | log the event
    (a task)    (a task)   (three tasks, at once: none needs another)

The steps run over a *group* of leads. A webhook lead is a group of one; a backlog
streams through in groups of `LEADFLOW_PIPELINE__BATCH_SIZE`; a burst of webhook
leads that arrive together becomes one group. The group size and whether adapters'
bulk endpoints are called (for more than one lead) are all that differ between
them: the steps, the retries and the once-only bookkeeping are these.

Each step is a Prefect task run inside the caller's flow run, named after the group's
leads (`notify-team ada@example.org`, `look-up ada@example.org +99`), retried on its
own on transient errors, and retried for the leads that failed only: a lead that
succeeded is never sent again because another lead of its group failed. No result is
persisted and nothing is cached in Prefect: the once-only record is leadflow's own.

Once only (leadflow.once, leadflow.stores.decisions):
1. `recall`: leads whose exact version is done are answered from the decisions store
   (no task runs); leads decided before but not finished keep their decision.
2. `decide` stores each decision and claims its three side effects in one
   transaction, before any vendor is called.
3. each side-effect task calls the vendor for the claims it holds, with the lead's
   idempotency key, and marks each done after the vendor answered (failed ones are
   claimed again by the retry); a claim held by another live run is waited for,
   never counted as done. Leases are renewed while the group is in flight: a killed
   process's claims expire and the next run sends them again under the same key.
4. `settle`: leads whose side effects are all done are marked done; side effects that
   failed after their retries are kept for `leadflow replay`.

`Pipeline` overlaps groups: while one group fans out, the next is decided and later
ones are looked up. Decisions are made one group at a time, in the order the groups
were submitted, so the round robin picks the same reps whatever the group size.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from prefect import tags, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import TaskRunNameCallbackWithParameters
from sqlalchemy.exc import OperationalError
from structlog.contextvars import bound_contextvars

from leadflow.decide import decide, decide_many
from leadflow.failed_effects import FailedEffect
from leadflow.flows.context import current_runtime
from leadflow.flows.limits import vendor_limit
from leadflow.flows.naming import decision_tags, label_of, lead_tags, task_tags
from leadflow.flows.retries import retry_options
from leadflow.flows.summary import AlreadyDone, EngineResult, FailedBranch
from leadflow.integrations.base import Adapter, LeadEvent
from leadflow.integrations.errors import RateLimited, TransientError
from leadflow.logging import get_logger
from leadflow.models import (
    BranchResult,
    BranchStatus,
    CrmMatch,
    Decision,
    Lead,
    LeadOutcome,
    StepTiming,
)
from leadflow.once import Claim, EffectKey, once_key, scope_hash
from leadflow.settings import PipelineSettings
from leadflow.stores.decisions import StoredDecision

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SideEffect:
    """One side-effect branch: its task's name, its once-only key's name, the adapter
    it calls, and how to call it for one item or in bulk."""

    branch: str
    effect: str
    adapter: str
    # the adapter is the branch's port: a CRM, a Notifier or an EventSink
    one: Callable[[Any, tuple[Lead, Decision, str]], Awaitable[Any]]
    bulk: Callable[[Any, list[tuple[Lead, Decision, str]]], Awaitable[Any]]
    bulk_method: str


def _event(item: tuple[Lead, Decision, str]) -> LeadEvent:
    lead, decision, key = item
    return LeadEvent(
        event_id=key, lead_id=lead.id, occurred_at=datetime.now(UTC), decision=decision
    )


SIDE_EFFECTS = (
    SideEffect(
        "update_crm",
        "crm",
        "crm",
        lambda a, i: a.upsert(i[0], i[1], idempotency_key=i[2]),
        lambda a, items: a.upsert_many(items),
        "upsert_many",
    ),
    SideEffect(
        "notify_team",
        "notify",
        "notifier",
        lambda a, i: a.notify(i[0], i[1], idempotency_key=i[2]),
        lambda a, items: a.notify_many(items),
        "notify_many",
    ),
    SideEffect(
        "log_event",
        "event",
        "event_sink",
        lambda a, i: a.record(_event(i)),
        lambda a, items: a.record_many([_event(i) for i in items]),
        "record_many",
    ),
)
BRANCHES = tuple(s.branch for s in SIDE_EFFECTS)
EFFECT_OF_BRANCH = {s.branch: s.effect for s in SIDE_EFFECTS}
_BY_BRANCH = {s.branch: s for s in SIDE_EFFECTS}


def effect_scope(runtime: Runtime, effect: str) -> str:
    """Where a side effect lands, as stored in the once-only store."""
    spec = next(s for s in SIDE_EFFECTS if s.effect == effect)
    return scope_hash(getattr(runtime.adapters, spec.adapter).once_scope)


def effect_key(runtime: Runtime, effect: str, lead: Lead) -> EffectKey:
    return EffectKey(effect, effect_scope(runtime, effect), once_key(effect, lead))


class RetryLater(RateLimited):
    """Some leads of a group failed in a way a retry may fix; the task's retry does
    those again, and only those, after the longest Retry-After any vendor asked for
    (none: the usual backoff)."""


def retry_later(step: str, failures: dict[str, BaseException]) -> RetryLater:
    first = next(iter(failures.values()))
    waits = [f.retry_after for f in failures.values() if isinstance(f, RateLimited)]
    return RetryLater(
        f"{step}: {len(failures)} to retry; first: {type(first).__name__}: {first}",
        retry_after=max((w for w in waits if w), default=None),
    )


UNRECORDED = "sent; not yet recorded (the database was busy): the next run confirms it"


def _reason(exc: BaseException | str) -> str:
    return exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"


# --- the group -----------------------------------------------------------------------


class Group:
    """The leads that go through the steps together, and what has happened to them.

    A plain class on purpose: Prefect walks dataclasses and pydantic models in task
    parameters (looking for upstream futures) but passes other objects as they are,
    and records no state per item of a result (the tasks write here and return None).
    """

    def __init__(self, leads: Sequence[Lead], *, number: int = 0, rows: dict | None = None):
        self.number = number
        self.leads = list(leads)
        self.rows: dict[str, int] = rows or {}  # lead id -> row in its file, if any
        self.token = uuid.uuid4().hex  # this group's claims in the once-only store
        self.claim = Claim(self.token)
        self.done_before: dict[str, StoredDecision] = {}
        self.recalled: set[str] = set()  # decided in an earlier run, not finished
        self.matches: dict[str, CrmMatch | None] = {}
        self.decisions: dict[str, Decision] = {}
        self.stored = False
        self.stopped: dict[str, FailedBranch] = {}  # the pipeline stopped before deciding
        self.effects: dict[str, dict[str, BranchResult]] = {b: {} for b in BRANCHES}
        self.steps: list[StepTiming] = []
        self.errors: dict[tuple[str, str], BaseException] = {}  # (step, lead) -> last retried
        self.started = time.perf_counter()

    @property
    def label(self) -> str:
        """How task runs name the group: its first lead, and how many more."""
        if not self.leads:
            return "no leads"
        more = f" +{len(self.leads) - 1}" if len(self.leads) > 1 else ""
        return f"{label_of(self.leads[0])}{more}"

    def waiting(self) -> list[Lead]:
        """Leads still to be looked up and decided."""
        return [
            lead
            for lead in self.leads
            if lead.id not in self.done_before
            and lead.id not in self.decisions
            and lead.id not in self.stopped
        ]

    def decided(self) -> list[Lead]:
        return [lead for lead in self.leads if lead.id in self.decisions]

    def stop(self, lead: Lead, step: str, why: BaseException | str) -> None:
        self.stopped[lead.id] = FailedBranch(
            lead_id=lead.id,
            branch=step,
            reason=_reason(why),
            email=lead.email,
            row=self.rows.get(lead.id, 0),
        )

    def results(self) -> list[EngineResult]:
        """One result per lead, in order: answered from the store, stopped before a
        decision, or its decision and side effects."""
        results: list[EngineResult] = []
        for lead in self.leads:
            if lead.id in self.done_before:
                stored = self.done_before[lead.id].decision
                results.append(
                    AlreadyDone(lead_id=lead.id, tier=stored.tier, rep=stored.rep, email=lead.email)
                )
            elif lead.id in self.stopped:
                results.append(self.stopped[lead.id])
            else:
                results.append(
                    LeadOutcome(
                        lead_id=lead.id,
                        decision=self.decisions[lead.id],
                        branches={b: self.effects[b][lead.id] for b in BRANCHES},
                        steps=[*self.steps, *self._branch_steps(lead.id)],
                        email=lead.email,
                    )
                )
        return results

    def _branch_steps(self, lead_id: str) -> list[StepTiming]:
        return [
            StepTiming(step=b, duration_ms=self.effects[b][lead_id].duration_ms) for b in BRANCHES
        ]

    def __repr__(self) -> str:  # what Prefect shows for the parameter
        return f"Group(number={self.number}, leads={len(self.leads)})"


# --- what the UI shows ------------------------------------------------------------------


@contextlib.contextmanager
def about(group: Group, decided: bool = False) -> Iterator[None]:
    """Log lines written in the block name the group's lead (`lead=`, one lead) or
    the group (`group=`, several); with `LEADFLOW_UI__TAG_TASKS`, the task runs started
    in it carry the lead's tags (its tier and rep too once `decided`)."""
    if len(group.leads) != 1:
        with bound_contextvars(group=group.label):
            yield
        return
    (lead,) = group.leads
    wanted = lead_tags(lead)
    if decided and lead.id in group.decisions:
        wanted += decision_tags(group.decisions[lead.id])
    with bound_contextvars(lead_id=lead.id, lead=label_of(lead)), tags(*task_tags(wanted)):
        yield


def _step_line(group: Group, step: str, ms: float, **fields: Any) -> None:
    """One line per step of a group: what the UI shows under the run, and what
    `leadflow run -v` prints."""
    many = {"leads": len(group.leads)} if len(group.leads) != 1 else {}
    log.info("step", step=step, duration_ms=round(ms, 2), **many, **fields)


# --- the steps, as tasks ---------------------------------------------------------------


def _run_name(step: str) -> TaskRunNameCallbackWithParameters:
    def name(parameters: dict[str, Any]) -> str:
        group = parameters.get("group")
        return f"{step} {group.label}" if isinstance(group, Group) else step

    name.__name__ = f"{step.replace('-', '_')}_run_name"
    # Prefect tells the kinds apart by the parameter's name; its Protocol's classmethod
    # makes no plain function match it for mypy.
    return cast(TaskRunNameCallbackWithParameters, name)


_QUIET: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, "log_prints": False}


@task(name="look-up", task_run_name=_run_name("look-up"), **_QUIET)
async def look_up(group: Group) -> None:
    """The CRM look-up for the group's leads: the bulk call for more than one lead."""
    crm = current_runtime().adapters.crm
    todo = [lead for lead in group.waiting() if lead.id not in group.matches]
    started = time.perf_counter()
    answers = await _call(crm, "look_up_many", todo, crm.look_up_many, crm.look_up)
    group.steps.append(StepTiming(step="look_up", duration_ms=_ms(started)))
    _step_line(group, "look_up", _ms(started))
    retry: dict[str, BaseException] = {}
    for lead, answer in zip(todo, answers, strict=True):
        if isinstance(answer, TransientError):
            retry[lead.id] = group.errors[("look_up", lead.id)] = answer
        elif isinstance(answer, BaseException):
            group.stop(lead, "look_up", answer)
        else:
            group.matches[lead.id] = answer
    if retry:
        raise retry_later("look-up", retry)


@task(name="decide", task_run_name=_run_name("decide"), **_QUIET)
async def decide_group(group: Group) -> None:
    """Score, follow-up and rep for the looked-up leads (one scoring call and one
    assignment transaction), then each decision stored and its side effects claimed,
    in one transaction, before anything is sent."""
    runtime = current_runtime()
    leads = [lead for lead in group.waiting() if lead.id in group.matches]
    if leads:
        before = len(group.steps)
        await _decide(group, leads, runtime)
        for step in group.steps[before:]:
            _step_line(group, step.step, step.duration_ms)
    if not group.stored:
        await patiently(runtime, "store the decisions", _store_and_claim, group, runtime)


async def _decide(group: Group, leads: list[Lead], runtime: Runtime) -> None:
    matches = [group.matches[lead.id] for lead in leads]
    options: dict[str, Any] = {
        "rules": runtime.rules,
        "scorer": runtime.adapters.scorer,
        "assigner": runtime.assigner,
    }
    try:
        decisions = await patiently(
            runtime, "assign reps", decide_many, leads, matches, steps=group.steps, **options
        )
    except TransientError:
        raise
    except Exception as exc:
        log.info("bulk decision failed, one lead at a time", leads=len(leads), error=str(exc))
        for lead, match in zip(leads, matches, strict=True):
            try:
                group.decisions[lead.id], _steps = await decide(lead, match, **options)
            except Exception as one:
                group.stop(lead, "decide", one)
        return
    group.decisions.update({lead.id: d for lead, d in zip(leads, decisions, strict=True)})


async def _store_and_claim(group: Group, runtime: Runtime) -> None:
    fresh = [lead for lead in group.decided() if lead.id not in group.recalled]
    keys = [effect_key(runtime, s.effect, lead) for lead in group.decided() for s in SIDE_EFFECTS]
    from leadflow.db import get_engine

    async with get_engine(runtime.settings.database_url).begin() as connection:
        await runtime.decisions.add(
            [(lead, group.matches.get(lead.id), group.decisions[lead.id]) for lead in fresh],
            connection=connection,
        )
        group.claim = await runtime.once.claim(keys, token=group.token, connection=connection)
    group.stored = True


async def _side_effect(group: Group, spec: SideEffect) -> None:
    """One side effect for the group's decided leads: take the claims (made with the
    decision, or again on a retry), wait for any another live run holds, call the
    vendor for those taken, record each answer. Leads whose call failed transiently
    are retried by the task's retry; the others are settled."""
    runtime = current_runtime()
    adapter = getattr(runtime.adapters, spec.adapter)
    results = group.effects[spec.branch]
    keyed: dict[EffectKey, list[Lead]] = {}
    for lead in group.decided():
        if lead.id not in results:
            keyed.setdefault(effect_key(runtime, spec.effect, lead), []).append(lead)
    if not keyed:
        return
    claim = await _claims_for(group, list(keyed), runtime)
    for item in claim.done:
        for lead in keyed[item]:
            results[lead.id] = BranchResult(status=BranchStatus.SKIPPED, detail="done before")
    taken = [item for item in keyed if item in claim.taken]  # in the group's order
    items = [(keyed[k][0], group.decisions[keyed[k][0].id], k.key) for k in taken]
    started = time.perf_counter()
    try:
        answers = await _call(
            adapter,
            spec.bulk_method,
            items,
            functools.partial(spec.bulk, adapter),
            functools.partial(spec.one, adapter),
        )
    except BaseException:  # cancelled while calling: hand the claims back at once
        with contextlib.suppress(Exception):
            await asyncio.shield(runtime.once.release(group.token, taken, "interrupted"))
        raise
    elapsed = _ms(started)
    done = [k for k, a in zip(taken, answers, strict=True) if not isinstance(a, BaseException)]
    failed = {k: a for k, a in zip(taken, answers, strict=True) if isinstance(a, BaseException)}
    recorded = await _record(runtime, group.token, done, failed)
    retry: dict[str, BaseException] = {}
    for item, answer in zip(taken, answers, strict=True):
        for lead in keyed[item]:
            if isinstance(answer, TransientError):
                retry[lead.id] = group.errors[(spec.branch, lead.id)] = answer
            elif isinstance(answer, BaseException):
                results[lead.id] = BranchResult(
                    status=BranchStatus.FAILED, duration_ms=elapsed, error=_reason(answer)
                )
            else:
                detail = None if recorded else UNRECORDED
                results[lead.id] = BranchResult(
                    status=BranchStatus.OK,
                    duration_ms=elapsed,
                    detail=detail,
                    resent=item in claim.resumed,
                )
    _effect_line(group, spec, results, elapsed)
    for item in claim.busy:  # another run still holds it after a lease: not done here
        for lead in keyed[item]:
            busy = TransientError("in progress in another run; not confirmed yet")
            retry[lead.id] = group.errors[(spec.branch, lead.id)] = busy
    if retry:
        raise retry_later(spec.branch.replace("_", "-"), retry)


_DONE_LINE = {
    "update_crm": "crm updated",
    "notify_team": "team notified",
    "log_event": "event logged",
}


def _effect_line(
    group: Group, spec: SideEffect, results: dict[str, BranchResult], ms: float
) -> None:
    """One line per side-effect step: for one lead, what was done and for whom (the rep
    notified); for a group, how many were sent, done before, or failed."""
    if len(group.leads) == 1:
        (lead,) = group.leads
        result = results.get(lead.id)
        if result is not None and result.status is BranchStatus.OK:
            log.info(_DONE_LINE[spec.branch], rep=group.decisions[lead.id].rep)
        status = result.status.value if result else "retrying"
        _step_line(group, spec.branch, ms, status=status, error=result.error if result else None)
        return
    counts = Counter(r.status.value for r in results.values())
    log.info(_DONE_LINE[spec.branch], leads=len(results), **counts)
    _step_line(group, spec.branch, ms, **counts)


async def _claims_for(group: Group, keys: list[EffectKey], runtime: Runtime) -> Claim:
    """This attempt's claims: those made with the decision, the rest claimed now;
    then those another live run holds waited for."""
    claim = Claim(group.token)
    fresh: list[EffectKey] = []
    for item in keys:
        for kind in ("taken", "done", "busy"):
            made: set[EffectKey] = getattr(group.claim, kind)
            if item in made:
                getattr(claim, kind).add(item)
                made.discard(item)
                if item in group.claim.resumed:
                    claim.resumed.add(item)
                break
        else:
            fresh.append(item)
    if fresh:
        again = await patiently(
            runtime, "claim side effects", runtime.once.claim, fresh, token=group.token
        )
        claim.taken |= again.taken
        claim.done |= again.done
        claim.busy |= again.busy
        claim.resumed |= again.resumed
    if claim.busy:
        await runtime.once.settle_busy(claim)
    return claim


async def _record(
    runtime: Runtime, token: str, done: list[EffectKey], failed: dict[EffectKey, BaseException]
) -> bool:
    """Mark the answered claims. False if the database stayed busy too long: the side
    effects were sent, so they are not failed; their claims expire and the next run
    confirms them under the same keys."""
    reasons = {k: _reason(e) for k, e in failed.items()}
    return await durably(
        runtime, "record side effects", runtime.once.finish, token, done=done, failed=reasons
    )


async def patiently(
    runtime: Runtime, what: str, call: Callable[..., Awaitable[T]], *args, **kwargs
) -> T:
    """`call` (leadflow's own bookkeeping in its database), waiting out a busy
    (locked) database for up to `LEADFLOW_PIPELINE__RECORD_TIMEOUT_SECONDS`: another
    process holding SQLite's write lock longer than its busy timeout (30 s) is a
    wait, not a failure. Safe for calls that are one transaction (it either committed
    or left nothing). After the deadline, the database's error is raised."""
    deadline = time.monotonic() + runtime.settings.pipeline.record_timeout_seconds
    pause = 0.5
    while True:
        try:
            return await call(*args, **kwargs)
        except OperationalError as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.info(f"database busy; waiting to {what}", error=str(exc.orig)[:200])
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


async def durably(
    runtime: Runtime, what: str, write: Callable[..., Awaitable[Any]], *args, **kwargs
) -> bool:
    """A write of what already happened, waiting out a busy database (`patiently`).
    False if it could not be written: the caller reports the lead as not yet
    confirmed, never as failed."""
    try:
        await patiently(runtime, what, write, *args, **kwargs)
        return True
    except OperationalError as exc:
        log.warning(f"could not {what}", error=str(exc.orig)[:200])
        return False


@task(name="update-crm", task_run_name=_run_name("update-crm"), **_QUIET)
async def update_crm(group: Group) -> None:
    """Create or update each lead's CRM contact, with its owner and tier."""
    await _side_effect(group, _BY_BRANCH["update_crm"])


@task(name="notify-team", task_run_name=_run_name("notify-team"), **_QUIET)
async def notify_team(group: Group) -> None:
    """Tell the assigned rep (or team) about each lead."""
    await _side_effect(group, _BY_BRANCH["notify_team"])


@task(name="log-event", task_run_name=_run_name("log-event"), **_QUIET)
async def log_event(group: Group) -> None:
    """Record a `lead.processed` event per lead for reporting."""
    await _side_effect(group, _BY_BRANCH["log_event"])


BRANCH_TASKS = {"update_crm": update_crm, "notify_team": notify_team, "log_event": log_event}


@functools.cache
def configured_tasks(settings: PipelineSettings) -> dict[str, Any]:
    """The step tasks with this configuration's retry policy (built once)."""
    options = retry_options(settings)
    tasks = {"look_up": look_up, "decide": decide_group, **BRANCH_TASKS}
    return {name: t.with_options(**options) for name, t in tasks.items()}


# --- calling adapters ----------------------------------------------------------------------


def has_bulk(adapter: Adapter, method: str) -> bool:
    """Whether the adapter has a bulk endpoint for `method` (it overrides the base
    class's default, which calls the single method once per item)."""
    own = getattr(type(adapter), method, None)
    base = next((getattr(c, method) for c in type(adapter).__mro__[1:] if method in vars(c)), None)
    return own is not None and own is not base


async def _call(
    adapter: Adapter,
    bulk_method: str,
    items: Sequence[Any],
    bulk: Callable[[Any], Awaitable[Any]],
    one: Callable[[Any], Awaitable[Any]],
) -> list[Any]:
    """Each item's answer or exception, in order. More than one item and a bulk
    endpoint: one bulk call, within the vendor's limits; if it fails for a reason a
    retry will not fix, one call per item, so only the items that fail are failed.
    A bulk call may answer per item (a list holding exceptions for the items the
    vendor did not confirm)."""
    if not items:
        return []
    if len(items) > 1 and has_bulk(adapter, bulk_method):
        try:
            async with vendor_limit(adapter):
                answer = await bulk(list(items))
            return list(answer) if answer is not None else [None] * len(items)
        except TransientError as exc:
            return [exc] * len(items)
        except Exception as exc:
            log.info(
                "bulk call failed, one call per lead", adapter=adapter.name, error=str(exc)[:200]
            )

    async def single(item: Any) -> Any:
        async with vendor_limit(adapter):
            return await one(item)

    return list(await asyncio.gather(*(single(item) for item in items), return_exceptions=True))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# --- running a group -------------------------------------------------------------------------


async def recall(group: Group, runtime: Runtime) -> None:
    """Answer what the decisions store knows: leads done before (nothing to do) and
    leads decided before but not finished (their side effects, with that decision)."""
    stored = await patiently(runtime, "read the decisions", runtime.decisions.find, group.leads)
    for lead in group.leads:
        found = stored.get(lead.id)
        if found is None:
            continue
        if found.done:
            group.done_before[lead.id] = found
        else:
            group.decisions[lead.id] = found.decision
            group.matches[lead.id] = found.match
            group.recalled.add(lead.id)


async def _step(group: Group, name: str, leads: list[Lead]) -> str | None:
    """Run one step's task; if it ends failed (after its retries), the leads it did
    not get through are stopped with its reason, which is returned."""
    tasks = configured_tasks(current_runtime().settings.pipeline)
    with about(group):
        state = await tasks[name](group, return_state=True)
    if state.is_completed():
        return None
    reason = await _state_reason(state)
    for lead in leads:
        if lead.id not in group.decisions and lead.id not in group.stopped:
            group.stop(lead, name, group.errors.get((name, lead.id)) or reason)
    return reason


async def _state_reason(state) -> str:
    exc = await state.aresult(raise_on_failure=False)
    return _reason(exc) if isinstance(exc, BaseException) else (state.message or state.name)


async def prepare(group: Group, runtime: Runtime) -> None:
    """Recall, then look up what is left."""
    await recall(group, runtime)
    if waiting := group.waiting():
        await _step(group, "look_up", waiting)


async def decide_step(group: Group, runtime: Runtime) -> None:
    if group.waiting() or group.decisions:
        why = await _step(group, "decide", group.waiting())
        if not group.stored:  # the task failed before storing: nothing may be sent
            for lead in group.decided():
                group.stop(lead, "decide", f"the decision could not be stored: {why}")
            group.decisions.clear()


async def fan_out(group: Group, runtime: Runtime) -> None:
    """The three side effects at once; each branch's failures stay its own."""
    if not group.decisions:
        return
    tasks = configured_tasks(runtime.settings.pipeline)

    async def branch(name: str) -> None:
        adapter = getattr(runtime.adapters, _BY_BRANCH[name].adapter)
        # the runs of a vendor whose calls are limited can be found by its tag
        vendor = [f"vendor:{adapter.name}"] if adapter.name in runtime.settings.limits else []
        with tags(*vendor):
            state = await tasks[name](group, return_state=True)
        if state.is_completed():
            return
        reason = await _state_reason(state)
        results = group.effects[name]
        for lead in group.decided():
            last = group.errors.get((name, lead.id))
            error = _reason(last) if last is not None else reason
            results.setdefault(lead.id, BranchResult(status=BranchStatus.FAILED, error=error))

    with about(group, decided=True):
        async with runtime.once.holding(group.token):
            await asyncio.gather(*(branch(name) for name in BRANCHES))


async def settle(group: Group, runtime: Runtime) -> None:
    """Mark the leads whose every side effect is done, keep the failed side effects
    for `leadflow replay`, and log each lead's outcome."""
    finished, failures = [], []
    for lead in group.decided():
        branches = {b: group.effects[b][lead.id] for b in BRANCHES}
        failed = {b: r for b, r in branches.items() if r.status is BranchStatus.FAILED}
        unrecorded = any(r.detail == UNRECORDED for r in branches.values())
        if not failed and not unrecorded:
            finished.append(lead)
        failures += [
            FailedEffect(
                branch=b,
                once_key=once_key(EFFECT_OF_BRANCH[b], lead),
                scope=effect_scope(runtime, EFFECT_OF_BRANCH[b]),
                reason=r.error or "failed",
                lead=lead,
                decision=group.decisions[lead.id],
            )
            for b, r in failed.items()
        ]
    await durably(runtime, "mark leads done", runtime.decisions.mark_done, finished)
    await durably(runtime, "keep failed side effects", runtime.failed_effects.record, failures)
    results = group.results()
    with about(group):
        for result in results:
            _log_result(result, one=len(results) == 1)
        if len(results) != 1:
            log.info(
                "group processed",
                decided=len(group.decisions),
                done_before=len(group.done_before),
                failed=sum(bool(FailedBranch.all_in(r)) for r in results),
                total_ms=round(_ms(group.started), 1),
            )


def _log_result(result: EngineResult, *, one: bool) -> None:
    """Each lead's outcome: at INFO for a group of one (a real-time or manual lead), at
    DEBUG within a bigger group (the group's line is at INFO), failures at WARNING."""
    if isinstance(result, LeadOutcome):
        emit = log.warning if not result.ok else (log.info if one else log.debug)
        emit(
            "lead processed",
            lead_id=result.lead_id,
            rep=result.decision.rep,
            tier=result.decision.tier,
            score=result.decision.score,
            rule=result.decision.assignment_rule,
            failed=sorted(result.failed_branches) or None,
        )
    elif isinstance(result, FailedBranch):
        log.warning("lead failed", lead_id=result.lead_id, step=result.branch, error=result.reason)


async def run_group(group: Group, runtime: Runtime) -> list[EngineResult]:
    """One group through every step, inside the current flow run (if any)."""
    await prepare(group, runtime)
    await decide_step(group, runtime)
    await fan_out(group, runtime)
    await settle(group, runtime)
    return group.results()


class Pipeline:
    """Groups through the steps, overlapped: up to `in_flight` groups at once, each
    looked up as soon as it arrives, decided in submission order, then fanned out.
    `on_done(group)` is called as each group settles (in whatever order they end)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        in_flight: int,
        on_done: Callable[[Group], Awaitable[None]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.on_done = on_done
        self._slots = asyncio.Semaphore(in_flight)
        self._submitted = 0
        self._decided = 0
        self._turn = asyncio.Condition()
        self._running: set[asyncio.Task] = set()

    async def wait_for_room(self) -> None:
        """Wait until a group can start at once (for a caller that decides what to
        submit only then: a file reads the mode when its next group can start)."""
        await self._slots.acquire()
        self._slots.release()

    async def submit(self, group: Group) -> None:
        """Start `group`; waits while `in_flight` groups are in the pipeline."""
        await self._slots.acquire()
        seq, self._submitted = self._submitted, self._submitted + 1
        running = asyncio.create_task(self._run(group, seq), name=f"group-{group.number}")
        self._running.add(running)
        running.add_done_callback(self._running.discard)

    async def _run(self, group: Group, seq: int) -> None:
        try:
            failure: Exception | None = None
            try:
                await prepare(group, self.runtime)
            except Exception as exc:
                failure = exc
            async with self._turn:  # decisions are made in submission order
                await self._turn.wait_for(lambda: self._decided == seq)
            try:
                if failure is None:
                    await decide_step(group, self.runtime)
            except Exception as exc:
                failure = exc
            finally:
                async with self._turn:
                    self._decided += 1
                    self._turn.notify_all()
            if failure is not None:
                raise failure
            await fan_out(group, self.runtime)
            await settle(group, self.runtime)
        except Exception as exc:  # not a lead's failure: the engine's (a bug, the database)
            log.error("group failed", group=group.number, error=_reason(exc))
            for lead in group.leads:
                if lead.id not in group.done_before and lead.id not in group.stopped:
                    group.decisions.pop(lead.id, None)
                    group.stop(lead, "pipeline", exc)
        finally:
            self._slots.release()
        if self.on_done is not None:
            await self.on_done(group)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def drain(self) -> None:
        """Wait for every submitted group to settle."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def cancel(self) -> None:
        for running in list(self._running):
            running.cancel()
        await asyncio.gather(*list(self._running), return_exceptions=True)


async def run_leads(
    runtime: Runtime, leads: Sequence[Lead], *, size: int | None = None
) -> list[EngineResult]:
    """Leads through the pipeline in groups of `size` (the batch size by default),
    inside the current flow run; one result per lead, in input order. Leads with the
    same id are run once (the first), answered for each."""
    first: dict[str, Lead] = {}
    for lead in leads:
        first.setdefault(lead.id, lead)
    unique = list(first.values())
    size = size or runtime.settings.pipeline.batch_size
    by_id: dict[str, EngineResult] = {}

    async def done(group: Group) -> None:
        by_id.update({result.lead_id: result for result in group.results()})

    pipeline = Pipeline(runtime, in_flight=runtime.settings.pipeline.concurrency, on_done=done)
    for number, start in enumerate(range(0, len(unique), size), start=1):
        await pipeline.submit(Group(unique[start : start + size], number=number))
    await pipeline.drain()
    return [by_id[lead.id] for lead in leads]
