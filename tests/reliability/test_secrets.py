"""No secret reaches anything leadflow writes, faults included.

The pipeline runs over a small file, in groups of one and in groups of two, with
three vendor adapters holding known secret values (a HubSpot token, a Slack webhook
URL, whose path is the credential, and a Segment write key), each against a
loopback stub that fails on purpose: a 500 then a 401 for HubSpot, resets and 503s
for Slack, Segment down throughout; then a replay, which fails again. Then every
place a secret could land is read back and searched: every file under the run's
folder (the SQLite database and its WAL included, byte for byte), every database
row, Prefect's result storage, the Prefect API's logs, artifacts and task and flow
run states for these runs, the log records and structlog events, and the terminal.
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from structlog.testing import capture_logs

from benchmarks.fault_vendor import Fault, FaultServer
from leadflow.app.runtime import use_runtime
from leadflow.flows.files import process_file
from leadflow.flows.replay_effects import replay_side_effects
from tests.reliability.vendors import BY_ID, SECRETS

pytestmark = pytest.mark.usefixtures("prefect_api")

USED = ("crm.hubspot", "notifier.slack_webhook", "event_sink.segment")


def needles() -> dict[str, bytes]:
    """Each secret as it could appear: as is, and as its Basic-auth encoding."""
    found = {}
    for name in ("hubspot", "slack_webhook", "segment"):
        value = SECRETS[name]
        found[name] = value.encode()
        found[f"{name} (base64)"] = base64.b64encode(f"{value}:".encode())
    return found


def leads_file(folder: Path, name: str, prefix: str) -> Path:
    path = folder / name
    rows = [f"{prefix}{i}@secrets.test,Lee{i},VP Sales,Acme,US" for i in range(3)]
    path.write_text("email,first_name,title,company,country\n" + "\n".join(rows) + "\n")
    return path


def written_files(folder: Path) -> dict[str, bytes]:
    """Every file under the run's folder, every row of its database, and Prefect's
    result storage (where the branch tasks' results persist)."""
    places: dict[str, bytes] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            places[f"file {path.relative_to(folder)}"] = path.read_bytes()
    with sqlite3.connect(folder / "leadflow.db") as db:
        for (table,) in db.execute("select name from sqlite_master where type = 'table'"):
            rows = db.execute(f'select * from "{table}"').fetchall()
            places[f"table {table}"] = repr(rows).encode()
    storage = Path(os.environ["PREFECT_LOCAL_STORAGE_PATH"])
    for path in storage.rglob("*") if storage.exists() else []:
        if path.is_file():
            places[f"prefect result {path.name}"] = path.read_bytes()
    return places


async def test_no_secret_in_anything_written(
    tmp_path: Path, make_runtime, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    for name in ("", "prefect", "httpx", "httpcore", "leadflow"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    servers = {vid: FaultServer(BY_ID[vid].ok(), is_write=BY_ID[vid].is_write) for vid in USED}
    for server in servers.values():
        server.start()
    try:
        servers["crm.hubspot"].inject(Fault.status_code(500), Fault.status_code(401))
        servers["notifier.slack_webhook"].inject(Fault.reset(), Fault.status_code(503))
        servers["event_sink.segment"].down = True
        adapters = {BY_ID[vid].kind: BY_ID[vid].build(s.base_url) for vid, s in servers.items()}
        runtime = make_runtime(
            **adapters,
            pipeline={"retries": 1, "retry_backoff_seconds": 0.05, "retry_jitter_factor": 0},
        )
        states = []
        with capture_logs() as events, use_runtime(runtime):
            per_lead = leads_file(tmp_path, "per-lead.csv", "p")
            batched = leads_file(tmp_path, "batched.csv", "b")
            states.append(await process_file(str(per_lead), batch_size=1, return_state=True))
            states.append(await process_file(str(batched), batch_size=2, return_state=True))
            states.append(await replay_side_effects(return_state=True))
        await runtime.aclose()
        await APILogHandler.aflush()
    finally:
        for server in servers.values():
            server.stop()

    # The secrets did travel, and the faults did happen: the search below means something.
    hubspot = servers["crm.hubspot"].received
    assert any(SECRETS["hubspot"] in r.request.headers.get("authorization", "") for r in hubspot)
    assert any(
        SECRETS["slack_webhook"] in r.request.url.path
        for r in servers["notifier.slack_webhook"].received
    )
    assert servers["event_sink.segment"].faults_given()["vendor_down"] > 0
    assert not all(s.is_completed() for s in states[:2])  # failures were recorded

    places = written_files(tmp_path)
    assert "table failed_side_effects" in places

    run_ids = [s.state_details.flow_run_id for s in states]
    async with get_client() as client:
        logs = await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)), limit=200
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        )
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
        )
        flow_runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
        )
    assert logs and artifacts and task_runs
    places["Prefect API logs"] = repr([log.message for log in logs]).encode()
    places["Prefect artifacts"] = repr([(a.key, a.data, a.description) for a in artifacts]).encode()
    places["Prefect task runs"] = repr(
        [(t.name, t.state and t.state.message) for t in task_runs]
    ).encode()
    places["Prefect flow runs"] = repr(
        [(f.name, f.parameters, f.state and f.state.message) for f in flow_runs]
    ).encode()
    places["flow results"] = repr([s.message for s in states]).encode()
    places["structlog events"] = repr(events).encode()
    places["log records"] = (caplog.text + repr([r.__dict__ for r in caplog.records])).encode()
    out, err = capfd.readouterr()
    places["terminal"] = (out + err).encode()

    leaks = [
        f"{secret} in {where}"
        for where, data in places.items()
        for secret, needle in needles().items()
        if needle in data
    ]
    assert not leaks, leaks
