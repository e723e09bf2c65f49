"""The one place that builds the configured adapters from settings.

Nothing is built at import time; `build_adapters` constructs each adapter named in
`settings.adapters` through the registry, and any adapter can be passed in instead
(tests, shadow mode's recorders, the benchmark's slowed-down adapters).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from leadflow.integrations.base import CRM, EventSink, Notifier, Scorer
from leadflow.integrations.registry import UnknownAdapterError, get_adapter_class
from leadflow.rules import Rules
from leadflow.settings import Settings, SettingsError


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
    """The configured adapters; a SettingsError names a wrong adapter setting."""
    return Adapters(
        crm=crm or _build("crm", settings.adapters.crm, settings, rules),
        notifier=notifier or _build("notifier", settings.adapters.notifier, settings, rules),
        event_sink=event_sink
        or _build("event_sink", settings.adapters.event_sink, settings, rules),
        scorer=scorer or _build("scorer", settings.adapters.scorer, settings, rules),
    )


def _build(kind: str, name: str, settings: Settings, rules: Rules):
    try:
        cls = get_adapter_class(kind, name)
    except UnknownAdapterError as exc:
        raise SettingsError(f"LEADFLOW_ADAPTERS__{kind.upper()}: {exc}") from None
    return cls.from_settings(settings, rules)


def build_adapter(kind: str, name: str, settings: Settings, rules: Rules):
    """One adapter by kind and name, for parts built outside `build_adapters` (the
    CRM a legacy adapter reads)."""
    return _build(kind, name, settings, rules)
