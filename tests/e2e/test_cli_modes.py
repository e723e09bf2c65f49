"""The cut-over commands as a user runs them: subprocesses sharing one brand-new
PREFECT_HOME (so the mode Variable persists between commands, on Prefect's temporary
server), `leadflow mode` switching what `leadflow run` does, then `leadflow shadow`
and `leadflow report` with a clean terminal."""

from __future__ import annotations

import shutil

import pytest

from tests.support.cli import run_cli
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

LEGACY = "python:examples.legacy.process:decide"


def test_mode_run_shadow_and_report_from_the_command_line(tmp_path):
    rows = (ROOT / "examples" / "leads.csv").read_text().splitlines(True)[:7]
    (tmp_path / "leads.csv").write_text("".join(rows))
    shadow_env = {
        "PYTHONPATH": str(ROOT),  # the example current process is imported by module name
        "LEADFLOW_SHADOW__DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shadow.db'}",
    }

    switched = run_cli(tmp_path, "mode", "legacy")
    assert switched.returncode == 0, switched.stderr[-3000:]
    assert "mode: legacy (set)" in switched.stdout

    left = run_cli(tmp_path, "run", "leads.csv")
    assert left.returncode == 0, left.stderr[-3000:]
    assert "Mode legacy: current process 6" in left.stdout
    assert not (tmp_path / "outbox.jsonl").exists()  # nothing notified
    assert "mode: legacy" in run_cli(tmp_path, "mode").stdout

    shadowed = run_cli(tmp_path, "shadow", "leads.csv", "--legacy", LEGACY, **shadow_env)
    assert shadowed.returncode == 0, shadowed.stderr[-3000:]
    assert "6 of 6 records compared" in shadowed.stdout
    assert "crm.owner" in shadowed.stdout  # the intended effects are compared too
    assert "Traceback" not in shadowed.stderr  # the temporary server logs to .leadflow
    assert not (tmp_path / "outbox.jsonl").exists()

    report = run_cli(tmp_path, "report", "--out", "reports", **shadow_env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "not enough data" in report.stdout
    assert (tmp_path / "reports" / "shadow-report.html").exists()
    assert "Traceback" not in report.stderr
    shutil.rmtree(tmp_path / "reports")
