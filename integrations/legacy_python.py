"""`python:module:function`: the current process is a Python callable that takes the
raw record (a dict) and returns a decision (a dict of Decision fields, or a Decision).

A plain function runs in a worker thread, so a slow one does not hold up leadflow's
side of a shadow run; an async function is awaited. The records asked for together
(a group's, up to the shadow run's calls at once) share one trip to the worker
thread and are decided one after another there, their answers handed back together:
a trip costs several times what a typical decision function does, and one trip per
record made a shadow run of a backlog slower than the run it judges. (A record that
hangs holds up the others of its trip; each times out as a lead of its own would.)
The working directory is on the import path,
as for `python -m`, so a script in the repository can be named directly.
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


class PythonLegacy(AnsweringLegacy[None]):
    name = "python"

    def __init__(self, function: Callable[[dict], Any], *, label: str = "") -> None:
        self.function = function
        self.label = label or getattr(function, "__qualname__", repr(function))
        self._asked: list[tuple[dict, asyncio.Future]] = []

    @classmethod
    def from_target(
        cls, target: str, settings: Settings, own: None, *, shadow: ShadowSettings
    ) -> Self:
        return cls(load_callable(target), label=target)

    async def answer(self, record: dict) -> Any:
        if inspect.iscoroutinefunction(self.function):
            return await self.function(dict(record))
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        self._asked.append((dict(record), answered))
        if len(self._asked) == 1:  # the first of this loop turn's records: send them soon
            loop.call_soon(self._send, loop)
        return await answered

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        """The records asked for so far, to one worker thread, in one trip."""
        asked, self._asked = self._asked, []
        loop.run_in_executor(None, self._decide_each, loop, asked)

    def _decide_each(self, loop: asyncio.AbstractEventLoop, asked: list) -> None:
        """In the worker thread: each record in turn, the answers handed back together
        (waking the event loop once per record would cost more than the records)."""
        outcomes = []
        for record, answered in asked:
            try:
                outcomes.append((answered, self.function(record), False))
            except Exception as exc:
                outcomes.append((answered, exc, True))
        loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[tuple[asyncio.Future, Any, bool]]) -> None:
    for answered, outcome, failed in outcomes:
        if answered.done():  # its caller gave up waiting (a timeout)
            continue
        if failed:
            answered.set_exception(outcome)
        else:
            answered.set_result(outcome)


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
