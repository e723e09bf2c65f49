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
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from aiosmtpd.controller import Controller

from leadflow.models import Decision, FollowUpType, Lead, ScoreReason


def make_lead(i: int = 1, **extra: object) -> Lead:
    return Lead.from_record(
        {
            "email": f"Ava{i}.Stone@Northwind.test",
            "first_name": "Ava",
            "last_name": "Stone",
            "company": "Northwind",
            "title": "VP Sales",
            "country": "us",
            "source": "website",
            **extra,
        }
    )


def make_decision(lead: Lead, *, rep: str = "rep.one@example.test", score: int = 72) -> Decision:
    return Decision(
        lead_id=lead.id,
        score=score,
        score_reasons=[
            ScoreReason(group="fit", rule="title: vp", points=30),
            ScoreReason(group="engagement", rule="demo_requested", points=25),
            ScoreReason(group="fit", rule="country: US", points=10),
            ScoreReason(group="fit", rule="source: website", points=7),
        ],
        tier="hot",
        follow_up=FollowUpType.CALL,
        sla_minutes=15,
        due_at=datetime(2026, 11, 22, 9, 15, tzinfo=UTC),
        rep=rep,
        assignment_rule="territory:na/round_robin",
        rules_version="test-1",
    )


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
    """aiosmtpd handler: keeps every message; `fail_code` makes DATA answer with it."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_code: int | None = None
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.fail_code is not None:
            return f"{self.fail_code} refused by the test"
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
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


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port, stopped afterwards."""
    controller, server = start_smtp()
    try:
        yield server
    finally:
        controller.stop()
