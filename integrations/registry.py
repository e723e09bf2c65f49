"""Adapters by kind and name.

Built-in adapters and third-party ones register the same way, through the Python
entry-point group `leadflow.adapters`, with entry names `<kind>.<name>`:

    [project.entry-points."leadflow.adapters"]
    "crm.acme" = "leadflow_acme:AcmeCRM"

`register()` adds one at run time (tests, notebooks). Entry points are only
imported when an adapter is asked for or listed, so a broken third-party package
breaks its own adapter, not leadflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from leadflow.integrations.base import (
    CRM,
    KINDS,
    Adapter,
    EventSink,
    LeadSource,
    LegacyProcess,
    Notifier,
    Scorer,
)

if TYPE_CHECKING:
    from leadflow.settings import AdapterSettings

ENTRY_POINT_GROUP = "leadflow.adapters"


class UnknownAdapterError(LookupError):
    """No adapter of that kind has that name."""


@dataclass(frozen=True)
class AdapterInfo:
    kind: str
    name: str
    target: str  # "module:Class", for `leadflow adapters`
    side_effects: bool | None = None
    load_error: str | None = None


_registered: dict[tuple[str, str], type[Adapter[Any]]] = {}

A = TypeVar("A", bound=type[Adapter[Any]])


def register(cls: A, *, name: str | None = None) -> A:
    """Register an adapter class in this process (usable as a decorator)."""
    _check_kind(cls.kind)
    _registered[(cls.kind, name or cls.name)] = cls
    return cls


def unregister(kind: str, name: str) -> None:
    _registered.pop((kind, name), None)


# The class a kind's name gives is of that kind's interface (checked when loaded).
@overload
def get_adapter_class(kind: Literal["source"], name: str) -> type[LeadSource[Any]]: ...
@overload
def get_adapter_class(kind: Literal["crm"], name: str) -> type[CRM[Any]]: ...
@overload
def get_adapter_class(kind: Literal["notifier"], name: str) -> type[Notifier[Any]]: ...
@overload
def get_adapter_class(kind: Literal["event_sink"], name: str) -> type[EventSink[Any]]: ...
@overload
def get_adapter_class(kind: Literal["scorer"], name: str) -> type[Scorer[Any]]: ...
@overload
def get_adapter_class(kind: Literal["legacy"], name: str) -> type[LegacyProcess[Any]]: ...
@overload
def get_adapter_class(kind: str, name: str) -> type[Adapter[Any]]: ...
def get_adapter_class(kind: str, name: str) -> type[Adapter[Any]]:
    _check_kind(kind)
    if (kind, name) in _registered:
        return _registered[(kind, name)]
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=f"{kind}.{name}"):
        cls: object = entry.load()
        if not (isinstance(cls, type) and issubclass(cls, KINDS[kind])):
            raise UnknownAdapterError(
                f"entry point {entry.name!r} ({entry.value}) is not a {KINDS[kind].__name__}"
            )
        return cls
    known = ", ".join(sorted(info.name for info in list_adapters() if info.kind == kind))
    raise UnknownAdapterError(f"no {kind} adapter named {name!r}; registered: {known or 'none'}")


def list_adapters() -> list[AdapterInfo]:
    """Every registered adapter, sorted by kind then name."""
    found: dict[tuple[str, str], AdapterInfo] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        kind, _, name = entry.name.partition(".")
        try:
            cls = entry.load()
            found[(kind, name)] = AdapterInfo(kind, name, entry.value, cls.side_effects)
        except Exception as exc:  # a broken plug-in is listed, not fatal
            found[(kind, name)] = AdapterInfo(kind, name, entry.value, None, repr(exc))
    for (kind, name), cls in _registered.items():
        found[(kind, name)] = AdapterInfo(
            kind, name, f"{cls.__module__}:{cls.__qualname__}", cls.side_effects
        )
    return sorted(
        found.values(),
        key=lambda info: (list(KINDS).index(info.kind) if info.kind in KINDS else 99, info.name),
    )


def adapter_settings_classes() -> list[type[AdapterSettings]]:
    """The settings class of every registered adapter, plug-ins included: every
    subclass of AdapterSettings with an environment prefix, once the adapters are
    loaded (bases shared by several adapters have none), so
    `leadflow.settings.unknown_variables` knows their names."""
    from leadflow.settings import AdapterSettings

    list_adapters()
    found: list[type[AdapterSettings]] = []
    pending = list(AdapterSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.model_config.get("env_prefix"):
            found.append(cls)
    return found


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownAdapterError(f"unknown adapter kind {kind!r}; kinds: {', '.join(KINDS)}")
