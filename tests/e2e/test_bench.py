"""`leadflow bench --quick` as a check, as a contributor runs it: every part of the
benchmark runs end to end (its own Prefect server, the stub vendors, `leadflow
serve-webhook` in a process of its own) and nothing it measured was lost, repeated or
refused. The speed and memory figures are printed by the bench, against its targets;
they are not asserted here (a loaded machine would fail them, not the code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

LEADFLOW = Path(sys.executable).parent / "leadflow"


def test_the_quick_bench_runs_every_part_and_loses_nothing(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "LEADFLOW_"))
    }
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", COLUMNS="160")
    figures_path = tmp_path / "bench.json"
    done = subprocess.run(
        [str(LEADFLOW), "bench", "--quick", "--json", str(figures_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Targets:" in done.stdout
    figures = json.loads(figures_path.read_text())

    (realtime,) = figures["realtime"].values()  # 50 ms a call
    for way in ("bound", "legacy", "realtime", "process_lead"):
        assert 0 < realtime[f"{way}_p50_s"] <= realtime[f"{way}_max_s"]
    assert realtime["repeated"] == 0

    burst = figures["burst"]
    assert burst["done"] == burst["leads"] > 0
    assert burst["rate_limited"] == 0 and burst["repeated"] == 0

    backlog = figures["backlog"]
    assert backlog["failed"] == 0 and backlog["rate_limited_responses"] == 0
    assert backlog["groups_of_100_leads_per_s"] > 0 and backlog["groups_of_1_leads_per_s"] > 0
    assert backlog["shadow_leads_per_s"] or backlog["shadow_skipped"]

    runs = figures["memory"]["runs"]
    assert runs and all(r["leads"] == int(n) and r["failed"] == 0 for n, r in runs.items())
