"""`Runtime.open`: the lifecycle every command goes through, once.

Entering creates the stores' tables and puts the runtime in place for flows; leaving
waits until the Prefect server has recorded the runs started through `run_flow`,
closes the adapters and disposes the database engines."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from leadflow import db
from leadflow.app.runtime import Runtime
from leadflow.flows import context
from leadflow.flows.context import current_runtime
from leadflow.flows.lead import process_lead
from leadflow.integrations.local_crm import LocalCRM
from leadflow.integrations.rules_scorer import RulesScorer
from leadflow.integrations.sql_events import SqlEventSink
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.rules import load_rules
from tests.support.builders import make_settings
from tests.support.paths import EXAMPLES


class ClosingNotifier(TerminalNotifier):
    def __init__(self, outbox: Path) -> None:
        super().__init__(outbox, echo=False)
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


def _open(tmp_path: Path, notifier: ClosingNotifier):
    settings = make_settings(tmp_path)
    rules = load_rules(settings.rules_path)
    return Runtime.open(
        settings,
        rules=rules,
        crm=LocalCRM(settings.database_url, EXAMPLES / "crm_seed.json"),
        notifier=notifier,
        event_sink=SqlEventSink(settings.database_url),
        scorer=RulesScorer(rules.scoring),
    )


def _tables(tmp_path: Path) -> set[str]:
    with sqlite3.connect(tmp_path / "leadflow.db") as connection:
        rows = connection.execute("select name from sqlite_master where type = 'table'")
        return {name for (name,) in rows}


async def test_open_prepares_the_stores_and_closes_everything(tmp_path: Path) -> None:
    notifier = ClosingNotifier(tmp_path / "outbox.jsonl")
    async with _open(tmp_path, notifier) as runtime:
        assert current_runtime() is runtime
        wanted = {"quarantine", "round_robin_credit", "lead_decisions", "side_effect_claims"}
        assert wanted | {"lead_inbox"} <= _tables(tmp_path)
    assert notifier.closed == 1
    assert context._in_place.get() is None
    assert asyncio.get_running_loop() not in db._engines


async def test_a_flow_run_is_recorded_in_full_when_the_runtime_closes(
    prefect_api, tmp_path: Path
) -> None:
    notifier = ClosingNotifier(tmp_path / "outbox.jsonl")
    async with _open(tmp_path, notifier) as runtime:
        state = await runtime.run_flow(
            process_lead, record={"email": "ada@example.org", "title": "CTO"}
        )
        outcome = await state.aresult()
    assert outcome.ok
    run_id = state.state_details.flow_run_id
    async with get_client() as client:
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    # look-up, decide and the three side effects, all recorded as finished
    assert len(tasks) == 5
    assert all(task.state is not None and task.state.is_final() for task in tasks)
    assert notifier.closed == 1
