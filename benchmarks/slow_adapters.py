"""Adapters slowed by a fixed latency per call, as if each were a network call, and
the runtime the benchmarks share: embedded adapters on a throw-away SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from leadflow.app.runtime import Runtime, build_runtime
from leadflow.integrations.base import CRM, EventSink, LeadEvent, Notifier, Scorer
from leadflow.integrations.local_crm import LocalCRM
from leadflow.integrations.rules_scorer import RulesScorer
from leadflow.integrations.sql_events import SqlEventSink
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.rules import load_rules
from leadflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


class Slow:
    """Adds the same latency before every call of the wrapped adapter."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def wait(self) -> None:
        await asyncio.sleep(self.latency)

    @property
    def once_scope(self) -> str:
        return self.inner.once_scope  # the side effect lands where the inner one's does


class SlowCRM(CRM, Slow):
    name = "slow"

    def __init__(self, inner: CRM, latency: float) -> None:
        Slow.__init__(self, latency)
        self.inner = inner

    async def look_up(self, lead):
        await self.wait()
        return await self.inner.look_up(lead)

    async def upsert(self, lead, decision, *, idempotency_key):
        await self.wait()
        return await self.inner.upsert(lead, decision, idempotency_key=idempotency_key)


class SlowNotifier(Notifier, Slow):
    name = "slow"

    def __init__(self, inner: Notifier, latency: float) -> None:
        Slow.__init__(self, latency)
        self.inner = inner

    async def notify(self, lead, decision, *, idempotency_key):
        await self.wait()
        await self.inner.notify(lead, decision, idempotency_key=idempotency_key)


class SlowSink(EventSink, Slow):
    name = "slow"

    def __init__(self, inner: EventSink, latency: float) -> None:
        Slow.__init__(self, latency)
        self.inner = inner

    async def record(self, event: LeadEvent):
        await self.wait()
        await self.inner.record(event)


class SlowScorer(Scorer, Slow):
    name = "slow"

    def __init__(self, inner: Scorer, latency: float) -> None:
        Slow.__init__(self, latency)
        self.inner = inner

    async def score(self, lead, match):
        await self.wait()
        return await self.inner.score(lead, match)


class SlowAssigner(Slow):
    def __init__(self, inner, latency: float) -> None:
        super().__init__(latency)
        self.inner = inner

    async def assign(self, lead, match):
        await self.wait()
        return await self.inner.assign(lead, match)


def make_runtime(workdir: Path, latency: float) -> Runtime:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        rules_path=ROOT / "examples" / "rules.toml",
    )
    rules = load_rules(settings.rules_path)
    runtime = build_runtime(
        settings,
        rules=rules,
        crm=SlowCRM(LocalCRM(settings.database_url, ROOT / "examples" / "crm_seed.json"), latency),
        notifier=SlowNotifier(TerminalNotifier(workdir / "outbox.jsonl", echo=False), latency),
        event_sink=SlowSink(SqlEventSink(settings.database_url), latency),
        scorer=SlowScorer(RulesScorer(rules.scoring), latency),
    )
    runtime.assigner = SlowAssigner(runtime.assigner, latency)
    return runtime
