"""Faults at the pipeline level: each side-effecting HTTP adapter, in its place in a
real `process_lead` run on a real Prefect API, against a loopback stub vendor.

- A burst of transient faults (5xx, a reset, a hang, a dripping body, a 429) is
  absorbed within the retry budget: every branch ends ok, and the vendor holds the
  side effect once (for chat vendors, which keep every message: one message).
- A vendor that stays down longer than the retries fails its own branch only: the
  lead's other two side effects are done, the failure is recorded with its reason,
  and `replay_side_effects` does it once when the vendor is back; a second replay
  and a rerun of the lead do nothing more.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from leadflow.app.runtime import use_runtime
from leadflow.failed_effects import DONE_BEFORE, REPLAYED, FailedEffects
from leadflow.flows.lead import BRANCHES, BranchesFailedError, process_lead
from leadflow.flows.replay_effects import replay_side_effects
from leadflow.loopback_vendor import Fault, FaultServer
from leadflow.models import BranchStatus, LeadOutcome
from tests.support.builders import webhook_record as record
from tests.support.vendors import TIMEOUT, VENDORS, Vendor

pytestmark = pytest.mark.usefixtures("prefect_api")

BURST = (
    lambda: Fault.status_code(500),
    Fault.reset,
    lambda: Fault.hang(TIMEOUT * 2),
    lambda: Fault.drip(TIMEOUT * 4),
    lambda: Fault.retry_after("0"),
)
BUDGET = {"retries": len(BURST), "retry_backoff_seconds": 0.05, "retry_jitter_factor": 0}
BRANCH_OF_KIND = {"crm": "update_crm", "notifier": "notify_team", "event_sink": "log_event"}


@pytest.fixture
async def runtime_for(make_runtime, vendor: Vendor, server: FaultServer):
    """The embedded adapters with `vendor`'s adapter in its place, at `server`."""
    built = make_runtime(**{vendor.kind: vendor.build(server.base_url)}, pipeline=BUDGET)
    with use_runtime(built):
        yield built
    await built.aclose()


async def outcome_of(raw: dict[str, Any]) -> LeadOutcome:
    state = await process_lead(raw, return_state=True)
    if state.is_completed():
        return await state.aresult()
    exc = await state.aresult(raise_on_failure=False)
    assert isinstance(exc, BranchesFailedError), exc
    return exc.outcome


def effects_of(vendor: Vendor, server: FaultServer, email: str) -> tuple[int, int]:
    """(effects the vendor keeps, write requests it acted on) for one lead."""
    keys, requests = set(), 0
    for request in server.processed():
        found = vendor.effects(request, {email})
        keys.update(key for key, _who in found)
        requests += bool(found)
    return len(keys), requests


async def test_a_burst_of_transient_faults_is_absorbed(
    vendor: Vendor, server: FaultServer, runtime_for
) -> None:
    raw = record(f"burst-{vendor.id.replace('.', '-')}")
    server.inject(*(make() for make in BURST))
    outcome = await outcome_of(raw)
    assert {n: b.status for n, b in outcome.branches.items()} == dict.fromkeys(
        BRANCHES, BranchStatus.OK
    ), outcome.failed_branches
    assert server.pending_faults == 0 and sum(server.faults_given().values()) == len(BURST)
    assert effects_of(vendor, server, raw["email"].lower()) == (1, 1)


async def test_a_vendor_down_fails_its_branch_only_and_is_replayed_once(
    vendor: Vendor, server: FaultServer, runtime_for
) -> None:
    raw = record(f"down-{vendor.id.replace('.', '-')}")
    email = raw["email"].lower()
    mine = BRANCH_OF_KIND[vendor.kind]
    server.down = True
    outcome = await outcome_of(raw)
    assert outcome.branches[mine].status is BranchStatus.FAILED
    assert "503" in outcome.branches[mine].error
    assert all(b.status is BranchStatus.OK for n, b in outcome.branches.items() if n != mine)
    assert server.faults_given()["vendor_down"] == 1 + BUDGET["retries"]
    assert effects_of(vendor, server, email) == (0, 0)

    failures = await FailedEffects(runtime_for.settings.database_url).open()
    assert [(f.branch, f.lead.email) for f in failures] == [(mine, email)]
    assert "503" in failures[0].reason

    server.down = False
    report = await replay_side_effects()
    assert [(e.branch, e.result) for e in report.effects] == [(mine, REPLAYED)]
    assert effects_of(vendor, server, email) == (1, 1)

    again = await replay_side_effects()
    assert again.effects == []
    rerun = await outcome_of(raw)
    assert rerun.ok
    assert effects_of(vendor, server, email) == (1, 1), "a rerun after the replay repeated it"


async def test_a_side_effect_done_by_a_rerun_is_not_replayed(make_runtime, prefect_api) -> None:
    """The vendor came back and the file was rerun before anyone replayed: the replay
    finds the side effect done (Prefect's cache under the once-only key) and closes
    the failure without calling the vendor."""
    vendor = next(v for v in VENDORS if v.id == "notifier.webhook")
    with FaultServer(vendor.ok()) as server:
        runtime = make_runtime(notifier=vendor.build(server.base_url), pipeline=BUDGET)
        with use_runtime(runtime):
            raw = record("rerun-first")
            server.down = True
            assert not (await outcome_of(raw)).ok
            server.down = False
            assert (await outcome_of(raw)).ok
            report = await replay_side_effects()
        await runtime.aclose()
    assert [(e.branch, e.result) for e in report.effects] == [("notify_team", DONE_BEFORE)]
    assert effects_of(vendor, server, raw["email"]) == (1, 1)


async def test_retry_after_as_an_http_date_is_waited_out(make_runtime, prefect_api) -> None:
    vendor = next(v for v in VENDORS if v.id == "notifier.webhook")
    with FaultServer(vendor.ok()) as server:
        runtime = make_runtime(notifier=vendor.build(server.base_url), pipeline=BUDGET)
        with use_runtime(runtime):
            raw = record("retry-after-date")
            server.inject(Fault.retry_after_date(2))
            began = time.monotonic()
            outcome = await outcome_of(raw)
            took = time.monotonic() - began
        await runtime.aclose()
    assert outcome.ok
    first, second = [r for r in server.received if r.request.method == "POST"][:2]
    assert first.fault == "429_http_date" and second.fault is None
    assert took >= 1.0  # the date is 2 s ahead at whole-second precision
    assert effects_of(vendor, server, raw["email"]) == (1, 1)
