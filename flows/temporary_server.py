"""The temporary Prefect server a one-off command runs against, owned by leadflow.

With no PREFECT_API_URL, Prefect starts a server in a subprocess by itself. Three
things about that subprocess hurt a command-line user, so the command line starts the
same server (Prefect's own app, the same uvicorn command line) itself instead:

- its log goes to the terminal: "Subscription queue is full, dropping message" once
  per dropped event on a big file, and cancelled-flush tracebacks at shutdown. Here it
  goes to `.leadflow/prefect-server.log`, and `ServerTrouble` counts what went wrong
  while the command ran, so a run with server errors or dropped events says so;
- after a `kill -9` of the command it keeps running. Here it is started with the
  parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`), so the kernel stops it when
  the command dies, however it dies. Elsewhere it is stopped at normal exit only;
- it logs "Starting temporary server" on every command.

A PREFECT_API_URL in the environment is used as it is: nothing is started.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

LOG_PATH = Path(".leadflow/prefect-server.log")
# Prefect allows its temporary server 20 s, which a busy 2-core machine overruns.
DEFAULT_STARTUP_SECONDS = 120.0
_TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
_PR_SET_PDEATHSIG = 1
_DROPPED = "Subscription queue is full"


class ServerStartError(RuntimeError):
    """The temporary server did not answer in time; the message says what to do."""


@dataclass
class ServerTrouble:
    """What the server logged while the command ran (shutdown noise excluded)."""

    dropped_events: int = 0
    errors: int = 0
    first_error: str = ""
    log_path: Path = LOG_PATH

    def __bool__(self) -> bool:
        return bool(self.dropped_events or self.errors)

    def describe(self) -> str:
        parts = []
        if self.dropped_events:
            parts.append(f"dropped {self.dropped_events} events")
        if self.errors:
            parts.append(f"logged {self.errors} errors (first: {self.first_error})")
        return (
            f"the Prefect server {' and '.join(parts)}; the leads' side effects are as "
            f"reported, but the Prefect UI may miss some task runs. Details: {self.log_path}"
        )


class TemporaryServer:
    def __init__(self, log_path: Path = LOG_PATH) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.api_url = ""
        self._log_start = 0

    def start(self, timeout: float | None = None) -> str:
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        if timeout is None and _TIMEOUT_VARIABLE not in os.environ:
            timeout = DEFAULT_STARTUP_SECONDS
        timeout = timeout or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self.process = subprocess.Popen(
                _server_command(port),
                env=_server_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with(os.getpid()),  # the main thread: see _die_with
                # Its own process group: Ctrl-C in a terminal reaches the whole group,
                # and the command, which finishes its work through this server before
                # it stops it, must not lose its API in the middle.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return self.api_url
                time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"the temporary Prefect server did not start within {timeout:.0f} s; its log is "
            f"{self.log_path}. On a busy machine, allow it longer with "
            f"{_TIMEOUT_VARIABLE}=300, or run one yourself (prefect server start) and "
            "set PREFECT_API_URL."
        )

    def trouble(self) -> ServerTrouble:
        """Dropped events and errors the server logged since it started."""
        found = ServerTrouble(log_path=self.log_path)
        if not self.log_path.exists():
            return found
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            text = log.read().decode("utf-8", "replace")
        for line in text.splitlines():
            if _DROPPED in line:
                found.dropped_events += 1
            elif "| ERROR" in line or "| CRITICAL" in line:
                found.errors += 1
                found.first_error = found.first_error or line.split(" - ", 1)[-1][:200]
        return found

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextlib.asynccontextmanager
async def prefect_api(log_path: Path = LOG_PATH) -> AsyncIterator[TemporaryServer | None]:
    """Run the block against PREFECT_API_URL if one is configured, else against a
    temporary server started here (yielded, to ask it for `trouble()` before the end).
    Log lines and events still queued for the API are sent before the server stops."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if get_current_settings().api.url:
        yield None
        return
    server = TemporaryServer(log_path)
    server.start()  # blocks this loop briefly: nothing else runs yet
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield server
            finally:
                await _drain()
    finally:
        server.stop()


async def _drain() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    drained = EventsWorker.drain_all(timeout=10)
    if inspect.isawaitable(drained):
        await drained


def _server_command(port: int) -> list[str]:
    """Prefect's own command for its temporary server (prefect.server.api.server)."""
    import prefect

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def _server_env() -> dict[str, str]:
    from prefect.settings import get_current_settings

    return {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with(parent: int):
    """A preexec_fn: the child gets SIGTERM when the parent dies (Linux), and exits at
    once if the parent is already gone."""

    def arrange() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return arrange
