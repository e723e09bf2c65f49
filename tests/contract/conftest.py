"""Fixtures of the vendor contract tests (their helpers: tests/support/).

Each adapter is built with `transport=httpx.MockTransport(router.async_handler)`: a
respx router stands in for the vendor, injected into the adapter's own client, with
no global patching. `assert_all_mocked` makes any request the test did not expect
fail loudly.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from tests.support.smtp import SmtpServer, start_smtp


@pytest.fixture
def router() -> Iterator[respx.Router]:
    router = respx.Router(assert_all_mocked=True)
    yield router


@pytest.fixture
def transport(router: respx.Router) -> httpx.MockTransport:
    return httpx.MockTransport(router.async_handler)


# --- a real SMTP server ------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port, stopped afterwards."""
    controller, server = start_smtp()
    try:
        yield server
    finally:
        controller.stop()
