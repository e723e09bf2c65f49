"""The one engine under a real Prefect API and a real SQLite database: bad records set
aside, side effects once only across retries and reruns, a failing lead failing alone,
retries resending only what failed, groups overlapped, the same decisions whatever
the group size, claims of a dead holder sent again under the same key, every task run
finished on the server."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from leadflow.app.runtime import use_runtime
from leadflow.db import get_engine
from leadflow.flows.files import process_file
from leadflow.flows.settle import settle
from leadflow.flows.summary import LeadsFailedError
from leadflow.intake import quarantine
from leadflow.integrations.errors import TransientError
from leadflow.integrations.local_crm import LocalCRM
from leadflow.integrations.sql_events import lead_events
from leadflow.integrations.terminal_notifier import TerminalNotifier
from tests.support.builders import lead_rows as leads
from tests.support.builders import write_csv
from tests.support.fakes import MemoryCRM, MemoryNotifier
from tests.support.paths import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_api")


def outbox(tmp_path: Path) -> Counter[str]:
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    return Counter(json.loads(line)["email"] for line in lines)


def kept(notifier: MemoryNotifier) -> Counter[str]:
    """Messages the notifier's vendor keeps, per lead email."""
    return Counter(lead.email for lead in notifier.kept.values())


async def count(database_url: str, table: sa.Table) -> int:
    async with get_engine(database_url).connect() as connection:
        return (await connection.execute(sa.select(sa.func.count()).select_from(table))).scalar()


async def test_a_file_in_batches_sets_bad_records_aside_and_does_each_side_effect_once(
    runtime, tmp_path
):
    rows = leads(10)
    rows.insert(2, rows[1])  # row 4: the same person as row 3: merged into it
    rows.insert(4, ["", "Engineer", "US", "40", "webinar"])  # row 6: no email
    rows.insert(7, ["bad-at-co.test", "Analyst", "DE", "40", "website"])  # row 9: bad email
    path = write_csv(tmp_path / "leads.csv", rows)

    state = await process_file(path=path, batch_size=4, return_state=True)
    summary = await state.aresult()

    assert summary.records == 13 and summary.processed == 10 and summary.groups == 3
    assert {s.position: s.reason.split(":")[0] for s in summary.set_aside} == {
        6: "email",
        9: "email",
    }
    assert [(m.position, m.into_row) for m in summary.merged] == [(4, 3)]
    assert summary.failed == [] and summary.already_done == 0
    assert sum(summary.by_tier.values()) == 10 and sum(summary.by_rep.values()) == 10
    url = runtime.settings.database_url
    assert await count(url, quarantine) == 2  # a merged row is not bad
    assert await count(url, lead_events) == 10
    assert outbox(tmp_path) == {f"b{i}@co{i}.test": 1 for i in range(10)}

    # Every task run of the flow run reaches a final state on the server: five per batch
    # of 4 leads (the 10 people after the merge).
    flow_run_id = state.state_details.flow_run_id
    assert await settle(flow_run_id)
    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    assert len(task_runs) == 15
    assert all(run.state.is_completed() for run in task_runs)

    # The rerun answers every lead from the decisions store: no task run at all.
    rerun = await process_file(path=path, batch_size=3, return_state=True)
    again = await rerun.aresult()
    assert again.processed == 10 and again.already_done == 10
    assert await settle(rerun.state_details.flow_run_id)
    async with get_client() as client:
        rerun_tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[rerun.state_details.flow_run_id])
            )
        )
    assert rerun_tasks == []
    assert outbox(tmp_path) == {f"b{i}@co{i}.test": 1 for i in range(10)}
    assert await count(url, lead_events) == 10


async def test_a_failing_lead_fails_alone_and_a_rerun_does_only_what_failed(make_runtime, tmp_path):
    notifier = MemoryNotifier(refuse={"refused@co.test"})
    runtime = make_runtime(notifier=notifier)
    rows = leads(5)
    rows.insert(2, ["refused@co.test", "VP Sales", "US", "40", "webinar"])
    path = write_csv(tmp_path / "mixed.csv", rows)

    with use_runtime(runtime):
        state = await process_file(path=path, batch_size=10, return_state=True)
        assert state.is_failed()
        error = await state.aresult(raise_on_failure=False)
        assert isinstance(error, LeadsFailedError)
        (failed,) = error.summary.failed
        assert failed.branch == "notify_team" and "400" in failed.reason
        assert error.summary.processed == 6
        assert kept(notifier) == {f"b{i}@co{i}.test": 1 for i in range(5)}
        assert await count(runtime.settings.database_url, lead_events) == 6

        notifier.refuse.clear()  # the cause is fixed: rerun the file
        again = await process_file(path=path, batch_size=10)
    await runtime.aclose()
    assert again.failed == [] and again.already_done == 5
    assert kept(notifier) == {"refused@co.test": 1, **{f"b{i}@co{i}.test": 1 for i in range(5)}}


async def test_a_retry_resends_only_the_leads_whose_call_failed(make_runtime, tmp_path):
    lost = TransientError("crm: HTTP 503 after the write")
    crm = MemoryCRM(failures={"update_crm": [lost]}, after=True)
    runtime = make_runtime(crm=crm)
    path = write_csv(tmp_path / "flaky.csv", leads(6, "f"))
    with use_runtime(runtime):
        summary = await process_file(path=path, batch_size=3)
    await runtime.aclose()
    assert summary.failed == [] and summary.processed == 6
    # one write's reply was lost: that lead is written again with the same key, and
    # no other lead of its group is sent twice
    assert sorted(crm.upserts.values()) == [1, 1, 1, 1, 1, 2]
    keys = {email: {k for e, k in crm.written if e == email} for email in crm.upserts}
    assert all(len(k) == 1 for k in keys.values()), keys


async def test_groups_overlap_and_are_decided_in_file_order(make_runtime, tmp_path):
    calls: list[tuple[str, int, float]] = []

    class SlowCRM(LocalCRM):
        async def look_up_many(self, leads):
            calls.append(("look_up", int(leads[0].email[1:].split("@")[0]), time.monotonic()))
            return await super().look_up_many(leads)

    class SlowNotifier(TerminalNotifier):
        async def notify_many(self, items):
            first = int(items[0][0].email[1:].split("@")[0])
            calls.append(("notify_start", first, time.monotonic()))
            await asyncio.sleep(0.5)
            await super().notify_many(items)
            calls.append(("notify_end", first, time.monotonic()))

    url = f"sqlite+aiosqlite:///{tmp_path / 'leadflow.db'}"
    runtime = make_runtime(
        crm=SlowCRM(url, EXAMPLES / "crm_seed.json"),
        notifier=SlowNotifier(tmp_path / "outbox.jsonl", echo=False),
    )
    path = write_csv(tmp_path / "pipe.csv", leads(9, "p"))
    with use_runtime(runtime):
        summary = await process_file(path=path, batch_size=3)
    await runtime.aclose()
    assert summary.processed == 9
    at = {(kind, first): moment for kind, first, moment in calls}
    # group 2 (leads 3..5) was looked up while group 1 (leads 0..2) was notifying
    assert at[("look_up", 3)] < at[("notify_end", 0)]
    # and the groups were decided in file order: the round robin's picks follow it
    starts = [first for kind, first, _ in calls if kind == "notify_start"]
    assert starts == [0, 3, 6]


def _runtime_in(folder: Path, **pipeline):
    """An embedded-adapter runtime with its own database and outbox in `folder`."""
    from leadflow.app.runtime import build_runtime
    from leadflow.integrations.rules_scorer import RulesScorer
    from leadflow.integrations.sql_events import SqlEventSink
    from leadflow.rules import load_rules
    from tests.support.builders import make_settings

    folder.mkdir(parents=True, exist_ok=True)
    settings = make_settings(folder, **pipeline)
    rules = load_rules(settings.rules_path)
    return build_runtime(
        settings,
        rules=rules,
        crm=LocalCRM(settings.database_url, EXAMPLES / "crm_seed.json"),
        notifier=TerminalNotifier(folder / "outbox.jsonl", echo=False),
        event_sink=SqlEventSink(settings.database_url),
        scorer=RulesScorer(rules.scoring),
    )


def _sent(folder: Path) -> dict[str, tuple[str, str]]:
    """email -> (rep, idempotency key) of each notification in the outbox."""
    lines = (folder / "outbox.jsonl").read_text().splitlines()
    return {m["email"]: (m["to"], m["key"]) for m in map(json.loads, lines)}


async def test_a_group_of_one_and_a_group_of_100_decide_and_send_the_same(tmp_path):
    path = EXAMPLES / "leads.csv"
    outcomes = {}
    for size in (1, 100):
        runtime = _runtime_in(tmp_path / f"size-{size}")
        with use_runtime(runtime):
            await runtime.prepare_stores()
            summary = await process_file(path=path, batch_size=size, concurrency=4)
        await runtime.aclose()
        outcomes[size] = (summary.by_tier, summary.by_rep, _sent(tmp_path / f"size-{size}"))
    assert outcomes[1][2] and outcomes[1] == outcomes[100]


async def test_a_dead_holders_claim_is_sent_again_under_its_key_and_counted(tmp_path):
    """A process claimed a lead's notification and was killed before the vendor
    answered: the next run must send it (not count it done), with the same key."""
    from leadflow.flows.engine import effect_key
    from leadflow.once import OnceStore

    notifier = MemoryNotifier()
    runtime = _runtime_in(tmp_path, claim_lease_seconds=0.5)
    runtime.adapters = runtime.adapters.__class__(
        **{**vars(runtime.adapters), "notifier": notifier}
    )
    path = write_csv(tmp_path / "one.csv", leads(2, "d"))
    with use_runtime(runtime):
        await runtime.prepare_stores()
        from leadflow.flows.batch_intake import StreamedIntake
        from leadflow.flows.files import open_contents

        intake = StreamedIntake(open_contents(path, runtime))
        intake.count()
        (piece,) = list(intake.pieces(10))
        dead = OnceStore(runtime.settings.database_url, lease=timedelta(seconds=0.5))
        await dead.claim([effect_key(runtime, "notify", piece.leads[0])])  # then "killed"
        summary = await process_file(path=path)
    await runtime.aclose()
    assert summary.failed == [] and summary.resent == 1
    assert kept(notifier) == {"d0@co0.test": 1, "d1@co1.test": 1}


async def test_a_lead_decided_but_not_finished_keeps_its_decision_on_the_rerun(
    make_runtime, tmp_path
):
    notifier = MemoryNotifier(refuse={"b0@co0.test"})
    runtime = make_runtime(notifier=notifier)
    first = write_csv(tmp_path / "first.csv", leads(1))
    others = write_csv(tmp_path / "others.csv", leads(6, "o"))
    with use_runtime(runtime):
        failed = await process_file(path=first, return_state=True)
        assert failed.is_failed()
        (stored,) = (await runtime.decisions.find([await _lead_of(runtime, first)])).values()
        assert not stored.done
        await process_file(path=others)  # the round robin moves on meanwhile
        notifier.refuse.clear()
        again = await process_file(path=first)
    await runtime.aclose()
    assert again.failed == [] and again.by_rep == {stored.decision.rep: 1}
    ((lead, _key),) = [sent for sent in notifier.sent if sent[0].email == "b0@co0.test"]
    assert lead.email == "b0@co0.test"


async def _lead_of(runtime, path: Path):
    from leadflow.flows.batch_intake import StreamedIntake
    from leadflow.flows.files import open_contents

    intake = StreamedIntake(open_contents(path, runtime))
    intake.count()
    (piece,) = list(intake.pieces(10))
    return piece.leads[0]
