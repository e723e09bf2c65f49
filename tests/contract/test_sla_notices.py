"""SLA steps (a reminder, a reassignment, a manager's escalation) through each
notifier that reaches people: Slack (webhook and chat.postMessage), Teams, email.

Each says whom it is for, keeps lead text from formatting or mentioning anyone, and
is sent once per key by one adapter instance (the watcher's once-only store covers
across processes, tests/flows/test_sla_watch.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import respx
from pydantic import SecretStr

from leadflow.integrations.base import SlaNotice
from leadflow.integrations.slack import (
    SlackNotifier,
    SlackSettings,
    SlackWebhookNotifier,
    SlackWebhookSettings,
)
from leadflow.integrations.teams import TeamsNotifier, TeamsSettings
from tests.support.http import body
from tests.support.smtp import SmtpServer, email_to

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
TEAMS = "https://prod-00.westus.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=SIG"
POST_MESSAGE = "https://slack.com/api/chat.postMessage"


def _notice(kind: str = "reminder", **extra) -> SlaNotice:
    values = {
        "kind": kind,
        "to": "rep.one@example.test",
        "lead_id": "lead-1",
        "email": "ava@northwind.test",
        "who": "Ava <!channel> Stone at <https://evil.test|Northwind> & Co",
        "tier": "hot",
        "due_at": datetime(2026, 12, 5, 9, 15, tzinfo=UTC),
        "rep": "rep.one@example.test",
        "reason": "no first touch in the CRM by the deadline (overdue by 2 min)",
    }
    return SlaNotice.model_validate(values | extra)


def _texts(payload: dict) -> list[str]:
    """Every text a Slack message shows as mrkdwn (the fallback text included)."""
    found = [payload["text"]]
    for block in payload["blocks"]:
        item = block.get("text") or {}
        if item.get("type") == "mrkdwn":
            found.append(item["text"])
    return found


async def test_a_slack_webhook_posts_the_step_once_naming_whom_it_is_for(
    router: respx.Router, transport
) -> None:
    route = router.post(HOOK).mock(return_value=httpx.Response(200, text="ok"))
    notifier = SlackWebhookNotifier(
        SlackWebhookSettings(_env_file=None, url=SecretStr(HOOK)), transport=transport
    )
    notice = _notice()
    await notifier.sla_notice(notice, idempotency_key="sla-remind:lead-1")
    await notifier.sla_notice(notice, idempotency_key="sla-remind:lead-1")

    assert route.call_count == 1
    sent = body(route.calls.last)
    assert sent["blocks"][0]["text"]["text"].startswith("SLA reminder: Ava")
    assert sent["text"].startswith("rep.one@example.test: SLA reminder for rep.one@example.test")
    assert "*For* rep.one@example.test" in _texts(sent)
    for text in _texts(sent):
        assert "<" not in text and ">" not in text  # no <!channel>, no <url|label>
    assert "overdue by 2 min" in sent["blocks"][2]["text"]["text"]


async def test_slack_chat_post_message_carries_the_escalation_to_the_channel(
    router: respx.Router, transport
) -> None:
    route = router.post(POST_MESSAGE).mock(
        return_value=httpx.Response(200, json={"ok": True, "channel": "C0123", "ts": "1.2"})
    )
    notifier = SlackNotifier(
        SlackSettings(_env_file=None, token=SecretStr("xoxb-1-2-secret"), channel="C0123"),
        transport=transport,
    )
    notice = _notice(
        "escalated", to="nora@example.test", rep="rep.two@example.test",
        previous_rep="rep.one@example.test",
    )  # fmt: skip
    await notifier.sla_notice(notice, idempotency_key="sla-escalate:lead-1")

    sent = body(route.calls.last)
    assert sent["channel"] == "C0123"
    assert sent["blocks"][0]["text"]["text"].startswith("SLA missed: Ava")
    assert "*For* nora@example.test" in _texts(sent)
    assert "reassigned from rep.one@example.test to rep.two@example.test" in sent["text"]


async def test_teams_posts_the_step_as_an_adaptive_card(router: respx.Router, transport) -> None:
    route = router.post(TEAMS).mock(return_value=httpx.Response(202))
    notifier = TeamsNotifier(
        TeamsSettings(_env_file=None, url=SecretStr(TEAMS)), transport=transport
    )
    notice = _notice("reassigned", rep="rep.two@example.test", to="rep.two@example.test",
                     previous_rep="rep.one@example.test")  # fmt: skip
    await notifier.sla_notice(notice, idempotency_key="sla-reassigned:lead-1")
    await notifier.sla_notice(notice, idempotency_key="sla-reassigned:lead-1")

    assert route.call_count == 1
    card = body(route.calls.last)["attachments"][0]["content"]
    assert card["body"][0]["text"].startswith("Lead reassigned to you: Ava")
    assert card["body"][1]["facts"] == [{"title": "For", "value": r"rep\.two@example\.test"}]
    # a Markdown link in lead text is escaped: Teams shows it as text
    assert r"\<https://evil\.test\|Northwind\>" in card["body"][0]["text"]
    assert "is now rep.two@example.test's" in card["fallbackText"]


async def test_email_mails_the_step_to_whom_it_is_for(smtp_server: SmtpServer) -> None:
    notifier = email_to(smtp_server)
    notice = _notice("escalated", to="nora@example.test", who="Ava Stone at <b>Northwind</b>")
    await notifier.sla_notice(notice, idempotency_key="sla-escalate:lead-1")
    await notifier.sla_notice(notice, idempotency_key="sla-escalate:lead-1")

    (message,) = smtp_server.sink.messages
    assert smtp_server.sink.envelopes == [("leadflow@example.test", ["nora@example.test"])]
    assert message["Subject"] == "SLA missed: Ava Stone at <b>Northwind</b>"
    assert "still with rep.one@example.test" in message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "&lt;b&gt;Northwind&lt;/b&gt;" in html and "<b>Northwind" not in html


def test_a_manager_who_cannot_be_a_mailbox_is_a_settings_error_at_start(smtp_server) -> None:
    from leadflow.settings import SettingsError

    with pytest.raises(SettingsError, match="'Nora Manager'"):
        email_to(smtp_server).check_recipients(["rep.one@example.test", "Nora Manager"])
