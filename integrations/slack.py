"""Slack notifiers: an incoming webhook, or `chat.postMessage` with a bot token.

Contract:
- https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks: POST the
  message JSON to the webhook URL; 200 `ok` on success; errors come as 4xx with a
  short text (`invalid_payload`, `no_text`, 403 `action_prohibited`, 404
  `channel_not_found`, 410 `channel_is_archived`), 429 with Retry-After past about
  one message a second per channel (the default limit here);
- https://docs.slack.dev/reference/methods/chat.postMessage: POST
  `https://slack.com/api/chat.postMessage` with `Authorization: Bearer xoxb-...`;
  HTTP 200 with `{"ok": false, "error": ...}` is a failure, translated here:
  `ratelimited` (or HTTP 429) honours Retry-After, `internal_error`/`fatal_error`/
  `service_unavailable`/`request_timeout` are transient, auth errors are
  AuthenticationError, the rest permanent;
- https://docs.slack.dev/messaging/formatting-message-text: in `text` fields escape
  `&`, `<`, `>` and nothing more. Mentions (`<!channel>`, `<!here>`, `<@U123>`) and
  links (`<https://...|label>`) all need `<`, so escaped lead data can neither ping
  anyone nor inject a link; `@channel` written plainly is not a mention.

Each lead is one message (Block Kit, with `text` as the fallback for notifications);
`notify_many` sends one digest per rep, hot leads first (see integrations.chat).
Block Kit's limits (https://docs.slack.dev/reference/block-kit/blocks/section-block):
a section's text at most 3,000 characters and a field 2,000, a header 150, at most
50 blocks a message: texts are cut to fit after escaping (`fit`), and a digest of
more than `MAX_DIGEST_LEADS` leads is split into several messages.
"""

from __future__ import annotations

import re
from typing import Any, Self

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import SlaNotice
from leadflow.integrations.chat import ChatNotifier, HookChatNotifier, HookSettings
from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import (
    AuthenticationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from leadflow.integrations.http import error_for_response, parse_retry_after
from leadflow.integrations.messages import LeadSummary
from leadflow.integrations.vendor import VendorHttp, VendorSettings
from leadflow.settings import Settings, SettingsError

MAX_DIGEST_LEADS = 40  # Slack allows 50 blocks a message: a header and 40 sections
MAX_SECTION = 3000  # characters in a section's text
MAX_FIELD = 2000  # characters in a section field
MAX_HEADER = 150  # characters in a header's plain text


def escape(text: str) -> str:
    """Slack's escaping for text fields: `&`, `<`, `>` only."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(*parts: tuple[str, bool], limit: int = MAX_SECTION) -> str:
    """Text of (piece, is_lead_text) parts, lead text escaped, at most `limit`
    characters once escaped: lead text is cut (never an escape in half) and "…"
    ends it."""
    shown = "".join(escape(piece) if untrusted else piece for piece, untrusted in parts)
    if len(shown) <= limit:
        return shown
    out: list[str] = []
    size = 0
    for piece, untrusted in parts:
        for ch in piece:
            rendered = escape(ch) if untrusted else ch
            if size + len(rendered) > limit - 1:
                return "".join(out) + "…"
            out.append(rendered)
            size += len(rendered)
    return "".join(out)


def _field(title: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": fit((f"*{title}*\n", False), (value, True), limit=MAX_FIELD)}


def lead_blocks(summary: LeadSummary) -> list[dict[str, Any]]:
    reasons = "\n".join(f"• {r}" for r in summary.reasons) or "no points"
    return [
        {"type": "header", "text": {"type": "plain_text", "text": summary.headline[:MAX_HEADER]}},
        {
            "type": "section",
            "fields": [
                _field("Email", summary.email),
                _field("Assigned to", summary.rep),
                _field("Score", f"{summary.score} ({summary.tier})"),
                _field("Follow-up", summary.follow_up),
            ],
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": fit(("*Why*\n", False), (reasons, True))},
        },
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": fit(("lead ", False), (summary.lead_id, True))}
            ],
        },
    ]


def digest_blocks(rep: str, summaries: list[LeadSummary]) -> list[dict[str, Any]]:
    """A header and one section per lead: at most MAX_DIGEST_LEADS leads (the chat
    notifier splits a longer digest, `slack_digest_fits`)."""
    header = f"{len(summaries)} new leads for {rep}"[:MAX_HEADER]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}}
    ]
    for s in summaries:
        # the headline's bold stars stay whole: the lead's text is what gets cut
        text = fit(
            ("*", False),
            (s.headline[:1000], True),
            ("*\n", False),
            (f"{s.email} · {s.follow_up}", True),
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return blocks


def notice_blocks(notice: SlaNotice) -> list[dict[str, Any]]:
    """An SLA step: its title, whom it is for, and what happened (lead text escaped)."""
    return [
        {"type": "header", "text": {"type": "plain_text", "text": notice.title[:MAX_HEADER]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": fit(("*For* ", False), (notice.to, True))},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": fit((notice.text, True))}},
    ]


def notice_text(notice: SlaNotice) -> str:
    """The notification's text of an SLA step (what a phone's banner shows)."""
    return fit((f"{notice.to}: {notice.text}", True))


def slack_digest_fits(rep: str, summaries: list[LeadSummary]) -> bool:
    return len(summaries) <= MAX_DIGEST_LEADS


def digest_text(rep: str, summaries: list[LeadSummary]) -> str:
    lines = [f"{len(summaries)} new leads for {rep}"]
    lines += [f"- {s.headline} ({s.email}; {s.follow_up})" for s in summaries]
    return fit(("\n".join(lines), True))  # the notification's text: kept short


# --- incoming webhook ---------------------------------------------------------------

_SLUG = re.compile(r"^[a-z_]{3,40}$")


def check_webhook_reply(response: httpx.Response) -> None:
    """Add Slack's short error code (`channel_is_archived`, ...) to the error."""
    error = error_for_response(response, "slack_webhook post", show_path=False)
    if error is None:
        return
    slug = response.text.strip()
    if _SLUG.match(slug):
        error.args = (f"{error.args[0]}: {slug}",)
    raise error


class SlackWebhookSettings(HookSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SLACK_WEBHOOK_")

    rate_limit_requests: int = Field(default=1, ge=1, description="messages per window")
    rate_limit_seconds: float = Field(default=1.0, gt=0, description="the window, in seconds")
    max_concurrent: int = Field(default=1, ge=1, description="requests in flight at once")


class SlackWebhookNotifier(HookChatNotifier):
    name = "slack_webhook"
    settings_class = SlackWebhookSettings
    env_prefix = "LEADFLOW_SLACK_WEBHOOK_"

    def check_reply(self, response: httpx.Response) -> None:
        check_webhook_reply(response)

    def payload_one(self, summary: LeadSummary) -> dict[str, Any]:
        return {"text": fit((summary.text(), True)), "blocks": lead_blocks(summary)}

    def payload_digest(self, rep: str, summaries: list[LeadSummary]) -> dict[str, Any]:
        return {"text": digest_text(rep, summaries), "blocks": digest_blocks(rep, summaries)}

    def payload_notice(self, notice: SlaNotice) -> dict[str, Any]:
        return {"text": notice_text(notice), "blocks": notice_blocks(notice)}

    def digest_fits(self, rep: str, summaries: list[LeadSummary]) -> bool:
        return slack_digest_fits(rep, summaries)


# --- chat.postMessage -----------------------------------------------------------------

TRANSIENT = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
AUTH = {
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "not_allowed_token_type",
    "ekm_access_denied",
}


def check_slack_reply(response: httpx.Response, operation: str = "slack") -> None:
    """Slack answers most failures with HTTP 200 and `ok: false`."""
    if response.status_code != 200:
        return  # leadflow.integrations.http judges the status
    try:
        data = response.json()
    except ValueError:
        raise PermanentError(f"{operation}: HTTP 200 with a body that is not JSON") from None
    if data.get("ok"):
        return
    error = str(data.get("error", "unknown_error"))
    message = f"{operation}: ok=false, error={error}"
    if error in ("ratelimited", "rate_limited"):
        raise RateLimited(message, parse_retry_after(response.headers.get("retry-after")))
    if error in TRANSIENT:
        raise TransientError(message)
    if error in AUTH:
        raise AuthenticationError(message)
    raise PermanentError(message)


class SlackSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SLACK_")

    base_url: str = Field(default="https://slack.com/api", description="Slack Web API root")
    token: SecretStr | None = Field(default=None, description="bot token, xoxb-...")
    token_block: str | None = Field(default=None, description="or: a Prefect Secret block name")
    channel: str = Field(default="", description="channel id or name to post to")
    rate_limit_requests: int = Field(default=1, ge=1, description="messages per window")
    rate_limit_seconds: float = Field(default=1.0, gt=0, description="the window, in seconds")


class SlackNotifier(ChatNotifier[SlackSettings]):
    name = "slack"
    settings_class = SlackSettings

    def __init__(
        self, own: SlackSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__()
        if not own.channel:
            raise SettingsError("LEADFLOW_SLACK_CHANNEL: required by the slack notifier, not set")
        self.channel = own.channel
        credential = Credential("LEADFLOW_SLACK_TOKEN", own.token, own.token_block)
        self.http = VendorHttp.from_settings(
            "slack", own, credential=credential.require("slack"), transport=transport
        )

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.channel}"

    @classmethod
    def from_settings(cls, settings: Settings, own: SlackSettings) -> Self:
        return cls(own)

    async def _post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        payload = {
            "channel": self.channel,
            "text": text,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        await self.http.request(
            "POST",
            "/chat.postMessage",
            "chat.postMessage",
            json=payload,
            check=lambda r: check_slack_reply(r, "slack chat.postMessage"),
        )

    async def post_one(self, summary: LeadSummary, key: str) -> None:
        await self._post(fit((summary.text(), True)), lead_blocks(summary))

    async def post_digest(self, rep: str, summaries: list[LeadSummary], key: str) -> None:
        await self._post(digest_text(rep, summaries), digest_blocks(rep, summaries))

    async def post_notice(self, notice: SlaNotice) -> None:
        await self._post(notice_text(notice), notice_blocks(notice))

    def digest_fits(self, rep: str, summaries: list[LeadSummary]) -> bool:
        return slack_digest_fits(rep, summaries)

    async def probe(self) -> str:
        reply = await self.http.json(
            "POST", "/auth.test", "auth.test", check=lambda r: check_slack_reply(r, "slack")
        )
        return f"authenticated as {reply.get('user', '?')} in {reply.get('team', '?')}"

    async def aclose(self) -> None:
        await self.http.aclose()
