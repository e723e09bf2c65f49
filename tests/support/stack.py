"""A real Prefect stack for end-to-end tests: `prefect server start`, workers, `serve`.

Every process is started in a session (process group) of its own and stopped by its
group id, workers before the server they talk to, even when the test fails: SIGTERM,
then SIGKILL for whatever has not exited after a grace period. Each process writes to
a log file, whose tail is shown when something does not come up.

The environment is built from scratch for these processes: the test session's own
PREFECT_* and LEADFLOW_* variables (the session-wide test API, its home) are left
out, and each stack gets its own PREFECT_HOME, port and leadflow database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.net import free_port
from tests.support.paths import ROOT

BIN = Path(sys.executable).parent


def clean_env(**values: str) -> dict[str, str]:
    """The current environment without Prefect's or leadflow's settings, plus `values`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "LEADFLOW_"))
    }
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", **values)
    return env


@dataclass
class Started:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Processes:
    """Processes started by a test, stopped in reverse order by `stop_all`."""

    logs: Path
    started: list[Started] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path = ROOT
    ) -> Started:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Started(name, process, log)
        self.started.append(started)
        return started

    def stop_all(self, grace: float = 15.0) -> None:
        while self.started:
            stop_group(self.started.pop().process, grace)

    def tails(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.tail(2500)}" for s in self.started)


def stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process's group, then SIGKILL to what is left of it."""
    group = process.pid  # start_new_session: the leader's pid is the group id
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(group, signal.SIGKILL)  # children the leader left behind, if any
    process.wait(timeout=30)


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def wait_for(
    what: str,
    check: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 1.0,
    alive: list[Started] = (),
    context: Callable[[], str] = lambda: "",
) -> Any:
    """Call `check` until it returns something truthy; fail naming `what` at the
    deadline, or at once when one of the `alive` processes has exited."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for started in alive:
            if started.process.poll() is not None:
                raise AssertionError(
                    f"{started.name} exited ({started.process.returncode}) while waiting "
                    f"for {what}:\n{started.tail()}"
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s\n{context()}")
        time.sleep(interval)


@dataclass
class PrefectServer:
    """A `prefect server start` on a free loopback port, with the env to reach it."""

    home: Path
    port: int
    started: Started
    env: dict[str, str]

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.api_url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def prefect(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        """Run the `prefect` command line against this server, from the repository root."""
        return subprocess.run(
            [str(BIN / "prefect"), *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def flow_runs(self, deployment_name: str | None = None) -> list[dict]:
        """Every flow run, optionally of one deployment (by its name), oldest first."""
        body: dict[str, Any] = {"sort": "EXPECTED_START_TIME_ASC", "limit": 200}
        if deployment_name:
            body["deployments"] = {"name": {"any_": [deployment_name]}}
        return self.api("POST", "/flow_runs/filter", json=body)


def start_prefect_server(
    processes: Processes,
    home: Path,
    *,
    database_url: str | None = None,
    timeout: float = 180,
    port: int | None = None,
) -> PrefectServer:
    """Start `prefect server start` with its own PREFECT_HOME and wait until healthy.
    `database_url` puts its database on PostgreSQL (PREFECT_API_DATABASE_CONNECTION_URL);
    `port` (a free one by default) brings a stopped server back at the same address."""
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = clean_env(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false")
    server_env = dict(env)
    if database_url:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    started = processes.start(
        "prefect-server",
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        server_env,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    server = PrefectServer(
        home=home, port=port, started=started, env={**env, "PREFECT_API_URL": api_url}
    )

    def healthy() -> bool:
        try:
            return httpx.get(server.api_url + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("healthy Prefect server", healthy, timeout=timeout, alive=[started])
    return server


@contextmanager
def prefect_stack(
    tmp_path: Path, *, database_url: str | None = None
) -> Iterator[tuple[PrefectServer, Processes]]:
    """A running Prefect server and the process list to start more on; everything
    stopped at the end, workers first."""
    processes = Processes(logs=tmp_path)
    try:
        server = start_prefect_server(
            processes, tmp_path / "prefect-home", database_url=database_url
        )
        yield server, processes
    finally:
        processes.stop_all()


def sql_rows(database_url: str, query: str) -> list[tuple]:
    """Rows of one query on leadflow's database (SQLite or PostgreSQL), from a test."""
    import asyncio

    async def run() -> list[tuple]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in (await connection.execute(text(query))).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


@contextmanager
def scratch_database(base_url: str, purpose: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of `base_url` (whose role may
    create databases), dropped at the end; yields its URL."""
    import asyncio
    import uuid

    from sqlalchemy.engine import make_url

    name = f"leadflow_{purpose}_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
