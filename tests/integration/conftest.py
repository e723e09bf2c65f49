"""A real HTTP server on 127.0.0.1 for the webhook notifier to talk to.

`webhook_server` is a loopback stub vendor (leadflow.loopback_vendor's `FaultServer`)
on a free port, stopped after the test. It keeps every request (method, path,
headers, body, arrival time on `time.monotonic()`: `received`) and answers 200
`{"ok": true}`, unless a test queues faults (`server.inject(Fault.status_code(503))`,
given in order to the next writes), answers otherwise (`server.ok = reply(500)`) or
slows it down (`server.latency = 0.3`).

`webhook_runtime` is the embedded-adapter runtime with a `WebhookNotifier` pointed at
that server (token `SECRET_TOKEN`) and fast retries, put in place with `use_runtime`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from pydantic import SecretStr

from leadflow.app.runtime import Runtime, use_runtime
from leadflow.integrations.webhook_notifier import WebhookNotifier
from leadflow.loopback_vendor import FaultServer, reply
from leadflow.schema import upgrade_schema
from tests.support.paths import EXAMPLES
from tests.support.postgres import new_database
from tests.support.webhook import SECRET_TOKEN, hook_url

FAST_RETRIES = {"retries": 2, "retry_backoff_seconds": 0.05, "retry_jitter_factor": 0}


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
def webhook_server() -> Iterator[FaultServer]:
    """A fresh server per test, on a port the OS picked, stopped afterwards."""
    with FaultServer(reply()) as server:
        yield server


@pytest.fixture
async def webhook_runtime(
    prefect_api, make_runtime: Callable[..., Runtime], webhook_server: FaultServer
) -> AsyncIterator[Runtime]:
    """The embedded adapters with a WebhookNotifier at `webhook_server`, in place."""
    built = make_runtime(
        notifier=WebhookNotifier(hook_url(webhook_server), token=SecretStr(SECRET_TOKEN)),
        pipeline=FAST_RETRIES,
    )
    with use_runtime(built):
        yield built
    await built.aclose()


@pytest.fixture
async def pg_empty_url():
    """A new database with nothing in it (not even leadflow's schema)."""
    async with new_database() as url:
        yield url


@pytest.fixture
async def pg_url():
    """A new database at leadflow's schema, as `leadflow db upgrade` leaves it."""
    async with new_database() as url:
        await upgrade_schema(url)
        yield url
