"""The leadflow command line in a subprocess, as a user runs it: its environment (a
working folder of its own, the example rules), a run, and a query of its database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

LEADFLOW = Path(sys.executable).parent / "leadflow"


def cli_env(workdir: Path, **extra_env: str) -> dict[str, str]:
    """The environment of a leadflow command run in `workdir`: its own Prefect home,
    database and outbox, the example rules and CRM seed, nothing of this shell's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "LEADFLOW_"))
    }
    env.update(
        PREFECT_HOME=str(workdir / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # the temporary server's 20 s default is too short on a loaded 2-core machine
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        LEADFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'leadflow.db'}",
        LEADFLOW_TERMINAL_OUTBOX_PATH=str(workdir / "outbox.jsonl"),
        LEADFLOW_RULES_PATH=str(ROOT / "examples" / "rules.toml"),
        LEADFLOW_LOCAL_CRM_SEED_PATH=str(ROOT / "examples" / "crm_seed.json"),
        COLUMNS="160",
    )
    env.update(extra_env)
    return env


def run_cli(workdir: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = cli_env(workdir, **extra_env)
    return subprocess.run(
        [str(LEADFLOW), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def query(workdir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(workdir / "leadflow.db") as connection:
        return connection.execute(sql).fetchall()
