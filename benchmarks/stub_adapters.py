"""Adapters that call the stub vendors (benchmarks/stub_vendors.py) over HTTP, then
do the work on the embedded adapters, for `leadflow bench`.

Each call is one real HTTP request on loopback through `leadflow.integrations.http.send`
(so a 429 becomes `RateLimited` with its Retry-After, as for a real vendor), made
inside the adapter's client-side `RateLimiter`: single methods send one request per
lead, bulk methods one per `BULK` leads (HubSpot batch upsert of 100, a Segment
batch...). The side effects themselves land in the embedded adapters (SQLite, the
outbox), so the pipeline does all its real work too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from leadflow.app.runtime import Runtime, build_runtime
from leadflow.integrations.base import CRM, EventSink, LeadEvent, Notifier, Scorer
from leadflow.integrations.http import send
from leadflow.integrations.local_crm import LocalCRM
from leadflow.integrations.ratelimit import RateLimiter
from leadflow.integrations.rules_scorer import RulesScorer
from leadflow.integrations.sql_events import SqlEventSink
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.rules import load_rules
from leadflow.settings import PipelineSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
BULK = 100


class Vendor:
    """One vendor account: its HTTP client and its client-side limiter."""

    def __init__(self, client: httpx.AsyncClient, name: str, limiter: RateLimiter | None) -> None:
        self.client = client
        self.name = name
        self.limiter = limiter

    async def call(self, op: str, n: int = 1) -> None:
        for start in range(0, max(n, 1), BULK):
            size = min(BULK, n - start) if n else 0
            request = self.client.build_request("POST", f"/{self.name}/{op}", json={"n": size})
            if self.limiter is None:  # no client-side limit
                await send(self.client, request, f"{self.name} {op}")
                continue
            async with self.limiter.slot():
                await send(self.client, request, f"{self.name} {op}")


class StubCRM(CRM):
    name = "stub"

    def __init__(self, inner: CRM, vendor: Vendor) -> None:
        self.inner, self.vendor = inner, vendor

    @property
    def once_scope(self) -> str:
        return self.inner.once_scope

    async def look_up(self, lead):
        await self.vendor.call("look_up")
        return await self.inner.look_up(lead)

    async def look_up_many(self, leads):
        await self.vendor.call("look_up_batch", len(leads))
        return await self.inner.look_up_many(leads)

    async def upsert(self, lead, decision, *, idempotency_key):
        await self.vendor.call("upsert")
        return await self.inner.upsert(lead, decision, idempotency_key=idempotency_key)

    async def upsert_many(self, items):
        await self.vendor.call("upsert_batch", len(items))
        return await self.inner.upsert_many(items)


class StubNotifier(Notifier):
    name = "stub"

    def __init__(self, inner: Notifier, vendor: Vendor) -> None:
        self.inner, self.vendor = inner, vendor

    @property
    def once_scope(self) -> str:
        return self.inner.once_scope

    async def notify(self, lead, decision, *, idempotency_key):
        await self.vendor.call("notify")
        await self.inner.notify(lead, decision, idempotency_key=idempotency_key)

    async def notify_many(self, items):
        await self.vendor.call("digest", len(items))
        await self.inner.notify_many(items)


class StubSink(EventSink):
    name = "stub"

    def __init__(self, inner: EventSink, vendor: Vendor) -> None:
        self.inner, self.vendor = inner, vendor

    @property
    def once_scope(self) -> str:
        return self.inner.once_scope

    async def record(self, event: LeadEvent):
        await self.vendor.call("track")
        await self.inner.record(event)

    async def record_many(self, events):
        await self.vendor.call("batch", len(events))
        await self.inner.record_many(events)


class StubScorer(Scorer):
    name = "stub"

    def __init__(self, inner: Scorer, vendor: Vendor) -> None:
        self.inner, self.vendor = inner, vendor

    async def score(self, lead, match):
        await self.vendor.call("score")
        return await self.inner.score(lead, match)

    async def score_many(self, leads: Sequence, matches: Sequence):
        await self.vendor.call("score_batch", len(leads))
        return await self.inner.score_many(leads, matches)


class StubAssigner:
    """Rep assignment behind a routing vendor (rep availability), then leadflow's own
    round robin in the database."""

    def __init__(self, inner, vendor: Vendor) -> None:
        self.inner, self.vendor = inner, vendor

    async def assign(self, lead, match, tier=None):
        await self.vendor.call("route")
        return await self.inner.assign(lead, match, tier)

    async def assign_many(self, leads, matches, tiers=None):
        await self.vendor.call("route_batch", len(leads))
        return await self.inner.assign_many(leads, matches, tiers)


def make_runtime(
    workdir: Path,
    base_url: str,
    *,
    requests_per_second: int | None,
    concurrent: int | None,
    pipeline: PipelineSettings | None = None,
) -> Runtime:
    """Embedded adapters in `workdir`, each behind its stub vendor and its own limiter
    (`requests_per_second=None` for none)."""
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        rules_path=ROOT / "examples" / "rules.toml",
        pipeline=pipeline or PipelineSettings(),
    )
    rules = load_rules(settings.rules_path)
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )

    def vendor(name: str) -> Vendor:
        if requests_per_second is None:
            return Vendor(client, name, None)
        limiter = RateLimiter(requests_per_second, 1.0, max_concurrent=concurrent)
        return Vendor(client, name, limiter)

    runtime = build_runtime(
        settings,
        rules=rules,
        crm=StubCRM(
            LocalCRM(settings.database_url, ROOT / "examples" / "crm_seed.json"), vendor("crm")
        ),
        notifier=StubNotifier(
            TerminalNotifier(workdir / "outbox.jsonl", echo=False), vendor("notifier")
        ),
        event_sink=StubSink(SqlEventSink(settings.database_url), vendor("events")),
        scorer=StubScorer(RulesScorer(rules.scoring), vendor("scorer")),
    )
    runtime.assigner = StubAssigner(runtime.assigner, vendor("router"))
    runtime.http_client = client  # closed by the benchmark
    return runtime
