"""The webhook notifier's contract, with respx standing in for the receiver: what one
notification looks like on the wire, how every status and transport failure maps onto
integrations.errors, how Retry-After is read, and how the adapter is configured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr

from leadflow.integrations.errors import (
    AdapterError,
    AuthenticationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from leadflow.integrations.http import (
    USER_AGENT,
    error_for_exception,
    error_for_response,
    parse_retry_after,
)
from leadflow.integrations.webhook_notifier import WebhookNotifier
from leadflow.integrations.wiring import build_adapter
from leadflow.models import Decision, Lead
from leadflow.settings import Settings, SettingsError
from tests.support.builders import sample_decision, sample_lead
from tests.support.paths import EXAMPLES

HOOK = "https://hooks.example.test/services/leadflow"
TOKEN = "s3cr3t-token-value"
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def notifier():
    adapter = WebhookNotifier(HOOK, token=SecretStr(TOKEN), timeout=2.0)
    yield adapter
    await adapter.aclose()


# --- on the wire -------------------------------------------------------------------


async def test_a_notification_on_the_wire(notifier: WebhookNotifier) -> None:
    lead = sample_lead()
    decision = sample_decision(lead)
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        route = router.post(HOOK).mock(return_value=httpx.Response(200, json={"ok": True}))
        await notifier.notify(lead, decision, idempotency_key=f"notify:{lead.id}")

    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == HOOK  # exactly the configured URL, no trailing "/" added
    assert request.url.path == "/services/leadflow"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["idempotency-key"] == f"notify:{lead.id}"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["content-type"] == "application/json"

    body = json.loads(request.content)
    assert set(body) == {"lead", "decision"}
    assert set(body["lead"]) == set(Lead.model_fields)
    assert set(body["decision"]) == set(Decision.model_fields)
    assert body["lead"]["id"] == lead.id
    assert body["lead"]["email"] == "ava.stone@northwind.test"
    assert body["lead"]["attributes"] == {"demo_requested": "yes"}
    assert body["decision"]["follow_up"] == "call"
    assert body["decision"]["score_reasons"] == [{"group": "title", "rule": "vp", "points": 30}]
    # the body is plain JSON that reads back as the same models
    assert Lead.model_validate(body["lead"]) == lead
    assert Decision.model_validate(body["decision"]) == decision


async def test_no_token_no_authorization_header() -> None:
    lead = sample_lead()
    adapter = WebhookNotifier(HOOK)
    try:
        with respx.mock(assert_all_called=True) as router:
            route = router.post(HOOK).mock(return_value=httpx.Response(204))
            await adapter.notify(lead, sample_decision(lead), idempotency_key="notify:x")
    finally:
        await adapter.aclose()
    assert "authorization" not in route.calls.last.request.headers


async def test_a_query_string_in_the_url_is_kept() -> None:
    url = f"{HOOK}?channel=sales"
    lead = sample_lead()
    adapter = WebhookNotifier(url)
    try:
        with respx.mock(assert_all_called=True) as router:
            route = router.post(url).mock(return_value=httpx.Response(200))
            await adapter.notify(lead, sample_decision(lead), idempotency_key="notify:x")
    finally:
        await adapter.aclose()
    assert str(route.calls.last.request.url) == url


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (httpx.Response(429, headers={"Retry-After": "3"}), RateLimited, 3.0),
        (httpx.Response(503), TransientError, None),
        (httpx.Response(401), AuthenticationError, None),
        (httpx.Response(422, json={"detail": "bad"}), PermanentError, None),
        (httpx.ReadTimeout("timed out"), TransientError, None),
        (httpx.ConnectError("connection refused"), TransientError, None),
    ],
    ids=["429", "503", "401", "422", "read-timeout", "connect-error"],
)
async def test_notify_raises_the_adapter_error(
    notifier: WebhookNotifier,
    reply: httpx.Response | Exception,
    error: type[AdapterError],
    retry_after: float | None,
) -> None:
    lead = sample_lead()
    with respx.mock(assert_all_called=True) as router:
        route = router.post(HOOK)
        if isinstance(reply, Exception):
            route.mock(side_effect=reply)
        else:
            route.mock(return_value=reply)
        with pytest.raises(AdapterError) as caught:
            await notifier.notify(lead, sample_decision(lead), idempotency_key="notify:x")
    assert type(caught.value) is error
    assert str(caught.value).startswith("webhook notify: ")
    assert TOKEN not in str(caught.value)
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == retry_after


# --- statuses and failures onto leadflow.integrations.errors --------------------------------


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", f"{HOOK}?token={TOKEN}")
    return httpx.Response(status, headers=headers, request=request)


def _http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


STATUS_CASES = [
    # status, headers, error class (None: success), retry_after
    (200, None, None, None),
    (400, None, PermanentError, None),
    (401, None, AuthenticationError, None),
    (403, None, AuthenticationError, None),
    (404, None, PermanentError, None),
    (408, None, TransientError, None),
    (409, None, PermanentError, None),
    (422, None, PermanentError, None),
    (429, None, RateLimited, None),
    (429, {"Retry-After": "7"}, RateLimited, 7.0),
    (429, {"Retry-After": "date+120"}, RateLimited, 120.0),
    (500, None, TransientError, None),
    (502, None, TransientError, None),
    (503, None, TransientError, None),
    (503, {"Retry-After": "30"}, RateLimited, 30.0),
    (503, {"Retry-After": "date+60"}, RateLimited, 60.0),
]


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    STATUS_CASES,
    ids=[f"{s}-{(h or {}).get('Retry-After', 'plain')}" for s, h, _, _ in STATUS_CASES],
)
def test_error_for_response(
    status: int,
    headers: dict[str, str] | None,
    error: type[AdapterError] | None,
    retry_after: float | None,
) -> None:
    if headers and headers["Retry-After"].startswith("date+"):
        headers = {"Retry-After": _http_date(float(headers["Retry-After"][5:]))}

    result = error_for_response(_response(status, headers), "webhook notify")

    if error is None:
        assert result is None
        return
    assert type(result) is error
    message = str(result)
    assert message == f"webhook notify: HTTP {status} from POST /services/leadflow"
    assert TOKEN not in message  # the query string, where credentials live, is left out
    if error is RateLimited:
        assert isinstance(result, RateLimited)
        if retry_after is None:
            assert result.retry_after is None
        else:  # an HTTP date has a resolution of one second
            assert result.retry_after == pytest.approx(retry_after, abs=2)
    assert isinstance(result, TransientError) == (error in (TransientError, RateLimited))


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectTimeout("connect timed out"), TransientError),
        (httpx.ReadTimeout("read timed out"), TransientError),
        (httpx.WriteTimeout("write timed out"), TransientError),
        (httpx.PoolTimeout("pool timed out"), TransientError),
        (httpx.ConnectError("connection refused"), TransientError),
        (httpx.ReadError("connection reset"), TransientError),
        (httpx.RemoteProtocolError("server disconnected"), TransientError),
        (httpx.UnsupportedProtocol("unsupported scheme"), PermanentError),
        (httpx.DecodingError("bad gzip"), PermanentError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__,
)
def test_error_for_exception(exc: httpx.HTTPError, error: type[AdapterError]) -> None:
    # httpx messages can carry the URL, and with it a token in the query string
    exc.args = (f"{exc.args[0]} for {HOOK}?token={TOKEN}",)

    result = error_for_exception(exc, "webhook notify")

    assert type(result) is error
    assert str(result) == f"webhook notify: {type(exc).__name__}"


# --- Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("-5", 0.0),  # never a negative wait
        ("soon", None),
        ("12abc", None),
        ("Thu, 01 Jan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
        ("Sun, 22 Nov 2026 12:01:30 GMT", 90.0),
        ("Sun, 22 Nov 2026 12:01:00 -0000", 60.0),  # no zone given: read as UTC
        ("Sun, 22 Nov 2026 13:02:00 +0100", 120.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_future_date_without_now() -> None:
    assert parse_retry_after(_http_date(45)) == pytest.approx(45, abs=2)


# --- configuration -----------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No LEADFLOW_WEBHOOK_* in the environment and no .env in the working folder."""
    monkeypatch.chdir(tmp_path)
    for name in ("URL", "TOKEN", "TIMEOUT_SECONDS"):
        monkeypatch.delenv(f"LEADFLOW_WEBHOOK_{name}", raising=False)
    return monkeypatch


def _build() -> WebhookNotifier:
    settings = Settings(_env_file=None, rules_path=EXAMPLES / "rules.toml")
    return build_adapter("notifier", "webhook", settings)


def test_from_settings_without_a_url_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="LEADFLOW_WEBHOOK_URL"):
        _build()


def test_from_settings_with_a_bad_url_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LEADFLOW_WEBHOOK_URL", "not a url")
    with pytest.raises(SettingsError, match="LEADFLOW_WEBHOOK_URL"):
        _build()


def test_from_settings_with_a_bad_timeout_does_not_echo_the_token(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("LEADFLOW_WEBHOOK_URL", HOOK)
    clean_env.setenv("LEADFLOW_WEBHOOK_TOKEN", TOKEN)
    clean_env.setenv("LEADFLOW_WEBHOOK_TIMEOUT_SECONDS", "0")
    with pytest.raises(SettingsError, match="LEADFLOW_WEBHOOK_TIMEOUT_SECONDS") as caught:
        _build()
    assert TOKEN not in str(caught.value)


async def test_from_settings_reads_url_and_token_from_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("LEADFLOW_WEBHOOK_URL", HOOK)
    clean_env.setenv("LEADFLOW_WEBHOOK_TOKEN", TOKEN)
    adapter = _build()
    lead = sample_lead()
    try:
        assert TOKEN not in f"{adapter!r} {adapter!s} {vars(adapter)!r}"
        with respx.mock(assert_all_called=True) as router:
            route = router.post(HOOK).mock(return_value=httpx.Response(200))
            await adapter.notify(lead, sample_decision(lead), idempotency_key="notify:x")
    finally:
        await adapter.aclose()
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
