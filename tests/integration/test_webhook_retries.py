"""The webhook notifier against a real HTTP server, through the real `process_lead`
flow on a real Prefect API: which statuses are retried, that Retry-After is waited
out, that the token never shows, and that a lead is notified once.

Every test uses its own lead email, so the Prefect cache keys (per lead and side
effect) of one test never satisfy another's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import prefect.task_engine
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from prefect.states import State
from prefect.utilities.math import lower_clamp_multiple
from pydantic import SecretStr
from structlog.testing import capture_logs

from leadflow.app.runtime import Runtime, use_runtime
from leadflow.flows.lead import BRANCHES, BranchesFailedError, process_lead
from leadflow.integrations.webhook_notifier import WebhookNotifier, WebhookNotifierSettings
from leadflow.loopback_vendor import Fault, FaultServer, reply
from leadflow.models import BranchStatus, LeadOutcome, person_id
from leadflow.settings import load_settings
from tests.support.builders import webhook_record as record
from tests.support.webhook import SECRET_TOKEN, hook_url

pytestmark = pytest.mark.usefixtures("prefect_api")

RETRIES = 2  # tests/integration/conftest.py FAST_RETRIES
BACKOFF = 0.05


async def run(raw: dict[str, Any]) -> State:
    return await process_lead(raw, return_state=True)


async def outcome_of(state: State) -> LeadOutcome:
    """The LeadOutcome of a run, from its result or from its BranchesFailedError."""
    if state.is_completed():
        return await state.aresult()
    exc = await state.aresult(raise_on_failure=False)
    assert isinstance(exc, BranchesFailedError), exc
    return exc.outcome


def assert_keys(server: FaultServer, raw: dict[str, Any]) -> None:
    """Every request was a POST to /hook carrying the lead's once-only key."""
    expected = f"notify:{person_id(raw['email'])}"
    for request in server.received:
        assert (request.method, request.path) == ("POST", "/hook")
        assert request.headers.get("idempotency-key") == expected


def assert_others_ok(outcome: LeadOutcome) -> None:
    assert outcome.branches["update_crm"].status is BranchStatus.OK
    assert outcome.branches["log_event"].status is BranchStatus.OK


# --- retried -----------------------------------------------------------------------


async def test_429_with_retry_after_is_waited_out_then_succeeds(
    webhook_server: FaultServer, webhook_runtime: Runtime
) -> None:
    webhook_server.inject(Fault.retry_after("1"))
    raw = record("rate-limited")

    with capture_logs() as logs:
        state = await run(raw)

    assert state.is_completed(), state.message
    outcome = await outcome_of(state)
    assert {name: r.status for name, r in outcome.branches.items()} == dict.fromkeys(
        BRANCHES, BranchStatus.OK
    )
    requests = webhook_server.received
    assert len(requests) == 2
    gap = requests[1].at - requests[0].at
    # The backoff alone is 0.05 s: only honouring Retry-After explains a 1 s gap.
    assert 0.95 <= gap < 2.5, gap
    waits = [e for e in logs if e["event"] == "honouring Retry-After"]
    assert len(waits) == 1
    assert waits[0]["retry_after_s"] == 1.0
    assert waits[0]["waiting_s"] == pytest.approx(1 - BACKOFF)
    assert_keys(webhook_server, raw)


async def test_retry_after_is_honoured_when_jitter_shortens_the_backoff(
    prefect_api,
    make_runtime: Callable[..., Runtime],
    webhook_server: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prefect's jitter can cut the backoff to about 40 % of its nominal value (with a
    jitter factor of 1); the Retry-After wait must cover the shortest backoff, not the
    nominal one. Jitter is pinned to its lower bound so the test is deterministic."""

    def shortest(average: float, clamping_factor: float = 0.3) -> float:
        return average * lower_clamp_multiple(1 + clamping_factor)

    monkeypatch.setattr(prefect.task_engine, "clamped_poisson_interval", shortest)
    webhook_server.inject(Fault.retry_after("1"))
    raw = record("rate-limited-jitter")
    built = make_runtime(
        notifier=WebhookNotifier(hook_url(webhook_server), token=SecretStr(SECRET_TOKEN)),
        pipeline={"retries": 1, "retry_backoff_seconds": 0.5, "retry_jitter_factor": 1.0},
    )
    try:
        with use_runtime(built):
            state = await run(raw)
    finally:
        await built.aclose()

    assert state.is_completed(), state.message
    requests = webhook_server.received
    assert len(requests) == 2
    gap = requests[1].at - requests[0].at
    assert 0.95 <= gap < 2.5, gap  # without the fix: 0.5 s wait + 0.21 s backoff


async def test_503_twice_is_retried_with_backoff_then_succeeds(
    webhook_server: FaultServer, webhook_runtime: Runtime
) -> None:
    webhook_server.inject(Fault.status_code(503), Fault.status_code(503))
    raw = record("unavailable")

    state = await run(raw)

    assert state.is_completed(), state.message
    outcome = await outcome_of(state)
    assert outcome.branches["notify_team"].status is BranchStatus.OK
    assert_others_ok(outcome)
    requests = webhook_server.received
    assert len(requests) == 3
    # exponential backoff: 0.05 s, then 0.1 s
    assert requests[1].at - requests[0].at >= BACKOFF * 0.9
    assert requests[2].at - requests[1].at >= 2 * BACKOFF * 0.9
    assert_keys(webhook_server, raw)


# --- not retried -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, "PermanentError"), (401, "AuthenticationError"), (403, "AuthenticationError")],
)
async def test_client_errors_fail_the_branch_at_once(
    webhook_server: FaultServer, webhook_runtime: Runtime, status: int, error: str
) -> None:
    webhook_server.ok = reply(status, {"error": "no"})
    raw = record(f"client-error-{status}")

    state = await run(raw)

    assert state.is_failed()
    assert len(webhook_server.received) == 1
    exc = await state.aresult(raise_on_failure=False)
    assert isinstance(exc, BranchesFailedError)
    assert set(exc.outcome.failed_branches) == {"notify_team"}
    reason = exc.outcome.failed_branches["notify_team"]
    assert reason.startswith(f"{error}: ")
    assert f"HTTP {status}" in reason
    assert "notify_team" in str(exc) and f"HTTP {status}" in str(exc)
    assert_others_ok(exc.outcome)
    assert_keys(webhook_server, raw)


async def test_persistent_500_exhausts_the_retries(
    webhook_server: FaultServer, webhook_runtime: Runtime
) -> None:
    webhook_server.ok = reply(500)
    raw = record("server-error")

    state = await run(raw)

    assert state.is_failed()
    assert len(webhook_server.received) == RETRIES + 1
    outcome = await outcome_of(state)
    assert set(outcome.failed_branches) == {"notify_team"}
    reason = outcome.failed_branches["notify_team"]
    assert reason.startswith("TransientError: ") and "HTTP 500" in reason
    assert_others_ok(outcome)
    assert_keys(webhook_server, raw)


# --- the token ---------------------------------------------------------------------


async def test_the_token_is_sent_but_never_shown(
    webhook_server: FaultServer,
    webhook_runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A retry, then a refusal: the retry, failure and outcome paths all log.
    webhook_server.inject(Fault.retry_after("0.2"), Fault.status_code(401))
    raw = record("secret")
    for name in ("", "prefect", "httpx", "httpcore", "leadflow", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name or None)

    with capture_logs() as logs:
        state = await run(raw)
    await APILogHandler.aflush()

    # the token did travel, so the checks below mean something
    requests = webhook_server.received
    assert len(requests) == 2
    assert all(r.headers["authorization"] == f"Bearer {SECRET_TOKEN}" for r in requests)

    assert state.is_failed()
    exc = await state.aresult(raise_on_failure=False)
    assert isinstance(exc, BranchesFailedError)
    assert "HTTP 401" in exc.outcome.failed_branches["notify_team"]
    out, err = capsys.readouterr()
    assert logs and caplog.records  # something was captured
    async with get_client() as client:
        api_logs = await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])),
            limit=200,
            offset=0,
        )
    assert api_logs  # the lines the Prefect UI shows for this run

    notifier = webhook_runtime.adapters.notifier
    monkeypatch.setenv("LEADFLOW_WEBHOOK_URL", hook_url(webhook_server))
    monkeypatch.setenv("LEADFLOW_WEBHOOK_TOKEN", SECRET_TOKEN)
    settings = load_settings(WebhookNotifierSettings)
    assert settings.token is not None and settings.token.get_secret_value() == SECRET_TOKEN
    from_env = WebhookNotifier(str(settings.url), token=settings.token)

    places = {
        "structlog events": repr(logs),
        "caplog": caplog.text + repr([(r.msg, r.args, r.__dict__) for r in caplog.records]),
        "stdout": out,
        "stderr": err,
        "Prefect API logs": repr([log.message for log in api_logs]),
        "state message": state.message or "",
        "exception": f"{exc!s} {exc!r}",
        "outcome errors": repr([b.error for b in exc.outcome.branches.values()]),
        "outcome": exc.outcome.model_dump_json(),
        "adapter": f"{notifier!s} {notifier!r} {from_env!r} {vars(notifier)!r}",
        "client headers": repr(notifier._client.headers),
        "settings": f"{settings!s} {settings!r} {settings.model_dump()!r}",
        "settings json": settings.model_dump_json(),
    }
    leaks = [where for where, text in places.items() if SECRET_TOKEN in text]
    assert not leaks, f"the token shows in: {leaks}"
    await from_env.aclose()


# --- once only ---------------------------------------------------------------------


async def test_a_lead_is_notified_once_with_its_idempotency_key(
    webhook_server: FaultServer, webhook_runtime: Runtime
) -> None:
    raw = record("once-only")

    first = await run(raw)
    assert first.is_completed(), first.message
    assert (await outcome_of(first)).branches["notify_team"].status is BranchStatus.OK
    assert len(webhook_server.received) == 1
    expected = f"notify:{person_id(raw['email'])}"
    assert webhook_server.received[0].headers["idempotency-key"] == expected

    again = await run(raw)

    assert again.is_completed(), again.message
    outcome = await outcome_of(again)
    assert {name: r.status for name, r in outcome.branches.items()} == dict.fromkeys(
        BRANCHES, BranchStatus.SKIPPED
    )
    assert len(webhook_server.received) == 1  # the Prefect cache kept it from repeating
    assert_keys(webhook_server, raw)
