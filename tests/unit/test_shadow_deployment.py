"""The shadow-report deployment: daily, with a time zone (its entrypoint and
parameters are checked with the others in test_deployments.py)."""

from __future__ import annotations

import yaml

from tests.support.paths import PREFECT_FILE


def test_shadow_report_runs_daily_in_a_time_zone():
    deployments = {d["name"]: d for d in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]}
    report = deployments["shadow-report"]
    assert report["entrypoint"] == "flows/report.py:shadow_report"
    assert report["schedules"] == [{"cron": "0 7 * * *", "timezone": "Europe/London"}]
    assert report["work_pool"]["name"] == "leadflow"
