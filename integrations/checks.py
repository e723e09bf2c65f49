"""`leadflow check`: is the configuration complete and right, and do the vendors answer?

`check_configuration()` reads the settings and the rules and builds every chosen
adapter (sources included) from settings, with no I/O (adapters open connections
on first use), collecting every problem instead of stopping at the first: each
line names the variable or rules key to fix. `probe_adapters()` then makes one
harmless read per built adapter (`Adapter.probe()`: HubSpot lists one contact,
Slack calls auth.test, Salesforce reads its limits, SMTP says NOOP, ...).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from leadflow.integrations.base import Adapter
from leadflow.integrations.errors import AdapterError
from leadflow.integrations.wiring import build_adapter
from leadflow.rules import Rules, RulesError, load_rules
from leadflow.settings import Settings, SettingsError, load_settings

KINDS = ("source", "crm", "notifier", "event_sink", "scorer")


@dataclass
class CheckResult:
    kind: str
    name: str
    ok: bool
    detail: str
    seconds: float | None = None


@dataclass
class Configuration:
    problems: list[str] = field(default_factory=list)  # settings / rules, not per adapter
    results: list[CheckResult] = field(default_factory=list)
    adapters: list[Adapter] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.results)

    async def aclose(self) -> None:
        await asyncio.gather(*(a.aclose() for a in self.adapters), return_exceptions=True)


def check_configuration() -> Configuration:
    found = Configuration()
    try:
        settings = load_settings(Settings)
    except SettingsError as exc:
        found.problems.append(str(exc))
        return found
    try:
        rules: Rules | None = load_rules(settings.rules_path)
    except RulesError as exc:
        found.problems.append(str(exc))
        rules = None
    chosen = settings.adapters.model_dump()
    for kind in KINDS:
        name = chosen[kind]
        if name is None:  # no polled source chosen: nothing to build
            continue
        if kind == "scorer" and rules is None:
            found.results.append(CheckResult(kind, name, False, "not built: rules invalid"))
            continue
        try:
            found.adapters.append(build_adapter(kind, name, settings, rules))
            found.results.append(CheckResult(kind, name, True, "configured"))
        except SettingsError as exc:
            found.results.append(CheckResult(kind, name, False, str(exc)))
    return found


async def probe_adapters(adapters: list[Adapter], seconds: float = 15.0) -> list[CheckResult]:
    async def timed(adapter: Adapter) -> tuple[str, float]:
        started = time.perf_counter()
        detail = await adapter.probe()
        return detail, time.perf_counter() - started

    async def one(adapter: Adapter) -> CheckResult:
        took = None
        try:
            detail, took = await asyncio.wait_for(timed(adapter), seconds)
            ok = True
        except TimeoutError:
            detail, ok = f"no answer within {seconds:g} s", False
        except AdapterError as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        return CheckResult(adapter.kind, adapter.name, ok, detail, took)

    return list(await asyncio.gather(*(one(a) for a in adapters)))
