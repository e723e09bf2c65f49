"""The one place that builds adapters from settings.

Nothing is built at import time. `build_adapter` finds the class in the registry,
loads and validates its own settings (`settings_class`) once, and calls
`from_settings` with them; a scorer's own settings also carry the rules' scoring part
(leadflow.settings.ScorerSettings). `build_adapters` does this for each kind the
settings choose, and any adapter can be passed in instead (tests, shadow mode's
recorders, the benchmark's adapters).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from leadflow.integrations.base import CRM, Adapter, EventSink, LeadSource, Notifier, Scorer
from leadflow.integrations.registry import UnknownAdapterError, get_adapter_class
from leadflow.rules import Rules
from leadflow.settings import (
    AdapterSettings,
    ScorerSettings,
    Settings,
    SettingsError,
    load_settings,
)

A = TypeVar("A", bound=Adapter[Any])


@dataclass
class Adapters:
    crm: CRM[Any]
    notifier: Notifier[Any]
    event_sink: EventSink[Any]
    scorer: Scorer[Any]

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
    crm: CRM[Any] | None = None,
    notifier: Notifier[Any] | None = None,
    event_sink: EventSink[Any] | None = None,
    scorer: Scorer[Any] | None = None,
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


# An adapter of the kind asked for (as get_adapter_class's overloads say).
@overload
def build_adapter(
    kind: Literal["source"], name: str, settings: Settings, rules: Rules | None = None
) -> LeadSource[Any]: ...
@overload
def build_adapter(
    kind: Literal["crm"], name: str, settings: Settings, rules: Rules | None = None
) -> CRM[Any]: ...
@overload
def build_adapter(
    kind: Literal["notifier"], name: str, settings: Settings, rules: Rules | None = None
) -> Notifier[Any]: ...
@overload
def build_adapter(
    kind: Literal["event_sink"], name: str, settings: Settings, rules: Rules | None = None
) -> EventSink[Any]: ...
@overload
def build_adapter(
    kind: Literal["scorer"], name: str, settings: Settings, rules: Rules | None = None
) -> Scorer[Any]: ...
@overload
def build_adapter(
    kind: str, name: str, settings: Settings, rules: Rules | None = None
) -> Adapter[Any]: ...
def build_adapter(
    kind: str, name: str, settings: Settings, rules: Rules | None = None
) -> Adapter[Any]:
    """One adapter by kind and name, with its own settings loaded and validated. No
    I/O. Raises SettingsError naming the LEADFLOW_ variable to fix."""
    try:
        cls = get_adapter_class(kind, name)
    except UnknownAdapterError as exc:
        raise SettingsError(f"LEADFLOW_ADAPTERS__{kind.upper()}: {exc}") from None
    return construct(cls, settings, rules)


def construct(cls: type[A], settings: Settings, rules: Rules | None = None) -> A:
    """`cls.from_settings` with its own settings (`settings_class`) loaded and
    validated; a scorer's carry the scoring rules, and a notifier built with the
    rules checks it can reach their reps (`Notifier.check_recipients`). The contract
    kit builds adapters through this too, so a plug-in is tested as the wiring builds
    it."""
    own = own_settings(cls)
    if issubclass(cls, Scorer):
        if rules is None:
            raise TypeError(f"the {cls.name} scorer is built with the rules")
        own = own if own is not None else ScorerSettings()
        if not isinstance(own, ScorerSettings):
            raise TypeError(f"the {cls.name} scorer's settings_class must subclass ScorerSettings")
        own = own.with_scoring(rules.scoring)
    adapter = cls.from_settings(settings, own)
    if isinstance(adapter, Notifier) and rules is not None:
        adapter.check_recipients(rules.assignment.recipient_ids)
    return adapter


def own_settings(cls: type[Adapter[Any]]) -> AdapterSettings | None:
    """The adapter's `settings_class` read from the environment and .env, or None
    for an adapter without one (whose type parameter is None)."""
    if cls.settings_class is None:
        return None
    own: AdapterSettings = load_settings(cls.settings_class)
    return own
