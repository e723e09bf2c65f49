"""Every way in reads the mode as it takes leads in: `process-file` (per group) and
`process-lead` on a real Prefect API, with the embedded adapters, in each mode; a
switch in the middle of a file; and the `mode:` tag on the runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client

from leadflow.app.runtime import use_runtime
from leadflow.db import ensure_tables
from leadflow.flows.files import process_file
from leadflow.flows.lead import process_lead
from leadflow.flows.mode import ModeError, set_mode
from leadflow.flows.summary import AlreadyDone, LeftToCurrentProcess
from leadflow.integrations.local_crm import contacts
from leadflow.integrations.sql_events import lead_events
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.models import Decision, LeadOutcome
from leadflow.shadow_settings import ShadowSettings
from leadflow.shadow_store import ComparisonStore
from tests.support.fakes import MemoryNotifier
from tests.support.paths import EXAMPLES

LEGACY = "python:examples.legacy.process:decide"
SEEDED_CONTACTS = 3


# A clean mode Variable and cache, the shadow store in tmp_path, the mode re-read
# before every lead.
pytestmark = pytest.mark.usefixtures("mode_variable")


def first_rows(tmp_path, n: int):
    path = tmp_path / "leads.csv"
    path.write_text("".join(EXAMPLES.joinpath("leads.csv").read_text().splitlines(True)[: n + 1]))
    return path


class SwitchingNotifier(TerminalNotifier):
    """Notifies for real (into the outbox the effects are counted from), and flips the
    mode to `legacy` after the third lead: the operator's kill switch, thrown in the
    middle of a file."""

    def __init__(self, path) -> None:
        super().__init__(path, echo=False)
        self.sent = 0

    async def notify(self, lead, decision, *, idempotency_key):
        await super().notify(lead, decision, idempotency_key=idempotency_key)
        self.sent += 1
        if self.sent == 3:
            await set_mode("legacy")


class Effects:
    """What leadflow did for real: notifications in the outbox, CRM contacts, events."""

    def __init__(self, runtime, tmp_path) -> None:
        self.url = runtime.settings.database_url
        self.outbox = tmp_path / "outbox.jsonl"

    async def _count(self, table: sa.Table) -> int:
        engine = await ensure_tables(self.url, table.metadata)
        async with engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(table)
            return (await connection.execute(query)).scalar()

    async def counts(self) -> tuple[int, int, int]:
        sent = len(self.outbox.read_text().splitlines()) if self.outbox.exists() else 0
        # the seed goes in with the first look-up, before any upsert
        upserted = max(await self._count(contacts) - SEEDED_CONTACTS, 0)
        return sent, upserted, await self._count(lead_events)


async def stored(kind: str | None = None):
    records = await ComparisonStore(ShadowSettings().database_url).in_window(
        datetime.now(UTC) - timedelta(hours=1)
    )
    return [r for r in records if kind is None or r.kind == kind]


async def run_tags(state) -> set[str]:
    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
    return set(run.tags)


async def test_legacy_mode_process_file_does_nothing_and_marks_nothing_done(make_runtime, tmp_path):
    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    path = first_rows(tmp_path, 6)
    await set_mode("legacy")
    with use_runtime(runtime):
        state = await process_file(path=path, return_state=True)
        summary = await state.aresult()
        assert summary.routes == {"current process": 6}
        assert summary.processed == 0 and summary.modes == ["legacy"]
        assert await effects.counts() == (0, 0, 0)
        assert await stored() == []  # legacy stores no comparison either
        assert "mode:legacy" in await run_tags(state)

        # Back to live: the leads were not marked done, so leadflow does them now.
        await set_mode("live")
        again = await process_file(path=path)
    await runtime.aclose()
    assert again.processed == 6 and again.already_done == 0 and again.routes == {}
    assert await effects.counts() == (6, 6, 6)


async def test_groups_in_legacy_mode_do_nothing(make_runtime, tmp_path):
    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    await set_mode("legacy")
    with use_runtime(runtime):
        summary = await process_file(path=first_rows(tmp_path, 5), batch_size=2)
    await runtime.aclose()
    assert summary.routes == {"current process": 5}
    assert await effects.counts() == (0, 0, 0)


async def test_kill_switch_in_the_middle_of_a_process_file_run(make_runtime, tmp_path):
    """Leads taken in before the switch finish; every lead taken in after it (groups of
    one, one at a time) is left to the current process and not marked done, so a later
    live run picks them up."""
    notifier = SwitchingNotifier(tmp_path / "outbox.jsonl")
    runtime = make_runtime(notifier=notifier)
    effects = Effects(runtime, tmp_path)
    path = first_rows(tmp_path, 8)
    await set_mode("live")
    with use_runtime(runtime):
        summary = await process_file(path=path, batch_size=1, concurrency=1)
        assert summary.modes == ["live", "legacy"]
        assert summary.routes == {"leadflow": 3, "current process": 5}
        assert await effects.counts() == (3, 3, 3)

        await set_mode("live")
        again = await process_file(path=path, batch_size=1, concurrency=1)
    await runtime.aclose()
    assert again.already_done == 3 and again.routes == {}
    assert await effects.counts() == (8, 8, 8)  # the five left, once each


class BatchSwitchingNotifier(SwitchingNotifier):
    """The kill switch after the third lead, on a group's bulk call."""

    async def notify_many(self, items):
        await super(SwitchingNotifier, self).notify_many(items)
        for _ in items:
            self.sent += 1
            if self.sent == 3:
                await set_mode("legacy")


async def test_kill_switch_in_the_middle_of_a_run_in_groups(make_runtime, tmp_path):
    """The mode is read as each group is taken in: groups already taken finish, the
    rest are left; nothing left is sent, and every lead is one or the other."""
    notifier = BatchSwitchingNotifier(tmp_path / "outbox.jsonl")
    runtime = make_runtime(notifier=notifier)
    effects = Effects(runtime, tmp_path)
    await set_mode("live")
    with use_runtime(runtime):
        summary = await process_file(path=first_rows(tmp_path, 24), batch_size=2, concurrency=1)
    await runtime.aclose()
    assert summary.modes == ["live", "legacy"]
    ours, left = summary.routes["leadflow"], summary.routes["current process"]
    assert left > 0 and ours >= 3
    assert ours + left + summary.set_aside_total + len(summary.merged) == summary.records == 24
    assert await effects.counts() == (ours, ours, ours) and notifier.sent == ours


async def test_pilot_leads_of_a_file_run_fall_back_when_leadflow_fails(
    make_runtime, tmp_path, monkeypatch
):
    monkeypatch.setenv("LEADFLOW_SHADOW__LEGACY", LEGACY)
    monkeypatch.setenv("LEADFLOW_SHADOW__PILOT_SHARE", "1.0")
    runtime = make_runtime(
        notifier=MemoryNotifier(failures={"notify_team": [RuntimeError("notifier down")] * 100}),
        pipeline={"retries": 0},
    )
    await set_mode("pilot")
    with use_runtime(runtime):
        summary = await process_file(path=first_rows(tmp_path, 3))
    await runtime.aclose()
    assert summary.routes == {"fallback": 3} and summary.failed == []
    assert [r.fallback for r in await stored("pilot")] == [True] * 3


async def test_shadow_mode_process_file_compares_and_does_nothing(
    make_runtime, tmp_path, monkeypatch
):
    monkeypatch.setenv("LEADFLOW_SHADOW__LEGACY", LEGACY)
    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    await set_mode("shadow")
    with use_runtime(runtime):
        state = await process_file(path=first_rows(tmp_path, 5), return_state=True)
        summary = await state.aresult()
        tags = await run_tags(state)
    await runtime.aclose()
    assert summary.routes == {"shadow": 5} and summary.processed == 0
    assert await effects.counts() == (0, 0, 0)
    shadowed = await stored("shadow")
    assert len(shadowed) == 5 and all(r.candidate and r.control for r in shadowed)
    assert all(set(r.intended) == {"crm", "notify", "event"} for r in shadowed)
    assert "mode:shadow" in tags


async def test_shadow_mode_without_a_current_process_fails_having_done_nothing(
    make_runtime, tmp_path, monkeypatch
):
    monkeypatch.delenv("LEADFLOW_SHADOW__LEGACY", raising=False)
    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    await set_mode("shadow")
    with use_runtime(runtime):
        state = await process_file(path=first_rows(tmp_path, 3), return_state=True)
    await runtime.aclose()
    assert state.is_failed()
    with pytest.raises(ModeError, match="LEADFLOW_SHADOW__LEGACY"):
        await state.aresult()
    assert await effects.counts() == (0, 0, 0)


async def test_pilot_mode_process_file_sends_only_the_pilot_share(
    make_runtime, tmp_path, monkeypatch
):
    monkeypatch.setenv("LEADFLOW_SHADOW__LEGACY", LEGACY)
    monkeypatch.setenv("LEADFLOW_SHADOW__PILOT_SHARE", "0.5")
    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    await set_mode("pilot")
    with use_runtime(runtime):
        summary = await process_file(path=first_rows(tmp_path, 10))
    await runtime.aclose()
    ours = summary.routes["leadflow"]
    assert set(summary.routes) == {"leadflow", "current process"}
    assert summary.processed == ours and sum(summary.by_tier.values()) == ours
    assert await effects.counts() == (ours, ours, ours)
    pilot = await stored("pilot")
    assert len(pilot) == ours and not any(r.fallback for r in pilot)


async def test_process_lead_follows_the_mode(make_runtime, tmp_path, monkeypatch):
    """One lead by hand (`leadflow lead`): legacy leaves the lead, shadow compares it
    with nothing sent, live processes it; each run tagged with its mode."""
    monkeypatch.setenv("LEADFLOW_SHADOW__LEGACY", LEGACY)
    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    record = json.loads(json.dumps({"email": "ada@bigco.com", "title": "CTO", "country": "US"}))
    results = {}
    with use_runtime(runtime):
        for mode in ("legacy", "shadow", "live"):
            await set_mode(mode)
            state = await process_lead(record=record, origin="webhook", return_state=True)
            results[mode] = (await state.aresult(), await run_tags(state))
            if mode != "live":
                assert await effects.counts() == (0, 0, 0)
    await runtime.aclose()
    legacy, legacy_tags = results["legacy"]
    assert isinstance(legacy, LeftToCurrentProcess) and legacy.route == "current process"
    shadow, shadow_tags = results["shadow"]
    assert shadow.route == "shadow"
    (compared,) = await stored("shadow")
    assert compared.outcome.value in ("matched", "mismatched")
    live, live_tags = results["live"]
    assert live.decision.tier and await effects.counts() == (1, 1, 1)
    assert "mode:legacy" in legacy_tags and "mode:shadow" in shadow_tags
    assert "mode:live" in live_tags


async def test_process_lead_in_pilot_mode_answers_a_lead_done_before_as_already_done(
    make_runtime, tmp_path, monkeypatch
):
    """What process_lead's annotation says it returns, in pilot mode: the pilot lead's
    outcome the first time, AlreadyDone (nothing run again) the second."""
    monkeypatch.setenv("LEADFLOW_SHADOW__LEGACY", LEGACY)
    monkeypatch.setenv("LEADFLOW_SHADOW__PILOT_SHARE", "1.0")
    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    record = {"email": "grace@bigco.com", "title": "CTO", "country": "US"}
    await set_mode("pilot")
    with use_runtime(runtime):
        first = await process_lead(record=record, origin="webhook")
        second = await process_lead(record=record, origin="webhook")
    await runtime.aclose()
    assert isinstance(first, LeadOutcome) and first.ok
    assert isinstance(second, AlreadyDone)
    assert (second.tier, second.rep) == (first.decision.tier, first.decision.rep)
    assert await effects.counts() == (1, 1, 1)


@pytest.fixture
def counted_legacy(monkeypatch):
    """The example current process, importable as python:shadow_counted_legacy:decide,
    counting the records it is asked about; its round robin starts afresh."""
    import sys
    import types
    from collections import Counter

    from examples.legacy import process

    monkeypatch.setattr(process, "_credit", {})
    module = types.ModuleType("shadow_counted_legacy")
    module.asked = Counter()

    def decide(record):
        module.asked[record["email"]] += 1
        return process.decide(record)

    module.decide = decide
    monkeypatch.setitem(sys.modules, "shadow_counted_legacy", module)
    monkeypatch.setenv("LEADFLOW_SHADOW__LEGACY", "python:shadow_counted_legacy:decide")
    return module


async def test_shadow_mode_asks_the_current_process_once_per_lead_and_again_when_it_comes_again(
    make_runtime, tmp_path, counted_legacy
):
    """Leads routed by the mode (a group at a time, as the receiver and the files do):
    the current process is asked once per lead (the noise baseline is `leadflow
    shadow`'s, not every group's), and a lead that comes again in the same run (a
    webhook sent twice) is compared again, decided afresh, not failed."""
    from prefect import flow

    from leadflow.flows.batch_intake import StreamedIntake
    from leadflow.flows.cutover import route_leads
    from leadflow.flows.files import open_contents

    runtime = make_runtime()
    effects = Effects(runtime, tmp_path)
    piece = StreamedIntake(open_contents(first_rows(tmp_path, 3), runtime)).whole()

    @flow
    async def twice() -> list:
        first = await route_leads(runtime, piece.leads, piece.rows, "shadow")
        return first + await route_leads(runtime, piece.leads, piece.rows, "shadow")

    with use_runtime(runtime):
        results = await twice()
    await runtime.aclose()
    assert [(r.route, r.mode) for r in results] == [("shadow", "shadow")] * 6
    assert sorted(counted_legacy.asked.values()) == [2, 2, 2]
    compared = await stored()
    assert [r.kind for r in compared] == ["shadow"] * 6  # no baseline
    assert len({r.run_id for r in compared}) == 1
    assert all(r.candidate and r.candidate_error is None for r in compared)
    assert all(set(r.intended) == {"crm", "notify", "event"} for r in compared)
    assert await effects.counts() == (0, 0, 0)


async def test_shadow_mode_in_groups_of_one_and_of_100_gives_the_same_comparisons(
    make_runtime, tmp_path, monkeypatch, counted_legacy
):
    """The same file in shadow mode (process-file, the mode routing each group),
    a group per lead and one group of all, each from a fresh shadow database: the
    same decisions on both sides, the same comparisons, the same intended effects."""
    from examples.legacy import process

    def plain(decision) -> dict:
        return decision.model_dump(mode="json", include=set(Decision.COMPARED_FIELDS))

    await set_mode("shadow")
    compared = {}
    for size in (1, 100):
        url = f"sqlite+aiosqlite:///{tmp_path}/shadow-{size}.db"
        monkeypatch.setenv("LEADFLOW_SHADOW__DATABASE_URL", url)
        monkeypatch.setattr(process, "_credit", {})
        runtime = make_runtime()
        with use_runtime(runtime):
            summary = await process_file(path=first_rows(tmp_path, 30), batch_size=size)
        await runtime.aclose()
        assert summary.routes == {"shadow": 30 - len(summary.merged) - summary.set_aside_total}
        assert summary.groups == (summary.routes["shadow"] if size == 1 else 1)
        compared[size] = {
            r.lead_id: (
                r.outcome.value,
                sorted(r.comparison.mismatched_fields),
                plain(r.control),
                plain(r.candidate),
                {e: {k: v for k, v in d.items() if k != "due_at"} for e, d in r.intended.items()},
            )
            for r in await stored("shadow")
        }
    assert len(compared[1]) == summary.routes["shadow"] > 20
    assert compared[1] == compared[100]
    assert any(mismatched for _o, mismatched, *_ in compared[1].values())  # the example's
