"""Email to the assigned rep over SMTP (aiosmtplib), with a text and an HTML part.

STARTTLS and authentication are optional (a local relay needs neither; a provider's
submission port 587 needs both), implicit TLS (port 465) is `use_tls`. The
Message-ID is derived from the once-only key, so a mail system that de-duplicates
by Message-ID drops a resend; the adapter also remembers what it has sent.
`notify_many` sends one digest per rep, hot leads first. Lead data is HTML-escaped
in the HTML part. SMTP replies: 4xx is transient (greylisting, a full queue), 5xx
permanent (a rejected recipient, not retried), the SMTP code kept in the error;
connection failures and timeouts transient.

Headers are built from untrusted text (a lead's name and company in the Subject, a
rep's address in To), so `header_text` cleans it first, whatever the interpreter:
control characters, line breaks and Unicode format characters are removed, and the
start of an RFC 2047 encoded word (`=?`) is broken (`= ?`), so the email package
never decodes lead text into CR LF and an injected header (CVE-2024-6923: CPython
3.11.7 folds a decoded encoded word into the header as is). Every message has
`Date` and `Message-ID`. The reps of the rules are checked at start-up
(`check_recipients`): an address that cannot be a mailbox is a settings error
naming the rep, not a failure of every mail to them.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Self

import aiosmtplib
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import Notifier, SlaNotice
from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import AuthenticationError, PermanentError, TransientError
from leadflow.integrations.messages import LeadSummary, group_by_rep
from leadflow.integrations.ratelimit import RateLimiter
from leadflow.integrations.redact import redact
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


_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
HEADER_LIMIT = 200


def header_text(text: str, limit: int = HEADER_LIMIT) -> str:
    """Untrusted text made safe for a header: line breaks become spaces; other
    control and format characters (NUL, BEL, ESC, bidi overrides) go; `=?` cannot
    start an encoded word; runs of spaces collapse; at most `limit` characters."""
    text = _BREAKS.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    text = _SPACES.sub(" ", text.replace("=?", "= ?")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mailbox(address: str) -> str | None:
    """`address` if it can be a mailbox (local@domain, nothing else: no name, no
    spaces, no control characters), else None."""
    if not address or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in address):
        return None
    try:
        parsed = Address(addr_spec=address)
    except (HeaderParseError, IndexError, ValueError):
        return None
    return address if parsed.username and parsed.domain else None


def message_id(key: str, sender: str) -> str:
    domain = sender.rpartition("@")[2] or "leadflow.local"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build_message(
    sender: str, to: str, subject: str, text: str, html_body: str, key: str
) -> EmailMessage:
    """The message, every header from cleaned text (`header_text`); `to` must be a
    mailbox (a PermanentError naming it otherwise)."""
    recipient = mailbox(to)
    if recipient is None:
        raise PermanentError(f"email: rep {header_text(to, 80)!r} is not an email address")
    message = EmailMessage()
    message["From"] = header_text(sender)
    message["To"] = recipient
    message["Subject"] = header_text(subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(key, parseaddr(sender)[1])
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


def smtp_error(
    exc: aiosmtplib.SMTPResponseException, what: str = "", *, password: str | None = None
) -> TransientError | PermanentError:
    """An SMTP reply as the adapter error: 4xx transient, 5xx permanent (not retried),
    the code and the server's words kept (without the password, should it echo it)."""
    kind = TransientError if 400 <= exc.code < 500 else PermanentError
    said = redact(header_text(exc.message, 120), password)
    return kind(f"email send: SMTP {exc.code}{' ' + what if what else ''}: {said}")


class EmailNotifier(Notifier[EmailSettings]):
    name = "email"
    settings_class = EmailSettings

    def __init__(self, own: EmailSettings) -> None:
        missing = [n for n in ("host", "sender") if not getattr(own, n)]
        if missing:
            names = ", ".join(f"LEADFLOW_EMAIL_{n.upper()}" for n in missing)
            raise SettingsError(f"{names}: required by the email notifier, not set")
        if mailbox(parseaddr(own.sender)[1]) is None or header_text(own.sender) != own.sender:
            raise SettingsError(
                f"LEADFLOW_EMAIL_SENDER: {header_text(own.sender, 80)!r} is not an email address "
                "(name@example.com, or Name <name@example.com>)"
            )
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

    def check_recipients(self, reps: Sequence[str]) -> None:
        """Every rep of the rules must be a mailbox: found at start-up, naming the
        rep, rather than as a failure of every mail to them."""
        bad = [rep for rep in reps if mailbox(rep) is None]
        if bad:
            shown = ", ".join(repr(header_text(rep, 80)) for rep in bad)
            raise SettingsError(
                f"rules, assignment: {shown} is not an email address, and the email "
                "notifier mails each lead to its rep (and a missed SLA to the manager); "
                "use the person's address as their id"
            )

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
                raise AuthenticationError(f"email send: SMTP {exc.code} (login refused)") from None
            except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient refused
                refused = exc.recipients[0]
                raise smtp_error(refused, "recipient refused", password=password) from None
            except aiosmtplib.SMTPResponseException as exc:
                raise smtp_error(exc, password=password) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise TransientError(f"email send: {type(exc).__name__}") from None

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

    async def sla_notice(self, notice: SlaNotice, *, idempotency_key: str) -> None:
        """Mail an SLA step to whom it is for (the rep, or the team's manager)."""
        if idempotency_key in self._sent:
            return
        body = f"<p><b>{html.escape(notice.title)}</b></p><p>{html.escape(notice.text)}</p>"
        message = build_message(
            self.settings.sender, notice.to, notice.title, notice.text, body, idempotency_key
        )
        await self.send(message)
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
