"""The shadow-report deployment: daily, with a time zone, on the report flow."""

from __future__ import annotations

from prefect import Flow

from tests.unit.test_deployments import PREFECT_FILE, load_entrypoint


def test_shadow_report_runs_daily_in_a_time_zone():
    import yaml

    deployments = {d["name"]: d for d in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]}
    report = deployments["shadow-report"]
    flow = load_entrypoint(report["entrypoint"])
    assert isinstance(flow, Flow) and flow.name == "shadow-report"
    assert report["schedules"] == [{"cron": "0 7 * * *", "timezone": "Europe/London"}]
    assert report["work_pool"]["name"] == "leadflow"
    assert set(report["parameters"]) <= set(flow.parameters.properties)
