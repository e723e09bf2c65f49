"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is
received"), posting an Adaptive Card.

Contract (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
and the Adaptive Card schema, https://adaptivecards.io/explorer/): POST
`{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard 1.4>}]}` to the
workflow URL, which answers 202 Accepted. The URL carries its own signature, so it
is the credential (a SecretStr, or a Prefect Secret block).

TextBlock text is Markdown in Teams: lead data has Markdown's punctuation
backslash-escaped so it cannot inject a link or formatting; mentions in Teams need
`<at>` plus an entity in `msteams`, which the card never carries, so lead data
cannot ping anyone. Default limit: 4 requests a second (Teams' documented limit for
webhooks into one channel). A message is at most 28 KB (Microsoft's documented limit
for a webhook message): a digest that would be larger is split into several cards
(`MAX_MESSAGE_BYTES`), and no text block holds more than `MAX_TEXT` characters.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import SlaNotice
from leadflow.integrations.chat import HookChatNotifier, HookSettings
from leadflow.integrations.messages import LeadSummary

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~])")
MAX_MESSAGE_BYTES = 28 * 1024  # Microsoft's limit for a message posted to a webhook
MAX_TEXT = 2000  # characters in one text block: a lead with long fields stays readable


def escape_markdown(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def _text(text: str, **style: Any) -> dict[str, Any]:
    shown = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
    return {"type": "TextBlock", "text": escape_markdown(shown), "wrap": True, **style}


def payload_bytes(payload: dict[str, Any]) -> int:
    """The size of a payload as posted (the larger of the JSON encodings httpx uses)."""
    return len(json.dumps(payload).encode())


def card(body: list[dict[str, Any]], fallback: str) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "fallbackText": fallback,
                    "body": body,
                },
            }
        ],
    }


def lead_card(summary: LeadSummary) -> dict[str, Any]:
    facts = [
        ("Email", summary.email),
        ("Score", f"{summary.score} ({summary.tier})"),
        ("Follow-up", summary.follow_up),
        ("Assigned to", summary.rep),
    ]
    body = [
        _text(summary.headline, size="Medium", weight="Bolder"),
        {
            "type": "FactSet",
            "facts": [{"title": t, "value": escape_markdown(v)} for t, v in facts],
        },
        _text("Why: " + ("; ".join(summary.reasons) or "no points"), isSubtle=True),
    ]
    return card(body, summary.text())


def digest_card(rep: str, summaries: list[LeadSummary]) -> dict[str, Any]:
    body = [_text(f"{len(summaries)} new leads for {rep}", size="Medium", weight="Bolder")]
    body += [_text(f"{s.headline} - {s.email} - {s.follow_up}") for s in summaries]
    fallback = "\n".join(f"{s.headline} ({s.email})" for s in summaries)
    return card(body, fallback)


def notice_card(notice: SlaNotice) -> dict[str, Any]:
    """An SLA step: its title, whom it is for, and what happened."""
    body = [
        _text(notice.title, size="Medium", weight="Bolder"),
        {"type": "FactSet", "facts": [{"title": "For", "value": escape_markdown(notice.to)}]},
        _text(notice.text),
    ]
    return card(body, f"{notice.to}: {notice.text}")


class TeamsSettings(HookSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_TEAMS_")

    rate_limit_requests: int = Field(default=4, ge=1, description="messages per window")
    rate_limit_seconds: float = Field(default=1.0, gt=0, description="the window, in seconds")
    max_concurrent: int = Field(default=2, ge=1, description="requests in flight at once")


class TeamsNotifier(HookChatNotifier):
    name = "teams"
    settings_class = TeamsSettings
    env_prefix = "LEADFLOW_TEAMS_"

    def payload_one(self, summary: LeadSummary) -> dict[str, Any]:
        return lead_card(summary)

    def payload_digest(self, rep: str, summaries: list[LeadSummary]) -> dict[str, Any]:
        return digest_card(rep, summaries)

    def payload_notice(self, notice: SlaNotice) -> dict[str, Any]:
        return notice_card(notice)

    def digest_fits(self, rep: str, summaries: list[LeadSummary]) -> bool:
        return payload_bytes(digest_card(rep, summaries)) <= MAX_MESSAGE_BYTES
