"""watch_slas under a real Prefect API, on the routing's clock moved by hand: a lead
past its deadline reminds its rep once, escalates once (the next rep in the team, the
CRM contact's new owner, the manager told), is closed when the local CRM logs a
touch, with the whole history kept; a failed message is sent by the next run under
the same key; a touch before the deadline sends nothing; a CRM that cannot tell and
an old lead are not watched."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadflow.app.runtime import Runtime, build_runtime, use_runtime
from leadflow.assignment import Assigner
from leadflow.db import get_engine
from leadflow.flows.lead import process_lead
from leadflow.flows.sla import SlaStepsFailedError, watch_slas
from leadflow.integrations.base import SlaNotice
from leadflow.integrations.local_crm import LocalCRM, contacts
from leadflow.integrations.rules_scorer import RulesScorer
from leadflow.integrations.sql_events import SqlEventSink
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.rules import Rules
from leadflow.sla import Step, history
from tests.support.builders import make_settings
from tests.support.fakes import MemoryCRM
from tests.support.routing import Clock

pytestmark = pytest.mark.usefixtures("prefect_api")

ALICE, BOB, MIA, QUEUE = "alice@example.com", "bob@example.com", "mia@example.com", "q@example.com"
T0 = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _t0_is_when_the_test_starts() -> None:
    """T0, the instant the tests move the routing's clock from, is taken as each test
    starts: decisions are stored at the wall clock's instant, and the watcher reads
    those decided up to its clock's `now`, so a T0 taken at collection (minutes
    earlier in a full run) would leave them in its future."""
    global T0
    T0 = datetime.now(UTC).replace(microsecond=0)


def sla_rules(escalate_after: float | None = 10) -> Rules:
    """Every lead is hot: a 15 minute SLA, escalated `escalate_after` minutes after
    the reminder, in a team of two with a manager; no working hours (any day will do)."""
    return Rules.model_validate(
        {
            "tiers": [
                {
                    "name": "hot",
                    "min_score": 0,
                    "follow_up": "call",
                    "sla_minutes": 15,
                    "escalate_after_minutes": escalate_after,
                }
            ],
            "assignment": {
                "fallback_owner": QUEUE,
                "use_crm_owner": False,
                "territories": [{"name": "all", "team": "na"}],
                "teams": {"na": {"manager": MIA, "reps": [{"id": ALICE}, {"id": BOB}]}},
            },
        }
    )


class FlakyNotifier(TerminalNotifier):
    """The terminal notifier, whose first `fail` SLA messages fail."""

    def __init__(self, outbox: Path, fail: int = 0) -> None:
        super().__init__(outbox, echo=False)
        self.fail = fail

    async def sla_notice(self, notice: SlaNotice, *, idempotency_key: str) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("chat is down")
        await super().sla_notice(notice, idempotency_key=idempotency_key)


def sla_runtime(tmp_path: Path, clock: Clock, rules: Rules | None = None, **adapters) -> Runtime:
    settings = make_settings(tmp_path)
    rules = rules or sla_rules()
    url = settings.database_url
    adapters.setdefault("crm", LocalCRM(url, None))
    adapters.setdefault("notifier", TerminalNotifier(tmp_path / "outbox.jsonl", echo=False))
    runtime = build_runtime(
        settings,
        rules=rules,
        event_sink=SqlEventSink(url),
        scorer=RulesScorer(rules.scoring),
        **adapters,
    )
    runtime.assigner = Assigner(rules.assignment, url, clock=clock)
    return runtime


def sent(tmp_path: Path) -> list[dict]:
    path = tmp_path / "sla.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def lead_in(runtime: Runtime, email: str, *, due_in: timedelta) -> None:
    """A lead processed now, whose 15 minute SLA ends `due_in` from T0."""
    created = T0 + due_in - timedelta(minutes=15)
    with use_runtime(runtime):
        await process_lead({"email": email, "first_name": "Ava", "created_at": created.isoformat()})


async def watch(runtime: Runtime, clock: Clock, at: timedelta):
    clock.now = T0 + at
    await runtime.prepare_stores()
    with use_runtime(runtime):
        return await watch_slas(return_state=True)


async def owner(runtime: Runtime, email: str) -> str:
    query = sa.select(contacts.c.owner).where(contacts.c.email == email)
    async with get_engine(runtime.settings.database_url).connect() as connection:
        return (await connection.execute(query)).scalar_one()


async def test_remind_then_escalate_then_contacted_each_once(tmp_path: Path) -> None:
    clock = Clock(T0)
    runtime = sla_runtime(tmp_path, clock)
    await runtime.prepare_stores()
    await lead_in(runtime, "ava@northwind.test", due_in=timedelta(minutes=1))
    assert await owner(runtime, "ava@northwind.test") == ALICE

    early = await (await watch(runtime, clock, timedelta(seconds=30))).aresult()
    assert (early.opened, early.reminded) == (1, [])

    for _ in range(2):  # the deadline passed; the rerun sends nothing more
        late = await (await watch(runtime, clock, timedelta(minutes=2))).aresult()
    assert [(m["kind"], m["to"]) for m in sent(tmp_path)] == [("reminder", ALICE)]
    assert late.reminded == [] and late.open == 1

    # nine minutes after the reminder: not yet; ten: the lead moves on, once
    nine = await (await watch(runtime, clock, timedelta(minutes=11))).aresult()
    assert nine.escalated == []
    for run in range(2):
        moved = await (await watch(runtime, clock, timedelta(minutes=12))).aresult()
        assert moved.escalated == (["ava@northwind.test"] if run == 0 else [])
    messages = sent(tmp_path)
    assert [(m["kind"], m["to"], m["rep"]) for m in messages] == [
        ("reminder", ALICE, ALICE),
        ("reassigned", BOB, BOB),
        ("escalated", MIA, BOB),
    ]
    assert len({m["key"] for m in messages}) == 3
    assert messages[2]["previous_rep"] == ALICE
    assert "made no first touch" in messages[2]["reason"]
    assert await owner(runtime, "ava@northwind.test") == BOB  # the CRM contact's owner

    crm = runtime.adapters.crm
    assert isinstance(crm, LocalCRM)
    await crm.touch("ava@northwind.test")
    closed = await (await watch(runtime, clock, timedelta(minutes=13))).aresult()
    assert closed.contacted == ["ava@northwind.test"]
    (steps,) = (
        await history(runtime.settings.database_url, [m["lead_id"] for m in messages])
    ).values()
    assert [s.step for s in steps] == [
        Step.WATCHING,
        Step.REMINDED,
        Step.REASSIGNED,
        Step.MANAGER_TOLD,
        Step.ESCALATED,
        Step.CONTACTED,
    ]
    assert (steps[2].rep, steps[2].told) == (ALICE, BOB)
    assert steps[2].detail.startswith(f"by territory:all/round_robin:na: {ALICE} made no first")
    assert (steps[3].told, steps[5].rep) == (MIA, BOB)
    assert len(sent(tmp_path)) == 3
    await runtime.aclose()


async def test_a_touch_before_the_deadline_sends_nothing(tmp_path: Path) -> None:
    clock = Clock(T0)
    runtime = sla_runtime(tmp_path, clock)
    await runtime.prepare_stores()
    await lead_in(runtime, "ben@proseware.test", due_in=timedelta(minutes=1))
    crm = runtime.adapters.crm
    assert isinstance(crm, LocalCRM)
    await crm.touch("ben@proseware.test", kind="email")
    summary = await (await watch(runtime, clock, timedelta(minutes=2))).aresult()
    assert (summary.contacted, summary.reminded) == (["ben@proseware.test"], [])
    assert sent(tmp_path) == []
    (steps,) = (await history(runtime.settings.database_url, [summary_lead(runtime)])).values()
    assert "(on time)" in steps[-1].detail
    await runtime.aclose()


def summary_lead(runtime: Runtime) -> str:
    from leadflow.models import Lead

    return Lead.from_record({"email": "ben@proseware.test"}).id


async def test_a_failed_message_is_sent_by_the_next_run_under_the_same_key(tmp_path: Path) -> None:
    clock = Clock(T0)
    notifier = FlakyNotifier(tmp_path / "outbox.jsonl", fail=1)
    runtime = sla_runtime(tmp_path, clock, notifier=notifier)
    await runtime.prepare_stores()
    await lead_in(runtime, "cy@contoso.test", due_in=timedelta(minutes=1))

    failed = await watch(runtime, clock, timedelta(minutes=2))
    assert failed.is_failed()
    reason = re.escape("cy@contoso.test: sla-remind: ConnectionError: chat is down")
    with pytest.raises(SlaStepsFailedError, match=reason):
        await failed.aresult()
    assert sent(tmp_path) == []
    again = await (await watch(runtime, clock, timedelta(minutes=3))).aresult()
    assert again.reminded == ["cy@contoso.test"]
    (message,) = sent(tmp_path)
    assert message["key"].startswith("sla-remind:")
    counts = await runtime.once.counts()
    assert counts[("sla-remind", "done")] == 1
    await runtime.aclose()


async def test_a_tier_without_escalation_only_reminds(tmp_path: Path) -> None:
    clock = Clock(T0)
    runtime = sla_runtime(tmp_path, clock, rules=sla_rules(escalate_after=None))
    await runtime.prepare_stores()
    await lead_in(runtime, "dee@fabrikam.test", due_in=timedelta(minutes=1))
    for minutes in (2, 30, 60):
        await (await watch(runtime, clock, timedelta(minutes=minutes))).aresult()
    assert [m["kind"] for m in sent(tmp_path)] == ["reminder"]
    lapsed = await (await watch(runtime, clock, timedelta(hours=25))).aresult()
    assert lapsed.lapsed == ["dee@fabrikam.test"]
    await runtime.aclose()


async def test_a_lead_long_overdue_when_first_seen_is_not_watched(tmp_path: Path) -> None:
    clock = Clock(T0)
    runtime = sla_runtime(tmp_path, clock)
    await runtime.prepare_stores()
    await lead_in(runtime, "eve@tailspin.test", due_in=-timedelta(days=3))
    summary = await (await watch(runtime, clock, timedelta(minutes=1))).aresult()
    assert (summary.opened, summary.not_watched, summary.reminded) == (1, 1, [])
    assert sent(tmp_path) == []
    await runtime.aclose()


async def test_a_crm_that_cannot_tell_watches_nothing(tmp_path: Path) -> None:
    clock = Clock(T0)
    runtime = sla_runtime(tmp_path, clock, crm=MemoryCRM())
    await runtime.prepare_stores()
    await lead_in(runtime, "fay@litware.test", due_in=-timedelta(minutes=5))
    summary = await (await watch(runtime, clock, timedelta(minutes=1))).aresult()
    assert summary.note is not None and "cannot tell when a lead was first touched" in summary.note
    assert summary.opened == 0 and sent(tmp_path) == []
    await runtime.aclose()
