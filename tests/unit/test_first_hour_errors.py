"""The first hour's errors end as one line: what, which setting or file, what to do
(issue 19). Real failures: a host that does not resolve, a port nobody listens on, a
full disk (a tiny tmpfs-like file size limit), a workbook that is not one."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from leadflow.db_errors import describe_database_error, shown_url

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "leadflow.app.cli"]


async def _connect(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()


async def test_a_host_that_does_not_resolve_is_named_with_the_password_hidden() -> None:
    url = "postgresql+asyncpg://lead:s3cret-pw@no-such-host.invalid/leads"
    with pytest.raises(Exception) as caught:
        await _connect(url)
    line = describe_database_error(url, caught.value)
    assert line == (
        "postgresql+asyncpg://lead:***@no-such-host.invalid/leads: the host "
        "'no-such-host.invalid' does not resolve (a typo in LEADFLOW_DATABASE_URL, or no "
        "network or VPN): check the host name"
    )
    assert "s3cret" not in line


async def test_a_port_nobody_listens_on() -> None:
    url = "postgresql+asyncpg://lead:pw@127.0.0.1:9/leads"
    with pytest.raises(Exception) as caught:
        await _connect(url)
    assert "nothing accepts connections at 127.0.0.1:9: start PostgreSQL" in (
        describe_database_error(url, caught.value)
    )


def test_a_full_disk_names_the_database_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "leadflow.db"
    db = sqlite3.connect(path)
    db.execute("pragma max_page_count = 8")  # SQLite's own "full": SQLITE_FULL, as on a full disk
    db.execute("create table t (x)")
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(100):
            db.execute("insert into t values (?)", ("x" * 4096,))
    db.close()
    assert str(full.value) == "database or disk is full"
    error = OperationalError("insert", {}, full.value)
    line = describe_database_error(f"sqlite+aiosqlite:///{path}", error)
    assert line.startswith(f"sqlite+aiosqlite:///{path}: the disk is full (")
    assert "MB free on its disk): free space there, or point LEADFLOW_DATABASE_URL" in line
    assert line.endswith("nothing accepted was lost")


def test_an_unknown_error_keeps_the_drivers_first_line() -> None:
    line = describe_database_error("sqlite+aiosqlite:///x.db", RuntimeError("odd\nmore"))
    assert line == "sqlite+aiosqlite:///x.db: odd"
    assert shown_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_the_cli_prints_one_line_for_an_unresolvable_database(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "LEADFLOW_DATABASE_URL": "postgresql+asyncpg://u:pw@no-such-host.invalid/db",
        "COLUMNS": "80",
    }
    done = subprocess.run(
        [*CLI, "run", str(ROOT / "examples" / "leads.csv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: postgresql+asyncpg://u:***@no-such-host.invalid/db: the host "
        "'no-such-host.invalid' does not resolve (a typo in LEADFLOW_DATABASE_URL, or no "
        "network or VPN): check the host name"
    ], done.stderr


def test_version() -> None:
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("leadflow ") and "(prefect 3.8." in done.stdout


def test_the_mode_is_read_from_the_local_prefect_database_without_a_server(
    tmp_path: Path,
) -> None:
    from leadflow.flows.mode import stored_mode_offline

    database = tmp_path / "prefect.db"
    with sqlite3.connect(database) as db:
        db.execute("create table variable (name varchar, value json)")
        db.execute("insert into variable values ('leadflow_mode', ?)", (json.dumps("pilot"),))
    from prefect.settings import (
        PREFECT_API_DATABASE_CONNECTION_URL,
        PREFECT_API_URL,
        temporary_settings,
    )

    local = {PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}"}
    with temporary_settings(updates=local, restore_defaults={PREFECT_API_URL}):
        assert stored_mode_offline() == "pilot"
    with temporary_settings(updates={**local, PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert stored_mode_offline() is None  # a server is configured: ask it
