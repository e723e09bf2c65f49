"""The one place that builds adapters from settings.

Nothing is built at import time. `build_adapter` finds the class in the registry,
loads and validates its own settings (`settings_class`) once, and calls
`from_settings` with them; only a scorer also receives the rules (their scoring
part). `build_adapters` does this for each kind the settings choose, and any adapter
can be passed in instead (tests, shadow mode's recorders, the benchmark's adapters).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from leadflow.integrations.base import CRM, Adapter, EventSink, Notifier, Scorer
from leadflow.integrations.registry import UnknownAdapterError, get_adapter_class
from leadflow.rules import Rules
from leadflow.settings import AdapterSettings, Settings, SettingsError, load_settings


@dataclass
class Adapters:
    crm: CRM
    notifier: Notifier
    event_sink: EventSink
    scorer: Scorer

    async def aclose(self) -> None:
        await asyncio.gather(
            *(
                adapter.aclose()
                for adapter in (self.crm, self.notifier, self.event_sink, self.scorer)
            )
        )


def build_adapters(
    settings: Settings,
    rules: Rules,
    *,
    crm: CRM | None = None,
    notifier: Notifier | None = None,
    event_sink: EventSink | None = None,
    scorer: Scorer | None = None,
) -> Adapters:
    """The configured adapters; a SettingsError names a wrong adapter setting, or a
    rep of the rules the notifier cannot reach."""
    chosen = settings.adapters
    return Adapters(
        crm=crm or build_adapter("crm", chosen.crm, settings),
        notifier=notifier or build_adapter("notifier", chosen.notifier, settings, rules),
        event_sink=event_sink or build_adapter("event_sink", chosen.event_sink, settings),
        scorer=scorer or build_adapter("scorer", chosen.scorer, settings, rules),
    )


def build_adapter(kind: str, name: str, settings: Settings, rules: Rules | None = None) -> Adapter:
    """One adapter by kind and name, with its own settings loaded and validated. No
    I/O. Raises SettingsError naming the LEADFLOW_ variable to fix."""
    try:
        cls = get_adapter_class(kind, name)
    except UnknownAdapterError as exc:
        raise SettingsError(f"LEADFLOW_ADAPTERS__{kind.upper()}: {exc}") from None
    return construct(cls, settings, rules)


def construct(cls: type[Adapter], settings: Settings, rules: Rules | None = None) -> Adapter:
    """`cls.from_settings` with its own settings (`settings_class`) loaded and
    validated; a scorer also gets the scoring rules, and a notifier built with the
    rules checks it can reach their reps (`Notifier.check_recipients`). The contract
    kit builds adapters through this too, so a plug-in is tested as the wiring builds
    it."""
    own = own_settings(cls)
    if issubclass(cls, Scorer):
        if rules is None:
            raise TypeError(f"the {cls.name} scorer is built with the rules")
        return cls.from_settings(settings, own, scoring=rules.scoring)
    adapter = cls.from_settings(settings, own)
    if isinstance(adapter, Notifier) and rules is not None:
        adapter.check_recipients(rules.assignment.rep_ids)
    return adapter


def own_settings(cls: type[Adapter]) -> AdapterSettings | None:
    """The adapter's `settings_class` read from the environment and .env, or None."""
    if cls.settings_class is None:
        return None
    return load_settings(cls.settings_class)
