"""`--legacy KIND:TARGET` -> the legacy adapter, through the registry like any other:
`python:examples.legacy.process:decide`, `command:./decide.sh`, `http:http://...`,
`observed:decisions.csv`, `rules:old_rules.toml`."""

from __future__ import annotations

from leadflow.integrations.base import LegacyProcess
from leadflow.integrations.registry import UnknownAdapterError, get_adapter_class
from leadflow.rules import Rules
from leadflow.settings import Settings, SettingsError


def build_legacy(spec: str, settings: Settings, rules: Rules) -> LegacyProcess:
    """The legacy adapter a spec names; SettingsError says what is wrong with it."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise SettingsError(
            f"--legacy {spec!r}: expected KIND:TARGET, e.g. python:module:function, "
            "command:PROGRAM, http:URL, observed:PATH, rules:PATH"
        )
    try:
        cls = get_adapter_class("legacy", kind)
    except UnknownAdapterError as exc:
        raise SettingsError(f"--legacy {spec!r}: {exc}") from None
    return cls.from_target(target, settings, rules)
