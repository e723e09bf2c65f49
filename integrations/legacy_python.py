"""`python:module:function`: the current process is a Python callable that takes the
raw record (a dict) and returns a decision (a dict of Decision fields, or a Decision).

A plain function runs in a worker thread, so a slow one does not hold up leadflow's
side of a shadow run; an async function is awaited. The working directory is on the
import path, as for `python -m`, so a script in the repository can be named directly.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, Self

from leadflow.integrations.legacy_common import AnsweringLegacy
from leadflow.settings import Settings, SettingsError
from leadflow.shadow_settings import ShadowSettings


class PythonLegacy(AnsweringLegacy):
    name = "python"

    def __init__(self, function: Callable[[dict], Any], *, label: str = "") -> None:
        self.function = function
        self.label = label or getattr(function, "__qualname__", repr(function))

    @classmethod
    def from_target(
        cls, target: str, settings: Settings, own: None, *, shadow: ShadowSettings
    ) -> Self:
        return cls(load_callable(target), label=target)

    async def answer(self, record: dict) -> Any:
        if inspect.iscoroutinefunction(self.function):
            return await self.function(dict(record))
        return await asyncio.to_thread(self.function, dict(record))


def load_callable(target: str) -> Callable[[dict], Any]:
    """`package.module:function` -> the function; SettingsError says what is wrong."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SettingsError(f"--legacy python:{target}: expected python:module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SettingsError(
            f"--legacy python:{target}: cannot import {module_name}: {exc}"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SettingsError(f"--legacy python:{target}: {module_name} has no function {attribute}")
    return function
