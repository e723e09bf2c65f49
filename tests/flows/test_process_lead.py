"""process_lead under a real Prefect API: order, overlap, isolation, retries, once-only."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import sqlalchemy as sa
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from leadflow.app.runtime import use_runtime
from leadflow.db import get_engine
from leadflow.flows.lead import BranchesFailedError, InvalidLeadError, process_lead
from leadflow.intake import quarantine
from leadflow.integrations.errors import PermanentError, TransientError
from leadflow.integrations.local_crm import LocalCRM, contacts
from leadflow.integrations.sql_events import SqlEventSink
from leadflow.logging import add_run_ids
from leadflow.models import BranchStatus
from tests.support.builders import raw_lead as record
from tests.support.fakes import MemoryCRM, MemoryEventSink, MemoryNotifier, memory_adapters

pytestmark = pytest.mark.usefixtures("prefect_api")


async def count(database_url: str, table: sa.Table, **where) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with get_engine(database_url).connect() as connection:
        return (await connection.execute(query)).scalar_one()


# --- tests -------------------------------------------------------------------------


async def test_steps_run_in_order_and_report_durations(make_runtime):
    crm = MemoryCRM()
    runtime = make_runtime(crm=crm)
    with use_runtime(runtime), capture_logs(processors=[merge_contextvars, add_run_ids]) as logs:
        outcome = await process_lead(record("order@acme.test", demo_requested="yes"))

    assert crm.calls == ["look_up", "update_crm"]
    names = [step.step for step in outcome.steps]
    assert names[:5] == ["validate", "look_up", "score", "follow_up", "assign"]
    assert set(names[5:]) == {"update_crm", "notify_team", "log_event"}
    assert all(step.duration_ms > 0 for step in outcome.steps)
    logged = {entry["step"]: entry for entry in logs if entry["event"] == "step"}
    assert set(logged) == set(names)
    assert all(entry["lead_id"] == outcome.lead_id for entry in logged.values())
    assert all("flow_run_id" in entry for entry in logged.values())
    decision = outcome.decision
    assert decision.tier == "hot" and decision.follow_up == "call" and decision.sla_minutes == 15
    assert sum(reason.points for reason in decision.score_reasons) == decision.score
    assert decision.assignment_rule == "territory:north-america/round_robin:na"


async def test_the_three_branches_run_at_the_same_time(make_runtime):
    barrier = asyncio.Barrier(3)
    runtime = make_runtime(
        crm=MemoryCRM(gates={"update_crm": barrier}),
        notifier=MemoryNotifier(gates={"notify_team": barrier}),
        event_sink=MemoryEventSink(gates={"log_event": barrier}),
    )
    with use_runtime(runtime):
        outcome = await process_lead(record("overlap@acme.test"))
    # Had any branch waited for another, the barrier would never have opened and
    # every branch would have timed out.
    assert {r.status for r in outcome.branches.values()} == {BranchStatus.OK}


async def test_a_failing_branch_fails_the_run_and_spares_the_others(make_runtime):
    forbidden = PermanentError("chat notify: HTTP 403 from POST /hooks")
    notifier = MemoryNotifier(failures={"notify_team": [forbidden, forbidden]})
    adapters = {**memory_adapters(), "notifier": notifier}
    runtime = make_runtime(**adapters)
    with use_runtime(runtime):
        state = await process_lead(record("isolated@acme.test"), return_state=True)
    assert state.is_failed()
    error = await state.aresult(raise_on_failure=False)
    assert isinstance(error, BranchesFailedError)
    assert "notify_team" in str(error) and "403" in str(error)
    outcome = error.outcome
    assert outcome.failed_branches.keys() == {"notify_team"}
    assert outcome.branches["update_crm"].status is BranchStatus.OK
    assert outcome.branches["log_event"].status is BranchStatus.OK
    assert notifier.calls.count("notify_team") == 1  # a permanent error is not retried
    assert len(notifier.alerts) == 1  # and the failed run is reported
    assert list(adapters["crm"].kept) == ["isolated@acme.test"]
    assert [e.lead_id for e in adapters["event_sink"].events.values()] == [outcome.lead_id]


async def test_a_transient_look_up_error_is_retried(make_runtime):
    timeout = TransientError("crm look-up: ReadTimeout")
    flaky = MemoryCRM(failures={"look_up": [timeout, timeout]})
    runtime = make_runtime(crm=flaky)
    with use_runtime(runtime):
        outcome = await process_lead(record("flaky@acme.test"))
    assert flaky.calls == ["look_up"] * 3 + ["update_crm"]
    assert outcome.ok


async def test_a_rerun_repeats_no_side_effect(make_runtime):
    adapters = memory_adapters()
    runtime = make_runtime(**adapters)
    with use_runtime(runtime):
        first = await process_lead(record("twice@acme.test"))
        second = await process_lead(record("twice@acme.test"))
    assert {r.status for r in first.branches.values()} == {BranchStatus.OK}
    assert {r.status for r in second.branches.values()} == {BranchStatus.SKIPPED}
    assert second.decision.rep == first.decision.rep
    # each side effect was asked for once, over both runs
    # the rerun is answered from the decisions store: not even a look-up
    assert Counter(adapters["crm"].calls) == {
        "look_up": 1,
        "update_crm": 1,
        "notify_team": 1,
        "log_event": 1,
    }


async def test_a_task_retried_after_its_side_effect_does_not_repeat_it(make_runtime):
    """Sent, then the reply is lost: the retry sends with the same idempotency key,
    so the vendor keeps one message."""
    lost = TransientError("notify: ReadTimeout")
    notifier = MemoryNotifier(failures={"notify_team": [lost]}, after=True)
    runtime = make_runtime(notifier=notifier)
    with use_runtime(runtime):
        outcome = await process_lead(record("retried@acme.test"))
    assert notifier.calls == ["notify_team", "notify_team"]
    assert outcome.branches["notify_team"].status is BranchStatus.OK
    assert len(notifier.sent) == 2 and len(notifier.kept) == 1


async def test_a_new_database_is_a_new_target(make_runtime, tmp_path):
    """The once-only key includes where the side effect lands, so pointing leadflow
    at a fresh database does not skip the work there."""
    runtime = make_runtime()
    with use_runtime(runtime):
        await process_lead(record("moved@acme.test"))
    other_url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    moved = make_runtime(crm=LocalCRM(other_url, None), event_sink=SqlEventSink(other_url))
    with use_runtime(moved):
        outcome = await process_lead(record("moved@acme.test"))
    assert outcome.branches["update_crm"].status is BranchStatus.OK
    assert outcome.branches["log_event"].status is BranchStatus.OK
    assert outcome.branches["notify_team"].status is BranchStatus.SKIPPED
    assert await count(other_url, contacts, email="moved@acme.test") == 1


async def test_a_bad_record_is_set_aside_and_the_run_fails_naming_the_field(runtime):
    state = await process_lead(
        {"email": "nobody-at-all", "company": "Acme"}, origin="webhook", return_state=True
    )
    assert state.is_failed()
    error = await state.aresult(raise_on_failure=False)
    assert isinstance(error, InvalidLeadError)
    assert "email" in str(error) and "nobody-at-all" in str(error)
    assert await count(runtime.settings.database_url, quarantine, origin="webhook") == 1


async def test_owner_of_an_existing_contact_gets_the_lead(make_runtime):
    with use_runtime(make_runtime(**memory_adapters())):
        outcome = await process_lead(record("hank.scorpio@globex.test", title="CEO"))
    assert outcome.decision.rep == "frank@example.com"
    assert outcome.decision.assignment_rule == "crm_owner:contact"


async def test_log_lines_reach_the_prefect_api_under_their_runs(make_runtime):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from leadflow.logging import configure_logging
    from leadflow.settings import LogSettings

    configure_logging(LogSettings(format="json"))
    runtime = make_runtime()
    with use_runtime(runtime):
        state = await process_lead(record("logged@acme.test"), return_state=True)
    flow_run_id = state.state_details.flow_run_id
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    ours = [entry for entry in logs if entry.name.startswith("leadflow")]
    steps = [entry for entry in ours if entry.message.startswith("step ")]
    assert len(steps) == 8  # validate, look_up, score, follow_up, assign and 3 branches
    lead_line = next(entry for entry in ours if "lead processed" in entry.message)
    assert "lead=logged@acme.test" in lead_line.message and lead_line.task_run_id is None
    task_lines = [entry for entry in ours if "crm updated" in entry.message]
    assert len(task_lines) == 1 and task_lines[0].task_run_id is not None
