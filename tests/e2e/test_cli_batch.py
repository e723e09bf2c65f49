"""`leadflow run --batch-size` as a user runs it: the sample file in groups of 16
gives the summary of the default run, and a rerun repeats nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.cli import query, run_cli
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e


def test_the_sample_file_in_groups_of_16(tmp_path: Path):
    shutil.copy(ROOT / "examples" / "leads.csv", tmp_path / "leads.csv")
    slow = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # a busy machine
    first = run_cli(tmp_path, "run", "leads.csv", "--batch-size", "16", **slow)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "57 of 60 records processed from leads.csv" in first.stdout
    assert "Failed branches: none" in first.stdout and "Traceback" not in first.stderr
    assert "Task run" not in first.stderr  # one line per task run only with --verbose
    assert query(tmp_path, "select count(*) from lead_events") == [(57,)]
    done = query(tmp_path, "select effect, status, count(*) from side_effect_claims group by 1, 2")
    assert sorted(done) == [("crm", "done", 57), ("event", "done", 57), ("notify", "done", 57)]

    again = run_cli(tmp_path, "run", "leads.csv", **slow)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "57 already done before: nothing repeated" in again.stdout
    sent = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert len(sent) == 57 and len({json.loads(line)["key"] for line in sent}) == 57
