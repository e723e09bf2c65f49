"""No secret reaches anything leadflow writes, faults included.

Each scenario runs the pipeline over a small file, in groups of one and in groups
of two, with adapters holding known secret values, each against a loopback server
that fails on purpose, then a replay, which fails again:

- a HubSpot token (a 500 then a 401), a Slack webhook URL, whose path is the
  credential (resets and 503s), and a Segment write key (down throughout);
- the generic webhook notifier at a Zapier-style URL whose path is the credential,
  with a Bearer token (500s then a 404), and the webhook event sink at an n8n-style
  URL (down throughout);
- a Teams workflow URL, whose `sig=` query is the credential (500s then a 403);
- e-mail through a real SMTP server (aiosmtpd) that takes the login and password
  and then refuses the message (451, then 554).

Then every place a secret could land is read back and searched: every file under
the run's folder (the SQLite database and its WAL included, byte for byte), every
database row, Prefect's result storage, the Prefect API's logs, artifacts and task
and flow run states for these runs, the log records and structlog events, and the
terminal. The figures are printed (`pytest tests/reliability/test_secrets.py -q -s`).
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.smtp import AuthResult
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
from pydantic import SecretStr
from structlog.testing import capture_logs

from leadflow.app.runtime import use_runtime
from leadflow.flows.files import process_file
from leadflow.flows.replay_effects import replay_side_effects
from leadflow.integrations.email_notifier import EmailNotifier
from leadflow.loopback_vendor import Fault, FaultServer
from tests.support.smtp import email_to, start_smtp
from tests.support.vendors import BY_ID, SECRETS

pytestmark = pytest.mark.usefixtures("prefect_api")

SMTP_USER, SMTP_PASSWORD = "leadflow-bot", "SECRET-smtp-password-5d6e"
FIGURES: list[str] = []


@dataclass
class Scenario:
    vendors: tuple[str, ...]  # loopback FaultServers, by vendor id
    faults: dict[str, Callable[[FaultServer], None]]
    secrets: dict[str, str]  # name -> value searched for
    smtp: bool = False


SCENARIOS = {
    "hubspot-slack-segment": Scenario(
        ("crm.hubspot", "notifier.slack_webhook", "event_sink.segment"),
        {
            "crm.hubspot": lambda s: s.inject(Fault.status_code(500), Fault.status_code(401)),
            "notifier.slack_webhook": lambda s: s.inject(Fault.reset(), Fault.status_code(503)),
            "event_sink.segment": lambda s: setattr(s, "down", True),
        },
        {name: SECRETS[name] for name in ("hubspot", "slack_webhook", "segment")},
    ),
    "generic-webhooks": Scenario(
        ("notifier.webhook", "event_sink.webhook"),
        {
            "notifier.webhook": lambda s: s.inject(
                Fault.status_code(500), Fault.status_code(500), Fault.status_code(404)
            ),
            "event_sink.webhook": lambda s: setattr(s, "down", True),
        },
        {
            name: SECRETS[name]
            for name in ("webhook", "webhook_path", "webhook_events", "webhook_events_path")
        },
    ),
    "teams": Scenario(
        ("notifier.teams",),
        {
            "notifier.teams": lambda s: s.inject(
                Fault.status_code(500), Fault.status_code(500), Fault.status_code(403)
            )
        },
        {"teams": SECRETS["teams"]},
    ),
    "smtp": Scenario((), {}, {"smtp password": SMTP_PASSWORD}, smtp=True),
}


def needles(secrets: dict[str, str]) -> dict[str, bytes]:
    """Each secret as it could appear: as is, URL-encoded, in HTTP Basic's encoding
    and in SMTP AUTH PLAIN's."""
    found = {}
    for name, value in secrets.items():
        found[name] = value.encode()
        found[f"{name} (url-encoded)"] = quote(value, safe="").encode()
        found[f"{name} (base64)"] = base64.b64encode(f"{value}:".encode())
        found[f"{name} (AUTH PLAIN)"] = base64.b64encode(f"\0{SMTP_USER}\0{value}".encode())
    return found


@contextmanager
def smtp_refusing() -> Iterator[tuple[EmailNotifier, list[bytes]]]:
    """A real SMTP server that checks the login, then refuses every message (451,
    then 554 from the third on); the email notifier logging in to it."""
    logins: list[bytes] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.password)
        return AuthResult(success=auth_data.password == SMTP_PASSWORD.encode(), handled=False)

    controller, server = start_smtp(authenticator=authenticator, auth_require_tls=False)
    server.sink.fail_code = 451
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the server's own debug log
    notifier = email_to(
        server, username=SMTP_USER, password=SecretStr(SMTP_PASSWORD), timeout_seconds=5
    )
    try:
        yield notifier, logins
    finally:
        controller.stop()


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    print("\nsecrets scan:")
    for line in FIGURES:
        print("  " + line)


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


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_no_secret_in_anything_written(
    name: str, tmp_path: Path, make_runtime, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    scenario = SCENARIOS[name]
    for logger in ("", "prefect", "httpx", "httpcore", "leadflow", "aiosmtplib"):
        caplog.set_level(logging.DEBUG, logger=logger or None)
    servers = {
        vid: FaultServer(BY_ID[vid].ok(), is_write=BY_ID[vid].is_write) for vid in scenario.vendors
    }
    for server in servers.values():
        server.start()
    try:
        with smtp_refusing() as (email_notifier, logins):
            for vid, fault in scenario.faults.items():
                fault(servers[vid])
            adapters = {BY_ID[vid].kind: BY_ID[vid].build(s.base_url) for vid, s in servers.items()}
            if scenario.smtp:
                adapters["notifier"] = email_notifier
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
    sent = b"".join(
        f"{r.request.url} {r.request.headers.get('authorization', '')}".encode()
        for s in servers.values()
        for r in s.received
    )
    for secret_name, secret in scenario.secrets.items():
        forms = needles({secret_name: secret}).values()
        assert secret.encode() in logins if scenario.smtp else any(f in sent for f in forms)
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

    searched = needles(scenario.secrets)
    leaks = [
        f"{secret} in {where}"
        for where, data in places.items()
        for secret, needle in searched.items()
        if needle in data
    ]
    size = sum(len(data) for data in places.values()) / 2**20
    FIGURES.append(
        f"{name}: {len(scenario.secrets)} secrets ({len(searched)} forms) searched in "
        f"{len(places)} places ({size:.1f} MB; {len(logs)} Prefect log rows, "
        f"{len(artifacts)} artifacts, {len(task_runs)} task runs): {len(leaks)} found"
    )
    assert not leaks, leaks
