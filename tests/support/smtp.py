"""A real SMTP server for tests (aiosmtpd on a free loopback port) and the email notifier
pointed at it. The `smtp_server` fixture (tests/contract/conftest.py) starts one per test."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.net import free_port


class SmtpSink:
    """aiosmtpd handler: keeps every message (parsed, and its raw bytes); `fail_code`
    makes DATA answer with it, `refuse_rcpt` (e.g. "550 5.1.1 no such user") RCPT."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.raw: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_code: int | None = None
        self.refuse_rcpt: str | None = None
        self.rcpt_attempts = 0
        self.logins: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        self.rcpt_attempts += 1
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.fail_code is not None:
            return f"{self.fail_code} refused by the test"
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.raw.append(envelope.original_content or envelope.content)
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    sink: SmtpSink


def start_smtp(**controller_options: Any) -> tuple[Controller, SmtpServer]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    return controller, SmtpServer("127.0.0.1", port, sink)


def email_to(server: SmtpServer, **settings: Any):
    """The email notifier sending through `server` (no STARTTLS), from
    leadflow@example.test unless `settings` say otherwise."""
    from leadflow.integrations.email_notifier import EmailNotifier, EmailSettings

    values = {"host": server.host, "port": server.port, "sender": "leadflow@example.test"}
    return EmailNotifier(EmailSettings(_env_file=None, start_tls=False, **{**values, **settings}))
