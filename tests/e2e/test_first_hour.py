"""The first hour of a new user (issue 6): `leadflow` in a subprocess, as typed.

Files as teams export them, errors that say what to do, a quiet terminal, and the
temporary Prefect server gone with the command that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import LEADFLOW, query, run_cli
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("first-hour")


def test_a_crm_export_with_semicolons_in_cp1252_is_read_and_reported(workdir):
    (workdir / "export.csv").write_bytes(
        "Email;First Name;Last Name;Company;Job Title;Country;employees;Notes\n"
        "maria.lopez@example.es;María;López;Café SL;CTO;ES;500;met at fair\n".encode("cp1252")
    )
    result = run_cli(workdir, "run", "export.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 1 records processed" in result.stdout
    err = " ".join(result.stderr.split())
    assert "read as encoding cp1252, separated by semicolons" in err
    assert "Email -> email" in err and "employees -> employee_count" in err
    assert "columns ignored (no lead field or scoring rule reads them; map one with " in err
    assert "LEADFLOW_COLUMNS): Notes" in err
    sql = "select last_name, company from crm_contacts where email = 'maria.lopez@example.es'"
    (row,) = query(workdir, sql)
    assert row == ("López", "Café SL")


def test_no_email_column_stops_before_anything_starts(workdir):
    (workdir / "names.csv").write_text("Name,Phone\nAda,123\n")
    started = time.monotonic()
    result = run_cli(workdir, "run", "names.csv")
    assert result.returncode == 2
    assert "no column for the lead's email; the header has 'Name', 'Phone'" in result.stderr
    assert "Traceback" not in result.stderr and "View at" not in result.stderr
    assert time.monotonic() - started < 30  # no Prefect server was started


def test_binary_garbage_names_the_file_and_offset(workdir):
    (workdir / "garbage.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = run_cli(workdir, "run", "garbage.csv")
    assert result.returncode == 2
    assert "garbage.csv: not a text file" in result.stderr and "offset" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:p@localhost/leads", "mysql:// is not supported"),
        ("sqlite+aiosqlite:////proc/no-such/leadflow.db", "cannot open the SQLite database"),
        ("postgresql://u:p@localhost/leads", "write postgresql+asyncpg://... instead"),
    ],
)
def test_storage_errors_name_the_setting_before_any_server(workdir, url, expected):
    (workdir / "one.csv").write_text("email\nann@example.org\n")
    result = run_cli(workdir, "run", "one.csv", LEADFLOW_DATABASE_URL=url)
    assert result.returncode == 2
    assert "LEADFLOW_DATABASE_URL" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr and "View at" not in result.stderr


def test_a_mistyped_variable_is_named_with_the_closest_setting(workdir):
    result = run_cli(workdir, "quarantine", "list", LEADFLOW_PIPELINE__CONCURENCY="2")
    assert "LEADFLOW_PIPELINE__CONCURENCY is not a leadflow setting" in result.stderr
    assert "did you mean LEADFLOW_PIPELINE__CONCURRENCY?" in result.stderr
    plugin = run_cli(workdir, "quarantine", "list", LEADFLOW_TERMINAL_ECHO="true")
    assert "not a leadflow setting" not in plugin.stderr  # an adapter's own setting


def test_a_bad_lead_prints_the_reason_not_a_traceback(workdir):
    result = run_cli(workdir, "lead", '{"email": "ada-at-analytical"}')
    assert result.returncode == 2
    assert "set aside: ada-at-analytical: email: 'ada-at-analytical' is not an email address" in (
        " ".join(result.stderr.split())
    )
    assert "Traceback" not in result.stderr and "Flow run" not in result.stderr


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc (Linux)")
def test_the_temporary_server_dies_with_a_killed_run(workdir, tmp_path):
    body = "email\n" + "".join(f"k{i}@kill{i}.test\n" for i in range(400))
    (workdir / "kill.csv").write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LEADFLOW_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        LEADFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}",
        LEADFLOW_RULES_PATH=str(ROOT / "examples" / "rules.toml"),
    )
    run = subprocess.Popen(
        [str(LEADFLOW), "run", "kill.csv"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server = None
        deadline = time.monotonic() + 120
        while server is None and time.monotonic() < deadline and run.poll() is None:
            server = next(iter(_children(run.pid)), None)
            time.sleep(0.2)
        assert server is not None, "the run started no server"
        time.sleep(1)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 20
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server), "the temporary Prefect server outlived the killed run"
    finally:
        if run.poll() is None:
            run.kill()
