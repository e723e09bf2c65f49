"""`command:PROGRAM ARGS`: the current process is a program that reads one lead as
JSON on standard input and writes its decision as JSON on standard output.

Each lead is one process, killed when it exceeds the timeout (the shadow setting
`timeout_seconds`); a non-zero exit, or output that is not a JSON object, is an error
for that lead naming the program and its last line of standard error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from typing import Any, Self

from leadflow.integrations.legacy_common import AnsweringLegacy
from leadflow.settings import Settings, SettingsError
from leadflow.shadow_settings import ShadowSettings


class LegacyCommandError(RuntimeError):
    """The program failed, timed out or did not answer with JSON."""


class CommandLegacy(AnsweringLegacy[None]):
    name = "command"

    def __init__(self, argv: list[str], *, timeout: float = 10.0) -> None:
        self.argv = argv
        self.timeout = timeout

    @classmethod
    def from_target(
        cls, target: str, settings: Settings, own: None, *, shadow: ShadowSettings
    ) -> Self:
        argv = shlex.split(target)
        if not argv:
            raise SettingsError("--legacy command:...: no program given")
        return cls(argv, timeout=shadow.timeout_seconds)

    async def answer(self, record: dict) -> Any:
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        payload = json.dumps(record, default=str).encode()
        try:
            out, err = await asyncio.wait_for(process.communicate(payload), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise LegacyCommandError(
                f"{self.argv[0]}: no answer within {self.timeout:g} s"
            ) from None
        if process.returncode != 0:
            last = (err.decode(errors="replace").strip().splitlines() or [""])[-1]
            raise LegacyCommandError(f"{self.argv[0]}: exit {process.returncode}: {last}")
        try:
            return json.loads(out)
        except json.JSONDecodeError as exc:
            raise LegacyCommandError(f"{self.argv[0]}: output is not JSON ({exc.msg})") from None
