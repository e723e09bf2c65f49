"""The webhook receiver on the real Prefect API: 202 only once the lead is kept in the
inbox, then processed as task runs in a lead-stream flow run; 422 naming the field
(and the record set aside) for a bad one; signatures checked when a secret is set;
503 with Retry-After when too many leads wait; leads a dead receiver accepted are
finished by the next one."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from pydantic import SecretStr

from leadflow.flows.engine import effect_key
from leadflow.flows.stream import LeadStream, StreamSettings
from leadflow.flows.webhook_app import create_app
from leadflow.intake import RawRecord, validate_record
from leadflow.integrations.webhook_notifier import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from leadflow.once import OnceStore
from leadflow.stores.inbox import Inbox
from tests.support.fakes import MemoryNotifier

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
async def gated(make_runtime):
    """A runtime whose notifier holds every notification until the test opens the gate."""
    notifier = MemoryNotifier(gates={"notify_team": asyncio.Event()})
    notifier.gate = notifier.gates["notify_team"]
    runtime = make_runtime(notifier=notifier)
    await runtime.prepare_stores()
    yield runtime, notifier
    await runtime.aclose()


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")


async def until(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_valid_lead_is_kept_before_the_answer_then_processed_in_a_stream_run(gated):
    runtime, notifier = gated
    app = create_app(runtime)
    async with LifespanManager(app), client(app) as http:
        response = await http.post("/leads", json={"email": "Ada@Example.org", "title": "CTO"})
        assert response.status_code == 202
        lead_id = response.json()["lead_id"]
        assert response.json() == {"status": "accepted", "lead_id": lead_id}
        # answered while the lead is still on its way (the notifier is held), and kept
        assert await runtime.inbox.counts() == {"accepted": 1}
        notifier.gate.set()

        async def finished() -> bool:
            return await runtime.inbox.counts() == {"finished": 1}

        await until(finished)
    ((sent, _key),) = notifier.sent
    assert sent.id == lead_id and sent.email == "ada@example.org"
    async with get_client() as prefect:
        runs = await prefect.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="leads-"))
        )
    assert runs  # the lead ran inside a long-lived lead-stream run, not a run of its own


async def test_a_bad_lead_is_refused_and_set_aside(gated) -> None:
    runtime, _ = gated
    app = create_app(runtime)
    async with LifespanManager(app), client(app) as http:
        response = await http.post("/leads", json={"email": "not-an-email"})
        assert response.status_code == 422
        assert response.json() == {"error": "email: 'not-an-email' is not an email address"}
        json_type = {"Content-Type": "application/json"}
        assert (await http.post("/leads", content=b"[1, 2]", headers=json_type)).status_code == 400
        assert (await http.post("/leads", content=b"{nope", headers=json_type)).status_code == 400
    (kept,) = await runtime.quarantine.pending()
    assert kept.data == {"email": "not-an-email"} and kept.origin == "webhook"
    assert await runtime.inbox.counts() == {}


async def test_signatures_are_checked_when_a_secret_is_set(gated) -> None:
    runtime, notifier = gated
    notifier.gate.set()
    app = create_app(runtime, signing_secret=SecretStr("whsec"))
    body = json.dumps({"email": "sig@example.org"}).encode()
    now = str(int(time.time()))
    async with LifespanManager(app), client(app) as http:
        json_type = {"Content-Type": "application/json"}
        unsigned = await http.post("/leads", content=body, headers=json_type)
        forged = await http.post(
            "/leads",
            content=body,
            headers={
                **json_type,
                TIMESTAMP_HEADER: now,
                SIGNATURE_HEADER: sign("other", now, body),
            },
        )
        signed = await http.post(
            "/leads",
            content=body,
            headers={
                **json_type,
                TIMESTAMP_HEADER: now,
                SIGNATURE_HEADER: sign("whsec", now, body),
            },
        )
    assert [unsigned.status_code, forged.status_code, signed.status_code] == [401, 401, 202]


async def test_too_many_leads_waiting_is_a_503_with_retry_after(gated) -> None:
    runtime, notifier = gated
    stream = LeadStream(runtime, StreamSettings(_env_file=None, queue_limit=3))
    app = create_app(runtime, stream=stream)
    async with LifespanManager(app), client(app) as http:
        answers = [await http.post("/leads", json={"email": f"q{i}@example.org"}) for i in range(5)]
        codes = [a.status_code for a in answers]
        assert codes == [202, 202, 202, 503, 503]
        assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
        notifier.gate.set()

        async def drained() -> bool:
            return stream.pending == 0

        await until(drained)
        assert (await http.post("/leads", json={"email": "q9@example.org"})).status_code == 202


async def test_leads_a_dead_receiver_accepted_are_finished_by_the_next(gated) -> None:
    """The dead receiver had also claimed the lead's notification: the next one sends
    it again under its key, and says so when it stops."""
    runtime, notifier = gated
    notifier.gate.set()
    record = {"email": "orphan@example.org"}
    dead = Inbox(runtime.settings.database_url, lease=timedelta(seconds=0.2))
    await dead.accept([("lead-1", "webhook", 1, record)])
    lead = validate_record(RawRecord(origin="webhook", position=1, data=record))
    claims = OnceStore(runtime.settings.database_url, lease=timedelta(seconds=0.2))
    await claims.claim([effect_key(runtime, "notify", lead)])
    await asyncio.sleep(0.3)  # its holder never renews: the leases run out
    app = create_app(runtime)
    async with LifespanManager(app):

        async def finished() -> bool:
            return await runtime.inbox.counts() == {"finished": 1}

        await until(finished)
    assert [lead.email for lead, _key in notifier.sent] == ["orphan@example.org"]
    assert app.state.stream.describe() == (
        "1 leads finished (1 accepted earlier and not finished, taken from the inbox); "
        "1 side effects sent again under their keys: an earlier receiver claimed them "
        "and did not confirm them (it was stopped or killed)"
    )


async def test_the_mode_is_kept_fresh_in_the_background_not_read_on_a_leads_way(
    gated, monkeypatch
) -> None:
    """Leads that arrive further apart than the mode's cache lasts still find it fresh:
    the stream re-reads it in the background, so no lead's group waits for the API."""
    import leadflow.flows.mode as modes

    runtime, notifier = gated
    notifier.gate.set()
    readers: list[str] = []
    read = modes.current_mode

    async def reading(settings=None) -> str:
        readers.append(asyncio.current_task().get_name())
        return await read(settings)

    monkeypatch.setattr(modes, "current_mode", reading)
    monkeypatch.setattr(modes, "MODE_TTL_SECONDS", 0.2)
    app = create_app(runtime)
    async with LifespanManager(app), client(app) as http:
        for i in range(3):
            await asyncio.sleep(0.3)  # longer than the cache lasts
            answer = await http.post("/leads", json={"email": f"spaced{i}@example.org"})
            assert answer.status_code == 202

        async def finished() -> bool:
            return await runtime.inbox.counts() == {"finished": 3}

        await until(finished)
    # every read but, on a loaded machine, the odd one the refresher was late for
    assert len(readers) >= 3
    assert readers.count("leadflow-mode") >= len(readers) - 1, readers


class HoldsSome(MemoryNotifier):
    """Holds the notification of every lead whose email starts with "held" until
    `release` is set; the others go through."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def notify(self, lead, decision, *, idempotency_key: str) -> None:
        if lead.email.startswith("held"):
            self.holding.set()
            await asyncio.wait_for(self.release.wait(), timeout=30)
        await super().notify(lead, decision, idempotency_key=idempotency_key)


async def test_a_bursts_decision_artifacts_wait_until_it_has_passed(
    make_runtime, monkeypatch
) -> None:
    """Artifacts are a view: while leads wait or are in flight, the Prefect API and the
    receiver spend their time on those leads; the artifacts are published after."""
    import leadflow.flows.stream as stream_module

    notifier = HoldsSome()
    runtime = make_runtime(notifier=notifier)
    await runtime.prepare_stores()
    stream = LeadStream(runtime, StreamSettings(_env_file=None))
    published: list[tuple[str, int]] = []

    async def publish(lead, outcome) -> None:
        published.append((lead.email, stream.pending))

    monkeypatch.setattr(stream_module, "publish_decision", publish)
    app = create_app(runtime, stream=stream)
    try:
        async with LifespanManager(app), client(app) as http:
            emails = ["held@example.org", *(f"quick{i}@example.org" for i in range(3))]
            assert (await http.post("/leads", json={"email": emails[0]})).status_code == 202
            await asyncio.wait_for(notifier.holding.wait(), timeout=30)  # in flight
            for email in emails[1:]:
                assert (await http.post("/leads", json={"email": email})).status_code == 202

            async def quick_ones_finished() -> bool:
                return (await runtime.inbox.counts()).get("finished") == 3

            await until(quick_ones_finished)
            await asyncio.sleep(0.5)
            assert published == []  # the held lead is still in flight
            notifier.release.set()

            async def all_published() -> bool:
                return len(published) == 4

            await until(all_published)
    finally:
        await runtime.aclose()
    assert sorted(email for email, _ in published) == sorted(emails)
    assert [pending for _, pending in published] == [0] * 4
