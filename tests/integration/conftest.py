"""A real HTTP server on 127.0.0.1 for the webhook notifier to talk to.

`webhook_server` starts uvicorn serving a tiny Starlette app in a background thread
on a free port and stops it after the test. The app records every request (method,
path, headers, body, arrival time on `time.monotonic()`), and answers from a script:
`server.script(429, Reply(200))` gives those replies in order, then `server.default`
(200) once the script runs out.

`webhook_runtime` is the embedded-adapter runtime with a `WebhookNotifier` pointed at
that server (token `SECRET_TOKEN`) and fast retries, put in place with `use_runtime`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from leadflow.app.runtime import Runtime, use_runtime
from leadflow.integrations.webhook_notifier import WebhookNotifier
from tests.conftest import EXAMPLES

SECRET_TOKEN = "s3cr3t-token-value"
FAST_RETRIES = {"retries": 2, "retry_backoff_seconds": 0.05, "retry_jitter_factor": 0}


@dataclass(frozen=True)
class Reply:
    """One scripted response; `delay` seconds pass before it is sent."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = field(default_factory=lambda: {"ok": True})
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the server saw it. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    """The scriptable app and what it received; thread-safe."""

    def __init__(self) -> None:
        self.port = 0
        self.default = Reply()
        self._script: deque[Reply] = deque()
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                )
            ]
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The webhook endpoint the notifier is pointed at."""
        return f"{self.base_url}/hook"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def script(self, *replies: Reply | int) -> None:
        """Replace the script: replies (or bare status codes) to give in order."""
        with self._lock:
            self._script = deque(r if isinstance(r, Reply) else Reply(r) for r in replies)

    async def _handle(self, request: Request) -> Response:
        at = time.monotonic()
        body = await request.body()
        with self._lock:
            self._received.append(
                Received(
                    method=request.method,
                    path=request.url.path,
                    headers=dict(request.headers),
                    body=body,
                    at=at,
                )
            )
            reply = self._script.popleft() if self._script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


@contextmanager
def serve_app(app) -> Iterator[int]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yields
    the port, stops the server afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(
        target=uv.run, kwargs={"sockets": [sock]}, name="test-http-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test HTTP server did not start")
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """For CLI commands run in-process: a fresh working folder, the example rules and a
    database of its own, and a wide terminal so lines are not wrapped."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_RULES_PATH", str(EXAMPLES / "rules.toml"))
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("COLUMNS", "200")
    return monkeypatch


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A fresh server per test, on a port the OS picked, stopped afterwards."""
    server = WebhookServer()
    with serve_app(server.app) as port:
        server.port = port
        yield server


@pytest.fixture
async def webhook_runtime(
    prefect_api, make_runtime: Callable[..., Runtime], webhook_server: WebhookServer
) -> AsyncIterator[Runtime]:
    """The embedded adapters with a WebhookNotifier at `webhook_server`, in place."""
    built = make_runtime(
        notifier=WebhookNotifier(webhook_server.url, token=SecretStr(SECRET_TOKEN)),
        pipeline=FAST_RETRIES,
    )
    with use_runtime(built):
        yield built
    await built.aclose()
