"""The webhook receiver under hostile traffic, over real loopback HTTP: the real app
(its lifespan runs the lead stream on the real Prefect API) served by uvicorn with
the receiver's own configuration (flows/receiver_guard.py), on a port the OS picks.

Every request is counted by what the receiver answered; the figures are printed at
the end (`pytest tests/reliability/test_receiver_hostile.py -q -s`)."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from typer.testing import CliRunner

from leadflow.flows.receiver_guard import ReceiverSettings, server_config
from leadflow.flows.webhook_app import create_app
from leadflow.integrations.webhook_notifier import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from leadflow.settings import SettingsError
from tests.support.paths import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_api")

SECRET = "whsec-hostile-test"
JSON = {"Content-Type": "application/json"}
ANSWERS: collections.Counter[str] = collections.Counter()
REASON = {
    202: "accepted",
    400: "not a JSON object",
    401: "bad signature",
    408: "body too slow",
    409: "replayed signature",
    413: "body too large",
    415: "wrong content type",
    422: "JSON too deep or too large",
}


def count(status: int | str) -> None:
    ANSWERS[REASON.get(status, str(status)) if isinstance(status, int) else status] += 1


@pytest.fixture(scope="module", autouse=True)
def figures() -> AsyncIterator[None]:
    yield
    total = sum(ANSWERS.values())
    refused = total - ANSWERS["accepted"]
    print(f"\nreceiver under hostile traffic: {total} requests, {refused} refused")
    for kind, n in sorted(ANSWERS.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  {kind}")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Receiver:
    def __init__(self, port: int, runtime) -> None:
        self.port = port
        self.runtime = runtime
        self.url = f"http://127.0.0.1:{port}"

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            response = await http.post("/leads", content=body, headers=headers)
        count(response.status_code)
        return response

    def signed(self, body: bytes, secret: str = SECRET) -> dict[str, str]:
        now = str(int(time.time()))
        return {**JSON, TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign(secret, now, body)}

    async def raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def serve(runtime, settings: ReceiverSettings) -> AsyncIterator[Receiver]:
    app = create_app(runtime, settings=settings)
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=0))
    running = asyncio.create_task(server.serve())
    while not server.started:
        assert not running.done(), running.exception()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Receiver(port, runtime)
    finally:
        server.should_exit = True
        await running


def settings(**values) -> ReceiverSettings:
    base = {
        "signing_secret": SecretStr(SECRET),
        "header_timeout_seconds": 1.0,
        "body_timeout_seconds": 1.0,
    }
    return ReceiverSettings(_env_file=None, **{**base, **values})


@pytest.fixture
async def receiver(make_runtime) -> AsyncIterator[Receiver]:
    runtime = make_runtime()
    await runtime.prepare_stores()
    async for started in serve(runtime, settings()):
        yield started
    await runtime.aclose()


@pytest.fixture
async def open_receiver(make_runtime) -> AsyncIterator[Receiver]:
    """Loopback without a secret: bodies are read (no signature to check first)."""
    runtime = make_runtime()
    await runtime.prepare_stores()
    async for started in serve(runtime, settings(signing_secret=None)):
        yield started
    await runtime.aclose()


async def read_answer(reader: asyncio.StreamReader, seconds: float = 10) -> bytes:
    return await asyncio.wait_for(reader.read(65536), seconds)


async def test_a_signed_lead_is_still_accepted(receiver: Receiver) -> None:
    body = json.dumps({"email": "fine@example.org"}).encode()
    response = await receiver.post(body, receiver.signed(body))
    assert response.status_code == 202, response.text
    assert await receiver.runtime.inbox.counts() in ({"accepted": 1}, {"finished": 1})


async def test_a_chunked_300_mb_body_is_refused_without_being_read(
    open_receiver: Receiver,
) -> None:
    """Unsigned (loopback, no secret), so the receiver does read the body: it stops
    at its limit, answers 413 and closes; the sender cannot push 300 MB into it."""
    offered = 300 * 1024 * 1024
    chunk = b"[" * 65536
    before = rss_mb()
    reader, writer = await open_receiver.raw()
    writer.write(
        b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer = asyncio.create_task(read_answer(reader, 60))
    sent = 0
    try:
        while sent < offered and not answer.done():
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await asyncio.wait_for(writer.drain(), 5)
            sent += len(chunk)
    except (ConnectionError, TimeoutError):
        pass  # the receiver closed the connection, or stopped reading it
    head = await answer
    writer.close()
    grew = rss_mb() - before
    count(int(head.split()[1]))
    print(f"\n300 MB chunked: refused after {sent / 2**20:.1f} MB sent, RSS +{grew:.1f} MB")
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"connection: close" in head.lower()
    assert sent < 32 * 1024 * 1024  # socket buffers, not the body
    assert grew < 50
    assert await open_receiver.runtime.inbox.counts() == {}


async def test_a_declared_huge_body_is_refused_before_reading(open_receiver: Receiver) -> None:
    reader, writer = await open_receiver.raw()
    writer.write(
        b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 314572800\r\n\r\n{"
    )
    head = await read_answer(reader)
    writer.close()
    count(int(head.split()[1]))
    assert head.startswith(b"HTTP/1.1 413") and b"314572800 bytes" in head


async def test_only_application_json_is_taken(receiver: Receiver) -> None:
    body = json.dumps({"email": "page@example.org"}).encode()
    signed = receiver.signed(body)
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ):
        response = await receiver.post(body, {**signed, "Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
    charset = await receiver.post(
        body, {**receiver.signed(body), "Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 202
    assert (await receiver.runtime.inbox.counts()).keys() <= {"accepted", "finished"}


@pytest.mark.parametrize("levels", [260, 100_000])
async def test_deep_json_is_422_never_202_nor_500(receiver: Receiver, levels: int) -> None:
    body = b'{"email": "deep@example.org", "extra": ' + b"[" * levels + b"]" * levels + b"}"
    response = await receiver.post(body, receiver.signed(body))
    assert response.status_code == 422, response.text
    assert f"nested {levels + 1} levels deep" in response.json()["error"]
    assert await receiver.runtime.inbox.counts() == {}


async def test_json_at_the_depth_limit_is_accepted_and_finished(receiver: Receiver) -> None:
    """What the door lets through, the pipeline can carry: 202 means processed."""
    inner = b"[" * 31 + b"]" * 31  # with the lead's object: 32 levels, the limit
    body = b'{"email": "edge@example.org", "extra": ' + inner + b"}"
    response = await receiver.post(body, receiver.signed(body))
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 60
    while await receiver.runtime.inbox.counts() != {"finished": 1}:
        assert time.monotonic() < deadline, await receiver.runtime.inbox.counts()
        await asyncio.sleep(0.1)


async def test_json_with_too_many_values_is_422(receiver: Receiver) -> None:
    body = json.dumps({"email": "wide@example.org", "extra": list(range(50_000))}).encode()
    response = await receiver.post(body, receiver.signed(body))
    assert response.status_code == 422 and "values" in response.json()["error"]


async def test_signatures_missing_forged_and_replayed_are_refused(receiver: Receiver) -> None:
    body = json.dumps({"email": "replay@example.org"}).encode()
    assert (await receiver.post(body, JSON)).status_code == 401
    assert (await receiver.post(body, receiver.signed(body, "wrong"))).status_code == 401
    headers = receiver.signed(body)
    first = await receiver.post(body, headers)
    replays = [await receiver.post(body, headers) for _ in range(3)]
    assert first.status_code == 202
    assert [r.status_code for r in replays] == [409, 409, 409]
    assert "already used" in replays[0].json()["error"]
    stale = str(int(time.time()) - 301)
    old = {**JSON, TIMESTAMP_HEADER: stale, SIGNATURE_HEADER: sign(SECRET, stale, body)}
    assert (await receiver.post(body, old)).status_code == 401


async def test_slow_headers_are_cut_off(receiver: Receiver) -> None:
    """A byte of request head every 0.2 s: closed after the 1 s header timeout,
    however steadily the client drips."""
    reader, writer = await receiver.raw()
    started = time.monotonic()
    closed_after = None
    for byte in b"POST /leads HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed_after = time.monotonic() - started
            break
        if reader.at_eof() or writer.transport.is_closing():
            closed_after = time.monotonic() - started
            break
        try:
            if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                closed_after = time.monotonic() - started
                break
        except TimeoutError:
            pass
    writer.close()
    count("slow headers cut off" if closed_after is not None else "slow headers held")
    assert closed_after is not None and closed_after < 3, closed_after


async def test_a_slow_body_is_408(receiver: Receiver) -> None:
    body = json.dumps({"email": "slow@example.org"}).encode()
    headers = receiver.signed(body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    reader, writer = await receiver.raw()
    writer.write(
        f"POST /leads HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
    )
    started = time.monotonic()
    answer = asyncio.create_task(read_answer(reader))
    for byte in body:
        if answer.done():
            break
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.2)
    response = await answer
    writer.close()
    count(int(response.split()[1]))
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert time.monotonic() - started < 3
    assert await receiver.runtime.inbox.counts() == {}


async def test_hostile_traffic_leaves_the_receiver_serving(receiver: Receiver) -> None:
    """A burst of everything above at once, then a good lead still goes through."""
    deep = [
        b'{"email": "d%d@example.org", "x": ' % i + b"[" * 5000 + b"]" * 5000 + b"}"
        for i in range(20)
    ]
    good = json.dumps({"email": "after@example.org"}).encode()
    attacks = [receiver.post(b"{}", {"Content-Type": "text/plain"}) for _ in range(50)]
    attacks += [receiver.post(body, receiver.signed(body)) for body in deep]
    attacks += [receiver.post(good, JSON) for _ in range(30)]
    answers = await asyncio.gather(*attacks)
    assert {a.status_code for a in answers} == {415, 422, 401}
    response = await receiver.post(good, receiver.signed(good))
    assert response.status_code == 202


def test_no_secret_beyond_loopback_refuses_to_start(tmp_path: Path, monkeypatch) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "receiver.example.org"):
        with pytest.raises(SettingsError, match="LEADFLOW_RECEIVER_SIGNING_SECRET"):
            ReceiverSettings(_env_file=None).check_exposure(host)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        ReceiverSettings(_env_file=None).check_exposure(host)
    ReceiverSettings(_env_file=None, signing_secret=SecretStr("s")).check_exposure("0.0.0.0")

    from leadflow.app.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_RULES_PATH", str(EXAMPLES / "rules.toml"))
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.delenv("LEADFLOW_RECEIVER_SIGNING_SECRET", raising=False)
    result = CliRunner().invoke(app, ["serve-webhook", "--host", "0.0.0.0", "--port", "1"])
    count("refused to start (no secret, 0.0.0.0)")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "LEADFLOW_RECEIVER_SIGNING_SECRET is not set" in lines[0]
    assert "0.0.0.0" in lines[0]
