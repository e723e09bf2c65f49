# leadflow-acme/tests/test_contract.py
"""leadflow's adapter contract, run over the Acme notifier against a stand-in for Acme."""

import json

import httpx
import pytest
from leadflow_acme import AcmeNotifier, AcmeSettings

from leadflow.testing import HttpVendor, NotifierContract


def acme_answers(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json={"id": "msg-1"})


def acme_keeps(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    """What Acme keeps from a request: one message per Idempotency-Key."""
    text = json.loads(request.content)["text"]
    return [(request.headers["Idempotency-Key"], e) for e in emails if e in text]


class TestAcmeNotifier(NotifierContract):
    @pytest.fixture
    def entry_point(self):
        return "notifier.acme"

    @pytest.fixture
    def settings_env(self):
        return {"LEADFLOW_ACME_TOKEN": "t"}

    @pytest.fixture
    def vendor(self):
        return HttpVendor(ok=acme_answers, effects=acme_keeps)

    @pytest.fixture
    def adapter(self, vendor):
        return AcmeNotifier(AcmeSettings(token="t"), transport=vendor.transport)
