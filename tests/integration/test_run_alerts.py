"""A run that ends Failed is told to the team once, through the configured notifier:
the terminal notifier's alerts file, or a POST to the webhook (a real HTTP server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from structlog.testing import capture_logs

from leadflow.app.runtime import current_runtime
from leadflow.flows.alerts import alert_on_failure
from leadflow.flows.files import process_file
from leadflow.flows.lead import process_lead
from leadflow.loopback_vendor import Fault, FaultServer

pytestmark = pytest.mark.usefixtures("prefect_api")


def alerts(tmp_path: Path) -> list[dict]:
    path = tmp_path / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_failed_run_sends_one_alert_through_the_terminal_notifier(runtime, tmp_path):
    state = await process_lead({"email": "not-an-email"}, origin="alert-test", return_state=True)

    assert state.is_failed()
    (alert,) = alerts(tmp_path)
    run_id = str(state.state_details.flow_run_id)
    assert alert["flow"] == "process-lead" and alert["run_id"] == run_id
    assert alert["key"] == f"run-failed:{run_id}"
    assert "email" in alert["message"] and "not-an-email" in alert["message"]
    # The outbox, one line per lead notified, is untouched.
    assert not (tmp_path / "outbox.jsonl").exists()

    # The hook again for the same run (a retried run failing again): not sent twice.
    async with get_client() as client:
        flow_run = await client.read_flow_run(state.state_details.flow_run_id)
    await alert_on_failure(process_lead, flow_run, state)
    assert len(alerts(tmp_path)) == 1

    # Another failed run is another alert; a completed run sends none.
    await process_lead({"email": ""}, return_state=True)
    await process_lead({"email": "fine@alerts.test"}, return_state=True)
    assert len(alerts(tmp_path)) == 2


async def test_a_notifier_without_alerts_logs_the_failed_run(
    webhook_runtime, webhook_server: FaultServer, tmp_path: Path
):
    """The webhook notifier does not POST alerts (its endpoint expects leads): the
    default `Notifier.alert` logs the failed run at error level instead."""
    webhook_server.inject(Fault.status_code(400))  # the notify branch fails for the one lead
    path = tmp_path / "one.csv"
    path.write_text("email,first_name\nwebhook-alert@alerts.test,Al\n")

    with capture_logs() as logs:
        state = await process_file(path=str(path), return_state=True)

    assert state.is_failed()
    run_id = str(state.state_details.flow_run_id)
    (logged,) = [e for e in logs if e["event"] == "run failed"]
    assert logged["key"] == f"run-failed:{run_id}" and "notify_team" in logged["alert"]
    assert len(webhook_server.received) == 1  # the lead's notification (400: not retried)
    assert current_runtime().adapters.notifier.name == "webhook"


async def test_an_alert_that_cannot_be_sent_does_not_change_the_run(make_runtime, prefect_api):
    from leadflow.app.runtime import use_runtime
    from tests.support.fakes import MemoryNotifier

    down = MemoryNotifier(failures={"alert": [ConnectionError("notifier down")]})
    built = make_runtime(notifier=down)
    with use_runtime(built):
        state = await process_lead({"email": "bad-address"}, return_state=True)
    await built.aclose()

    assert state.is_failed() and "email" in state.message
