"""Helpers for the vendor contract tests.

Each adapter is built with `transport=httpx.MockTransport(router.async_handler)`: a
respx router stands in for the vendor, injected into the adapter's own client, with
no global patching. `assert_all_mocked` makes any request the test did not expect
fail loudly.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from aiosmtpd.controller import Controller

from leadflow.testing import make_decision, make_lead

__all__ = ["make_decision", "make_lead"]


@pytest.fixture
def router() -> Iterator[respx.Router]:
    router = respx.Router(assert_all_mocked=True)
    yield router


@pytest.fixture
def transport(router: respx.Router) -> httpx.MockTransport:
    return httpx.MockTransport(router.async_handler)


def body(call) -> dict:
    return json.loads(call.request.content)


# --- a real SMTP server ------------------------------------------------------------


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_smtp(**controller_options: Any) -> tuple[Controller, SmtpServer]:
    sink = SmtpSink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    return controller, SmtpServer("127.0.0.1", port, sink)


def email_to(server: SmtpServer, **settings: Any):
    """The email notifier sending through `server` (no STARTTLS), from
    leadflow@example.test unless `settings` say otherwise."""
    from leadflow.integrations.email_notifier import EmailNotifier, EmailSettings

    values = {"host": server.host, "port": server.port, "sender": "leadflow@example.test"}
    return EmailNotifier(EmailSettings(_env_file=None, start_tls=False, **{**values, **settings}))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port, stopped afterwards."""
    controller, server = start_smtp()
    try:
        yield server
    finally:
        controller.stop()
