"""The composition root: settings, rules, adapters and stores, built and closed here.

    async with Runtime.open(settings) as runtime:
        state = await runtime.run_flow(process_lead, record={...})

`Runtime.open` builds everything at the call (no I/O beyond reading the rules file,
so a wrong setting or rules key is raised before anything starts); entering creates
the stores' tables and puts the runtime in place for the flows run in the block
(`leadflow.flows.context`); leaving waits until the Prefect server has recorded the
flow runs started through `run_flow`, closes the adapters and disposes the database
engines. The command line opens one runtime per command; tests and benchmarks may
still `build_runtime` and put it in place with `use_runtime` to substitute adapters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from leadflow.assignment import Assigner
from leadflow.availability import AvailabilityError, AvailabilityOverrides
from leadflow.failed_effects import FailedEffects
from leadflow.flows.context import current_runtime, use_runtime
from leadflow.flows.mode import ModeReader
from leadflow.intake import Quarantine
from leadflow.integrations.wiring import Adapters, build_adapters
from leadflow.once import OnceStore, scope_hash
from leadflow.rules import Rules, load_rules
from leadflow.settings import Settings, SettingsError, load_settings
from leadflow.stores.decisions import DecisionStore
from leadflow.stores.inbox import Inbox

__all__ = ["Runtime", "build_runtime", "current_runtime", "prefect_clients", "use_runtime"]


@dataclass
class Runtime:
    settings: Settings
    rules: Rules
    adapters: Adapters
    assigner: Assigner
    quarantine: Quarantine
    decisions: DecisionStore
    once: OnceStore
    failed_effects: FailedEffects
    inbox: Inbox
    # the run mode, cached for this runtime (leadflow.flows.mode)
    modes: ModeReader = field(default_factory=ModeReader, init=False, repr=False)
    _flow_runs: list[UUID] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def open(
        cls, settings: Settings | None = None, *, rules: Rules | None = None, **adapters: Any
    ) -> AbstractAsyncContextManager[Runtime]:
        """Build the runtime now (SettingsError / RulesError name the key); use it with
        `async with` for the lifecycle described in the module docstring."""
        return build_runtime(settings, rules=rules, **adapters).opened()

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Runtime]:
        """This runtime's lifecycle, for one already built (the command line builds
        first, to report a wrong setting before it starts a Prefect server)."""
        await self.prepare_stores()
        finished = False
        try:
            with use_runtime(self):
                yield self
            finished = True
        finally:
            try:
                if finished:
                    await self.settle()
            finally:
                await self.aclose()
                from leadflow.db import dispose_engines

                await dispose_engines()

    async def prepare_stores(self) -> None:
        """Bring leadflow's own tables (round robin, quarantine, decisions, inbox,
        once-only claims, comparisons) to the newest schema before the first lead, instead of on
        first use: SQLite is upgraded, PostgreSQL checked (leadflow.schema)."""
        from leadflow.schema import prepare_schema

        await prepare_schema(self.settings.database_url)

    async def run_flow(self, flow_fn: Callable[..., Any], /, **parameters: Any) -> Any:
        """Run a flow with this runtime in place and return its final State (a failed
        run's error is in the State, not raised). The run is settled on closing."""
        with use_runtime(self):
            state = await flow_fn(**parameters, return_state=True)
        if state.state_details.flow_run_id:
            self._flow_runs.append(state.state_details.flow_run_id)
        return state

    async def settle(self) -> None:
        """Wait until the Prefect server has recorded the task runs of every flow run
        started through `run_flow` (see leadflow.flows.settle)."""
        from leadflow.flows.settle import settle

        runs, self._flow_runs = self._flow_runs, []
        await asyncio.gather(*(settle(run_id) for run_id in runs))

    async def aclose(self) -> None:
        await self.adapters.aclose()


def build_runtime(
    settings: Settings | None = None,
    *,
    rules: Rules | None = None,
    **adapter_overrides: Any,
) -> Runtime:
    """Load settings and rules (raising SettingsError / RulesError naming the key),
    build the adapters and stores. No I/O beyond reading the rules file."""
    settings = settings or load_settings()
    rules = rules or load_rules(settings.rules_path)
    adapters = build_adapters(settings, rules, **adapter_overrides)
    # Where the side effects land: a lead done against one CRM is not done against another.
    scope = "|".join(a.once_scope for a in (adapters.crm, adapters.notifier, adapters.event_sink))
    url = settings.database_url
    lease = timedelta(seconds=settings.pipeline.claim_lease_seconds)
    try:
        overrides = AvailabilityOverrides(settings.availability_path, rules.assignment.rep_ids)
    except AvailabilityError as exc:
        raise SettingsError(f"LEADFLOW_AVAILABILITY_PATH: {exc}") from None
    return Runtime(
        settings=settings,
        rules=rules,
        adapters=adapters,
        assigner=Assigner(rules.assignment, url, overrides=overrides),
        quarantine=Quarantine(url),
        decisions=DecisionStore(url, scope_hash(scope)),
        once=OnceStore(url, lease=lease),
        failed_effects=FailedEffects(url),
        inbox=Inbox(url, lease=lease),
    )


@asynccontextmanager
async def prefect_clients() -> AsyncIterator[None]:
    """Reuse one Prefect API client for every run started in the block.

    Without it each flow run opens fresh HTTP clients (building a TLS context even for
    a plain-HTTP API) and asks the server for its default result storage, which a warm
    process running many `process_lead` flows (a replay, a webhook receiver, the
    benchmark) pays per lead.
    """
    from prefect.context import AsyncClientContext, SyncClientContext

    with SyncClientContext.get_or_create():
        async with AsyncClientContext.get_or_create():
            yield
