"""Email to the assigned rep over SMTP (aiosmtplib), with a text and an HTML part.

STARTTLS and authentication are optional (a local relay needs neither; a provider's
submission port 587 needs both), implicit TLS (port 465) is `use_tls`. The
Message-ID is derived from the once-only key, so a mail system that de-duplicates
by Message-ID drops a resend; the adapter also remembers what it has sent.
`notify_many` sends one digest per rep, hot leads first. Lead data is HTML-escaped
in the HTML part. SMTP replies: 4xx is transient (greylisting, a full queue), 5xx
permanent (a rejected recipient); connection failures and timeouts transient.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Self

import aiosmtplib
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import Notifier
from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import AuthenticationError, PermanentError, TransientError
from leadflow.integrations.messages import LeadSummary, group_by_rep
from leadflow.integrations.ratelimit import RateLimiter
from leadflow.models import Decision, Lead
from leadflow.settings import AdapterSettings, Settings, SettingsError


class EmailSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_EMAIL_")

    host: str = Field(default="", description="SMTP server")
    port: int = Field(default=587, ge=1, le=65535, description="587 submission, 465 TLS, 25")
    sender: str = Field(default="", description="From: address")
    username: str | None = Field(default=None, description="SMTP login, if the server needs one")
    password: SecretStr | None = Field(default=None, description="SMTP password")
    password_block: str | None = Field(default=None, description="or: a Prefect Secret block")
    start_tls: bool | None = Field(
        default=None, description="STARTTLS: true, false, or unset to use it when offered"
    )
    use_tls: bool = Field(default=False, description="implicit TLS from the start (port 465)")
    timeout_seconds: float = Field(default=30.0, gt=0, description="per-connection timeout")
    rate_limit_requests: int = Field(default=10, ge=1, description="messages per window")
    rate_limit_seconds: float = Field(default=1.0, gt=0, description="the window, in seconds")
    max_concurrent: int = Field(default=4, ge=1, description="SMTP sessions at once")


def message_id(key: str, sender: str) -> str:
    domain = sender.rpartition("@")[2] or "leadflow.local"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build_message(
    sender: str, to: str, subject: str, text: str, html_body: str, key: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id(key, sender)
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return message


def lead_html(summary: LeadSummary) -> str:
    e = html.escape
    reasons = "".join(f"<li>{e(r)}</li>" for r in summary.reasons) or "<li>no points</li>"
    return (
        f"<h2>{e(summary.headline)}</h2>"
        f"<p>Email: {e(summary.email)}<br>Follow-up: {e(summary.follow_up)}<br>"
        f"Assigned to: {e(summary.rep)}</p><p>Why:</p><ul>{reasons}</ul>"
    )


class EmailNotifier(Notifier[EmailSettings]):
    name = "email"
    settings_class = EmailSettings

    def __init__(self, own: EmailSettings) -> None:
        missing = [n for n in ("host", "sender") if not getattr(own, n)]
        if missing:
            names = ", ".join(f"LEADFLOW_EMAIL_{n.upper()}" for n in missing)
            raise SettingsError(f"{names}: required by the email notifier, not set")
        self.settings = own
        self.password = (
            Credential("LEADFLOW_EMAIL_PASSWORD", own.password, own.password_block)
            if own.username
            else None
        )
        if self.password is not None:
            self.password.require("email")
        self.limiter = RateLimiter(
            own.rate_limit_requests, own.rate_limit_seconds, max_concurrent=own.max_concurrent
        )
        self._sent: set[str] = set()

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.settings.host}:{self.settings.port}"

    @classmethod
    def from_settings(cls, settings: Settings, own: EmailSettings) -> Self:
        return cls(own)

    async def send(self, message: EmailMessage) -> None:
        own = self.settings
        password = (await self.password.get()).get_secret_value() if self.password else None
        async with self.limiter.slot():
            try:
                await aiosmtplib.send(
                    message,
                    hostname=own.host,
                    port=own.port,
                    username=own.username,
                    password=password,
                    start_tls=own.start_tls,
                    use_tls=own.use_tls,
                    timeout=own.timeout_seconds,
                )
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise AuthenticationError(f"email send: SMTP {exc.code} (login refused)") from exc
            except aiosmtplib.SMTPResponseException as exc:
                kind = TransientError if 400 <= exc.code < 500 else PermanentError
                raise kind(f"email send: SMTP {exc.code} {exc.message[:80]}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise TransientError(f"email send: {type(exc).__name__}") from exc

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        if idempotency_key in self._sent:
            return
        s = LeadSummary.of(lead, decision)
        await self.send(
            build_message(
                self.settings.sender,
                decision.rep,
                s.headline,
                s.text(),
                lead_html(s),
                idempotency_key,
            )
        )
        self._sent.add(idempotency_key)

    async def notify_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> None:
        fresh = [item for item in items if item[2] not in self._sent]
        for rep, entries in group_by_rep(fresh).items():
            summaries = list({key: s for s, key in entries}.values())
            keys = sorted({key for _, key in entries})
            if len(summaries) == 1:
                s = summaries[0]
                message = build_message(
                    self.settings.sender, rep, s.headline, s.text(), lead_html(s), keys[0]
                )
                await self.send(message)
                self._sent.update(keys)
                continue
            subject = f"{len(summaries)} new leads for you"
            text = "\n\n".join(s.text() for s in summaries)
            body = "<hr>".join(lead_html(s) for s in summaries)
            digest_key = "digest:" + ",".join(keys)
            await self.send(
                build_message(self.settings.sender, rep, subject, text, body, digest_key)
            )
            self._sent.update(keys)

    async def probe(self) -> str:
        own = self.settings
        client = aiosmtplib.SMTP(
            hostname=own.host,
            port=own.port,
            start_tls=own.start_tls,
            use_tls=own.use_tls,
            timeout=own.timeout_seconds,
        )
        try:
            async with client:
                code, _ = await client.noop()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientError(f"email probe: {type(exc).__name__}") from exc
        return f"SMTP NOOP answered {code}"
