"""Email over a real SMTP server (aiosmtpd), the signed generic webhook, Segment and
the JSONL sink.

Segment follows https://www.twilio.com/docs/segment/connections/sources/catalog/libraries/server/http-api
(track, batch, Basic auth with the write key, 32 KB / 500 KB limits, messageId
de-duplication). The webhook signature is leadflow's own scheme (README, "Webhook").
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import pytest
import respx
from aiosmtpd.smtp import AuthResult
from pydantic import SecretStr

from leadflow.integrations.base import LeadEvent
from leadflow.integrations.email_notifier import EmailNotifier, EmailSettings, message_id
from leadflow.integrations.errors import AuthenticationError, PermanentError, TransientError
from leadflow.integrations.file_events import JsonlEventSink
from leadflow.integrations.segment import MAX_BATCH_BYTES, SegmentEventSink, SegmentSettings
from leadflow.integrations.webhook_notifier import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    verify_signature,
)
from tests.support.builders import make_decision, make_lead
from tests.support.http import body
from tests.support.net import free_port
from tests.support.smtp import SmtpServer, email_to, start_smtp

SENDER = "leadflow@example.test"


def _email(server: SmtpServer, **extra) -> EmailNotifier:
    return email_to(server, sender=SENDER, **extra)


# --- email --------------------------------------------------------------------------


async def test_email_has_text_and_html_parts(smtp_server: SmtpServer) -> None:
    lead = make_lead(1, company="<b>Acme</b> & Co")
    await _email(smtp_server).notify(lead, make_decision(lead), idempotency_key="notify:1")

    (message,) = smtp_server.sink.messages
    assert smtp_server.sink.envelopes == [(SENDER, ["rep.one@example.test"])]
    assert message["To"] == "rep.one@example.test"
    assert message["Subject"] == "Hot lead (72): Ava Stone, VP Sales at <b>Acme</b> & Co"
    assert message["Message-ID"] == message_id("notify:1", SENDER)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Assigned to: rep.one@example.test" in text
    assert "&lt;b&gt;Acme&lt;/b&gt; &amp; Co" in html and "<b>Acme" not in html


async def test_email_digest_one_message_per_rep(smtp_server: SmtpServer) -> None:
    items = []
    for i, rep in enumerate(["a@x.test", "b@x.test", "a@x.test"]):
        lead = make_lead(i)
        items.append((lead, make_decision(lead, rep=rep), f"notify:{lead.id}"))
    await _email(smtp_server).notify_many(items)
    subjects = sorted((m["To"], m["Subject"]) for m in smtp_server.sink.messages)
    assert subjects == [
        ("a@x.test", "2 new leads for you"),
        ("b@x.test", "Hot lead (72): Ava Stone, VP Sales at Northwind"),
    ]


async def test_email_with_authentication() -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"right", handled=False)

    controller, server = start_smtp(authenticator=authenticator, auth_require_tls=False)
    try:
        lead = make_lead()
        good = _email(server, username="bot", password=SecretStr("right"))
        await good.notify(lead, make_decision(lead), idempotency_key="notify:a")
        bad = _email(server, username="bot", password=SecretStr("wrong"))
        with pytest.raises(AuthenticationError) as caught:
            await bad.notify(lead, make_decision(lead), idempotency_key="notify:b")
        assert "wrong" not in str(caught.value)
    finally:
        controller.stop()
    assert len(server.sink.messages) == 1
    assert logins[0] == (b"bot", b"right")


async def test_email_connection_refused_is_transient() -> None:
    notifier = EmailNotifier(
        EmailSettings(_env_file=None, host="127.0.0.1", port=free_port(), sender=SENDER)
    )
    lead = make_lead()
    with pytest.raises(TransientError):
        await notifier.notify(lead, make_decision(lead), idempotency_key="k")


def test_email_settings_name_what_is_missing() -> None:
    from leadflow.settings import SettingsError

    with pytest.raises(SettingsError, match="LEADFLOW_EMAIL_HOST, LEADFLOW_EMAIL_SENDER"):
        EmailNotifier(EmailSettings(_env_file=None))
    with pytest.raises(SettingsError, match="LEADFLOW_EMAIL_PASSWORD"):
        EmailNotifier(EmailSettings(_env_file=None, host="h", sender="s@x", username="u"))


async def test_email_probe_says_noop(smtp_server: SmtpServer) -> None:
    assert (await _email(smtp_server).probe()).startswith("SMTP NOOP answered 250")


ENCODED_WORD_ATTACK = "=?utf-8?q?Ava=0D=0AReply-To:_attacker@evil.test=0D=0AX-Priority:_1?="


def _head(raw: bytes) -> bytes:
    """The header section of a message as it arrived on the wire."""
    return raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]


async def test_an_encoded_word_in_a_lead_cannot_add_a_header(smtp_server: SmtpServer) -> None:
    """CVE-2024-6923: CPython 3.11.7 folds a decoded encoded word into the header
    as is. The lead's text never reaches the header as an encoded word."""
    lead = make_lead(1, first_name=ENCODED_WORD_ATTACK)
    await _email(smtp_server).notify(lead, make_decision(lead), idempotency_key="notify:1")

    (message,) = smtp_server.sink.messages
    head = _head(smtp_server.sink.raw[0])
    assert message["Reply-To"] is None and message["X-Priority"] is None
    assert b"Reply-To" not in head.replace(b"Reply-To:_", b"")  # only the inert text
    assert b"attacker@evil.test\r\n" not in head
    assert "= ?utf-8?q?Ava=0D=0AReply-To:_attacker@evil.test" in message["Subject"]


async def test_control_characters_never_reach_a_header(smtp_server: SmtpServer) -> None:
    lead = make_lead(1, company="Acme\x1b[31m\x07\x00 Ltd\r\nBcc: x@evil.test\u202e")
    await _email(smtp_server).notify(lead, make_decision(lead), idempotency_key="notify:1")

    (message,) = smtp_server.sink.messages
    head = _head(smtp_server.sink.raw[0])
    assert not any(byte in head for byte in (b"\x1b", b"\x07", b"\x00"))
    assert message["Bcc"] is None and smtp_server.sink.envelopes[0][1] == ["rep.one@example.test"]
    assert message["Subject"].endswith("at Acme[31m Ltd Bcc: x@evil.test")


async def test_every_message_has_a_date_and_a_message_id(smtp_server: SmtpServer) -> None:
    lead = make_lead()
    await _email(smtp_server).notify(lead, make_decision(lead), idempotency_key="notify:1")
    (message,) = smtp_server.sink.messages
    assert message["Date"].datetime is not None
    assert message["Message-ID"] == message_id("notify:1", SENDER)


@pytest.mark.parametrize(
    ("refusal", "error"),
    [("550 5.1.1 no such user", PermanentError), ("450 4.2.1 mailbox busy", TransientError)],
)
async def test_a_refused_recipient_keeps_its_smtp_code(
    smtp_server: SmtpServer, refusal: str, error: type[Exception]
) -> None:
    smtp_server.sink.refuse_rcpt = refusal
    lead = make_lead()
    with pytest.raises(error) as caught:
        await _email(smtp_server).notify(lead, make_decision(lead), idempotency_key="k")
    assert type(caught.value) is error  # a 5xx is permanent: the pipeline does not retry it
    code = refusal.split()[0]
    assert str(caught.value).startswith(f"email send: SMTP {code} recipient refused: ")
    assert "no such user" in str(caught.value) or "mailbox busy" in str(caught.value)
    assert smtp_server.sink.rcpt_attempts == 1


async def test_a_5xx_on_data_is_permanent_with_its_code(smtp_server: SmtpServer) -> None:
    smtp_server.sink.fail_code = 554
    lead = make_lead()
    with pytest.raises(PermanentError, match=r"^email send: SMTP 554: refused by the test"):
        await _email(smtp_server).notify(lead, make_decision(lead), idempotency_key="k")


def test_a_rep_that_cannot_be_a_mailbox_is_a_settings_error_at_start(monkeypatch, tmp_path) -> None:
    from leadflow.integrations.wiring import build_adapters
    from leadflow.rules import load_rules
    from leadflow.settings import AdapterChoice, Settings, SettingsError
    from tests.support.paths import EXAMPLES

    monkeypatch.setenv("LEADFLOW_EMAIL_HOST", "127.0.0.1")
    monkeypatch.setenv("LEADFLOW_EMAIL_SENDER", SENDER)
    settings = Settings(_env_file=None, adapters=AdapterChoice(notifier="email"))
    rules = load_rules(EXAMPLES / "rules.toml")
    bad = rules.model_copy(
        update={
            "assignment": rules.assignment.model_copy(
                update={"fallback_owner": "Ann Lee\r\n<ann@example.test>"}
            )
        }
    )
    build_adapters(settings, rules)  # the example's reps are mailboxes
    with pytest.raises(SettingsError) as caught:
        build_adapters(settings, bad)
    (line,) = str(caught.value).splitlines()
    assert "'Ann Lee <ann@example.test>' is not an email address" in line

    # `leadflow check` says the same, on the notifier's row
    from leadflow.integrations.checks import check_configuration

    rules_text = (EXAMPLES / "rules.toml").read_text()
    owner = next(x for x in rules_text.splitlines() if x.startswith("fallback_owner"))
    bad_rules = tmp_path / "rules.toml"
    bad_rules.write_text(rules_text.replace(owner, 'fallback_owner = "Ann Lee"'))
    monkeypatch.setenv("LEADFLOW_RULES_PATH", str(bad_rules))
    monkeypatch.setenv("LEADFLOW_ADAPTERS__NOTIFIER", "email")
    monkeypatch.chdir(tmp_path)
    found = check_configuration()
    (row,) = [r for r in found.results if r.kind == "notifier"]
    assert not row.ok and "'Ann Lee' is not an email address" in row.detail


async def test_a_crm_owner_that_is_not_a_mailbox_fails_that_lead_only(
    smtp_server: SmtpServer,
) -> None:
    lead = make_lead()
    with pytest.raises(PermanentError, match="rep 'Owner Name' is not an email address"):
        await _email(smtp_server).notify(
            lead, make_decision(lead, rep="Owner\nName"), idempotency_key="k"
        )
    await _email(smtp_server).notify(lead, make_decision(lead), idempotency_key="k2")
    assert len(smtp_server.sink.messages) == 1


# --- the signed webhook ---------------------------------------------------------------

HOOK = "https://hooks.example.test/leads"


async def test_webhook_signature_covers_timestamp_and_raw_body(router, transport) -> None:
    route = router.post(HOOK).mock(return_value=httpx.Response(200))
    notifier = WebhookNotifier(HOOK, signing_secret=SecretStr("whsec"), transport=transport)
    lead = make_lead()
    await notifier.notify(lead, make_decision(lead), idempotency_key="notify:1")

    request = route.calls.last.request
    timestamp = request.headers[TIMESTAMP_HEADER.lower()]
    signature = request.headers[SIGNATURE_HEADER.lower()]
    assert signature.startswith("v1=")
    assert verify_signature("whsec", timestamp, request.content, signature)
    assert not verify_signature("other", timestamp, request.content, signature)
    assert not verify_signature("whsec", timestamp, request.content + b" ", signature)
    assert not verify_signature("whsec", str(int(timestamp) - 3600), request.content, signature)
    assert "whsec" not in str(request.headers)


async def test_webhook_without_a_secret_is_unsigned(router, transport) -> None:
    route = router.post(HOOK).mock(return_value=httpx.Response(200))
    lead = make_lead()
    await WebhookNotifier(HOOK, transport=transport).notify(
        lead, make_decision(lead), idempotency_key="k"
    )
    assert SIGNATURE_HEADER.lower() not in route.calls.last.request.headers


# --- Segment ------------------------------------------------------------------------

SEGMENT = "https://api.segment.io"


def _event(i: int, *, reasons: int = 4) -> LeadEvent:
    lead = make_lead(i)
    decision = make_decision(lead)
    decision = decision.model_copy(update={"score_reasons": decision.score_reasons * reasons})
    return LeadEvent(
        event_id=f"event:{lead.id}",
        lead_id=lead.id,
        occurred_at=datetime(2026, 11, 22, 8, tzinfo=UTC),
        decision=decision,
    )


@pytest.fixture
def segment(transport) -> SegmentEventSink:
    return SegmentEventSink(
        SegmentSettings(_env_file=None, write_key=SecretStr("WRITEKEY")), transport=transport
    )


async def test_segment_track(segment, router: respx.Router) -> None:
    route = router.post(f"{SEGMENT}/v1/track").mock(
        return_value=httpx.Response(200, json={"success": True})
    )
    event = _event(1)
    await segment.record(event)
    await segment.record(event)

    request = route.calls.last.request
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"WRITEKEY:").decode()
    sent = [body(call) for call in route.calls]
    assert sent[0]["messageId"] == sent[1]["messageId"]  # Segment drops the repeat
    assert sent[0]["type"] == "track" and sent[0]["event"] == "Lead Processed"
    assert sent[0]["userId"] == event.lead_id
    assert sent[0]["timestamp"] == "2026-11-22T08:00:00+00:00"
    assert sent[0]["properties"]["tier"] == "hot" and sent[0]["properties"]["score"] == 72


async def test_segment_batches_stay_under_500_kb(segment, router: respx.Router) -> None:
    route = router.post(f"{SEGMENT}/v1/batch").mock(
        return_value=httpx.Response(200, json={"success": True})
    )
    events = [_event(i, reasons=60) for i in range(120)]  # ~8 KB each, ~1 MB in all
    await segment.record_many([*events, events[5]])

    sizes = [len(call.request.content) for call in route.calls]
    assert len(sizes) >= 2 and all(size <= MAX_BATCH_BYTES for size in sizes)
    ids = [m["messageId"] for call in route.calls for m in body(call)["batch"]]
    assert len(ids) == len(set(ids)) == 120


async def test_segment_rejects_an_event_over_32_kb(segment) -> None:
    with pytest.raises(PermanentError, match="over Segment's 32 KB"):
        await segment.record(_event(1, reasons=400))


async def test_segment_400_is_permanent(segment, router: respx.Router) -> None:
    router.post(f"{SEGMENT}/v1/track").mock(return_value=httpx.Response(400, text="too large"))
    with pytest.raises(PermanentError):
        await segment.record(_event(1))


# --- JSONL ----------------------------------------------------------------------------


async def test_jsonl_sink_writes_each_event_once_across_instances(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    first, second = JsonlEventSink(path), JsonlEventSink(path)
    await first.record_many([_event(1), _event(2)])
    await second.record_many([_event(2), _event(3)])  # another process, same file
    await first.record(_event(3))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["lead_id"] for row in rows] == [_event(i).lead_id for i in (1, 2, 3)]
    assert rows[0]["decision"]["tier"] == "hot"
