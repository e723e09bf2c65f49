"""`--legacy KIND:TARGET` -> the legacy adapter, through the registry like any other:
`python:examples.legacy.process:decide`, `command:./decide.sh`, `http:http://...`,
`observed:decisions.csv`, `rules:old_rules.toml`."""

from __future__ import annotations

from leadflow.integrations.base import LegacyProcess
from leadflow.integrations.registry import UnknownAdapterError, get_adapter_class
from leadflow.integrations.wiring import own_settings
from leadflow.settings import Settings, SettingsError
from leadflow.shadow_settings import ShadowSettings


def build_legacy(spec: str, settings: Settings, shadow: ShadowSettings) -> LegacyProcess:
    """The legacy adapter a spec names, with its own settings loaded and validated
    (as `build_adapter` does); SettingsError says what is wrong with it."""
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
    return cls.from_target(target, settings, own_settings(cls), shadow=shadow)
