"""The webhook notifier's endpoint on a loopback vendor (`FaultServer`), and the token
the `webhook_runtime` fixture (tests/integration/conftest.py) gives the notifier."""

from __future__ import annotations

from leadflow.loopback_vendor import FaultServer

SECRET_TOKEN = "s3cr3t-token-value"
HOOK = "/hook"


def hook_url(server: FaultServer) -> str:
    """The webhook endpoint the notifier is pointed at."""
    return f"{server.base_url}{HOOK}"
