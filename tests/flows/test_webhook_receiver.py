"""The webhook receiver: 202 at once for a valid lead, which then runs through
process_lead on the real Prefect API; 422 naming the field (and the record set
aside) for a bad one; signatures checked when a secret is set."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from pydantic import SecretStr

from leadflow.flows.webhook_app import create_app
from leadflow.integrations.webhook_notifier import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.fakes import MemoryNotifier


@pytest.fixture
async def gated(prefect_api, make_runtime, tmp_path):
    # holds every notification until the test opens the gate
    notifier = MemoryNotifier(gates={"notify_team": asyncio.Event()})
    notifier.gate = notifier.gates["notify_team"]
    runtime = make_runtime(notifier=notifier)
    yield runtime, notifier
    await runtime.aclose()


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")


async def test_a_valid_lead_is_accepted_at_once_then_processed(gated, tmp_path) -> None:
    runtime, notifier = gated
    app = create_app(runtime)
    async with client(app) as http:
        response = await http.post("/leads", json={"email": "Ada@Example.org", "title": "CTO"})
        assert response.status_code == 202
        lead_id = response.json()["lead_id"]
        assert response.json() == {"status": "accepted", "lead_id": lead_id}
        # answered while the lead is still on its way (the notifier is held)
        assert len(app.state.pending) == 1
        notifier.gate.set()
        await asyncio.wait_for(asyncio.gather(*app.state.pending), timeout=120)

    ((sent, _key),) = notifier.sent
    assert sent.id == lead_id and sent.email == "ada@example.org"


async def test_a_bad_lead_is_refused_and_set_aside(gated) -> None:
    runtime, _ = gated
    async with client(create_app(runtime)) as http:
        response = await http.post("/leads", json={"email": "not-an-email"})
        assert response.status_code == 422
        assert response.json() == {"error": "email: 'not-an-email' is not an email address"}
        assert (await http.post("/leads", content=b"[1, 2]")).status_code == 400
        assert (await http.post("/leads", content=b"{nope")).status_code == 400
    (kept,) = await runtime.quarantine.pending()
    assert kept.data == {"email": "not-an-email"} and kept.origin == "webhook"


async def test_signatures_are_checked_when_a_secret_is_set(gated) -> None:
    runtime, notifier = gated
    notifier.gate.set()
    app = create_app(runtime, signing_secret=SecretStr("whsec"))
    body = json.dumps({"email": "sig@example.org"}).encode()
    now = str(int(time.time()))
    async with client(app) as http:
        unsigned = await http.post("/leads", content=body)
        forged = await http.post(
            "/leads",
            content=body,
            headers={TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign("other", now, body)},
        )
        signed = await http.post(
            "/leads",
            content=body,
            headers={TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign("whsec", now, body)},
        )
        await asyncio.wait_for(asyncio.gather(*app.state.pending), timeout=120)
    assert [unsigned.status_code, forged.status_code, signed.status_code] == [401, 401, 202]
