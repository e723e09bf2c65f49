"""What a flow run works with: settings, rules, adapters and stores, built once.

Flow parameters must be plain data (Prefect records them), so the adapters are not
passed in: a flow asks `current_runtime()`, which builds the runtime from settings on
first use in this process and event loop, and reuses it for every later run (the
warm path). `use_runtime()` puts a runtime in place for a block: the command line
does this to close adapters cleanly at the end; tests and benchmarks do it to
substitute adapters.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from leadflow.assignment import Assigner
from leadflow.done import DoneLeads
from leadflow.intake import Quarantine
from leadflow.integrations.wiring import Adapters, build_adapters
from leadflow.logging import ensure_logging
from leadflow.rules import Rules, load_rules
from leadflow.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    rules: Rules
    adapters: Adapters
    assigner: Assigner
    quarantine: Quarantine
    done: DoneLeads

    async def aclose(self) -> None:
        await self.adapters.aclose()


def build_runtime(
    settings: Settings | None = None,
    *,
    rules: Rules | None = None,
    **adapter_overrides,
) -> Runtime:
    """Load settings and rules (raising SettingsError / RulesError naming the key),
    build the adapters and stores. No I/O beyond reading the rules file."""
    settings = settings or load_settings()
    rules = rules or load_rules(settings.rules_path)
    adapters = build_adapters(settings, rules, **adapter_overrides)
    # Where the side effects land: a lead done against one CRM is not done against another.
    scope = "|".join(a.once_scope for a in (adapters.crm, adapters.notifier, adapters.event_sink))
    return Runtime(
        settings=settings,
        rules=rules,
        adapters=adapters,
        assigner=Assigner(rules.assignment, settings.database_url),
        quarantine=Quarantine(settings.database_url),
        done=DoneLeads(settings.database_url, scope),
    )


_override: ContextVar[Runtime | None] = ContextVar("leadflow_runtime", default=None)
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = (
    weakref.WeakKeyDictionary()
)


def current_runtime() -> Runtime:
    runtime = _override.get()
    if runtime is not None:
        return runtime
    loop = asyncio.get_running_loop()
    if loop not in _per_loop:
        runtime = build_runtime()
        ensure_logging(runtime.settings.log)
        _per_loop[loop] = runtime
    return _per_loop[loop]


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    token = _override.set(runtime)
    try:
        yield runtime
    finally:
        _override.reset(token)


@asynccontextmanager
async def prefect_clients() -> AsyncIterator[None]:
    """Reuse one Prefect API client for every run started in the block.

    Without it each flow run opens fresh HTTP clients (building a TLS context costs
    about 35 ms even for a plain-HTTP API) and asks the server for its default result
    storage: about 100 ms of every lead's time when a warm process runs many
    `process_lead` flows (a replay, a webhook receiver, the benchmark).
    """
    from prefect.context import AsyncClientContext, SyncClientContext

    with SyncClientContext.get_or_create():
        async with AsyncClientContext.get_or_create():
            yield
