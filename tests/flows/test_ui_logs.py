"""Log lines as the Prefect UI shows them, read back from the real Prefect API; the
JSON lines for log shipping keep every field."""

from __future__ import annotations

import json
import re

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from leadflow.flows.lead import process_lead
from leadflow.logging import configure_logging, render_for_ui
from leadflow.settings import LogSettings

pytestmark = pytest.mark.usefixtures("prefect_api")

RECORD = {"email": "Lin@Readable.test", "title": "VP Sales", "country": "US", "source": "web"}


def test_the_ui_message_names_what_matters_and_leaves_out_what_the_ui_shows():
    line = render_for_ui(
        None,
        "info",
        {
            "event": "step",
            "level": "info",
            "logger": "leadflow.flows.lead",
            "timestamp": "2026-11-24T10:00:00Z",
            "flow_run_id": "f1",
            "task_run_id": "t1",
            "lead_id": "lead_1",
            "lead": "lin@readable.test",
            "step": "notify_team",
            "status": "ok",
            "error": None,
            "duration_ms": 12.5,
            "reason": "two words",
        },
    )
    assert (
        line == 'step lead=lin@readable.test step=notify_team status=ok reason="two words" 12.5 ms'
    )


async def test_ui_log_lines_are_short_and_json_lines_keep_every_field(runtime, capsys):
    configure_logging(LogSettings(format="json"))
    state = await process_lead(RECORD, return_state=True)
    outcome = await state.aresult()
    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    messages = [entry.message for entry in logs if entry.name.startswith("leadflow")]
    rep = outcome.decision.rep

    assert f"team notified lead=lin@readable.test rep={rep}" in messages
    timed = r"[\d.e-]+ ms"
    assert any(
        re.fullmatch(rf"step lead=lin@readable\.test step=look_up {timed}", m) for m in messages
    )
    assert any(
        re.fullmatch(rf"step lead=lin@readable\.test step=notify_team status=ok {timed}", message)
        for message in messages
    )
    processed = next(m for m in messages if m.startswith("lead processed"))
    assert processed.startswith(f"lead processed lead=lin@readable.test rep={rep} tier=")
    for noise in ("level=", "logger=", "timestamp=", "flow_run_id=", "task_run_id=", "lead_id="):
        assert not any(noise in message for message in messages), noise
    prefect_lines = [entry.message for entry in logs if entry.name == "prefect.task_runs"]
    assert not any(line.startswith("Finished in state Completed(") for line in prefect_lines)

    shipped = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    notified = next(entry for entry in shipped if entry["event"] == "team notified")
    assert notified["lead_id"] == outcome.lead_id and notified["lead"] == "lin@readable.test"
    assert {"level", "logger", "timestamp", "flow_run_id", "task_run_id"} <= notified.keys()
