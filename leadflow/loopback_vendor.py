"""A stub vendor on a real loopback socket that misbehaves on request: the one
loopback HTTP server of the test suite (tests/integration, tests/reliability, the
e2e tests) and of `leadflow bench --faults` and the kill trials. It lives in the
package, beside the contract kit (leadflow.testing), so tests and benchmarks share it
without either importing the other, and a plug-in's author can put an adapter through
the same faults. Standard library and httpx only.

`FaultServer(ok)` listens on 127.0.0.1 (a free port, its own thread and event loop)
and answers each request with `ok(request)` (an `httpx.Request` in, an
`httpx.Response` out: the contract harnesses' vendor fakes plug in unchanged;
`reply(status, body)` answers every request alike), unless a fault is queued.
Faults apply to writes only (`is_write`), so a look-up before a write answers
normally. The server speaks plain HTTP/1.1 itself, below any framework, so it can do
what a framework will not: reset a connection, hang, drip a body a byte at a time,
send a body that is not the JSON it claims.

    server.inject(Fault.status_code(503), Fault.reset(), Fault.retry_after("1"))
    server.down = True            # every write fails with 503 until set back
    server.latency = 0.3          # seconds before each answer by `ok`

Every request is kept (`received`: its method, path, headers, body and arrival time
on `time.monotonic()`), with the fault it got, so a test counts what the vendor
actually processed: `processed()` is the writes answered by `ok`.

Nothing leadflow runs imports this module; it is for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Self

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass(frozen=True)
class Fault:
    """One misbehaviour. `kind` names it for counting; the rest says how."""

    kind: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0

    @classmethod
    def status_code(cls, status: int, kind: str | None = None) -> Fault:
        return cls(kind or f"http_{status}", status=status, body=b'{"error": "injected"}')

    @classmethod
    def retry_after(cls, value: str, kind: str = "429_seconds") -> Fault:
        return cls(kind, status=429, headers={"Retry-After": value}, body=b'{"error": "slow"}')

    @classmethod
    def retry_after_date(cls, seconds: float) -> Fault:
        when = datetime.now(UTC) + timedelta(seconds=seconds)
        return cls.retry_after(format_datetime(when, usegmt=True), kind="429_http_date")

    @classmethod
    def passes(cls) -> Fault:
        """No fault: the request is answered normally (spaces faults out in a queue)."""
        return cls("pass")

    @classmethod
    def reset(cls) -> Fault:
        """The connection is reset (TCP RST) after the request arrives."""
        return cls("connection_reset")

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """No answer for `seconds`: the client's read timeout fires first."""
        return cls("read_timeout", seconds=seconds)

    @classmethod
    def drip(cls, seconds: float) -> Fault:
        """A 200 whose body arrives a byte at a time, 20 bytes a second, for `seconds`:
        every read gets data in time, so only a deadline on the whole call ends it."""
        return cls("slow_drip", status=200, seconds=seconds)

    @classmethod
    def malformed_json(cls) -> Fault:
        return cls("malformed_json", status=200, body=b'{"ok": tru')

    @classmethod
    def ok_with_error(cls, body: Any, status: int = 200) -> Fault:
        return cls("200_with_error", status=status, body=json.dumps(body).encode())


@dataclass(frozen=True)
class Received:
    request: httpx.Request
    fault: str | None  # None: answered by `ok`
    at: float = field(default_factory=time.monotonic)  # when it arrived (whole)

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def headers(self) -> httpx.Headers:
        """The request's headers (names in any case)."""
        return self.request.headers

    @property
    def body(self) -> bytes:
        return self.request.content

    def json(self) -> Any:
        return json.loads(self.request.content)


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    """An `ok` that answers every request with `status` and the JSON `body`
    (`{"ok": true}` unless given)."""
    content = {"ok": True} if body is None else body

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=content, headers=headers)

    return answer


def _default_write(request: httpx.Request) -> bool:
    return request.method != "GET"


class FaultServer:
    def __init__(
        self,
        ok: Handler,
        *,
        is_write: Callable[[httpx.Request], bool] = _default_write,
        latency: float = 0.0,
    ):
        self.ok = ok
        self.is_write = is_write
        self.latency = latency  # seconds before each `ok` answer, as a vendor takes
        self.down = False
        self.port = 0
        self._faults: deque[Fault] = deque()
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def processed(self) -> list[httpx.Request]:
        """Writes the vendor acted on: answered by `ok`, not by a fault."""
        return [r.request for r in self.received if r.fault is None and self.is_write(r.request)]

    def faults_given(self) -> Counter[str]:
        return Counter(r.fault for r in self.received if r.fault)

    def start(self) -> Self:
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-server", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fault server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return

        server, thread = self._server, self._thread

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if thread is not None:
            thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ----------------------------------------------------------------------

    def _next_fault(self, request: httpx.Request) -> Fault | None:
        if not self.is_write(request):
            return None
        if self.down:  # down is down, whatever was queued
            return Fault.status_code(503, kind="vendor_down")
        with self._lock:
            if self._faults:
                fault = self._faults.popleft()
                return None if fault.kind == "pass" else fault
        return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await _read_request(reader, self.port)) is not None:
                fault = self._next_fault(request)
                with self._lock:
                    self._received.append(Received(request, fault.kind if fault else None))
                if fault is None:
                    if self.latency:
                        await asyncio.sleep(self.latency)
                    await _write(writer, _answer(self.ok, request))
                elif fault.kind == "connection_reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                elif fault.kind == "read_timeout":
                    await asyncio.sleep(fault.seconds)
                    writer.close()
                    return
                elif fault.kind == "slow_drip":
                    await _drip(writer, fault.seconds)
                    return
                else:
                    await _write(writer, _raw(fault.status, fault.headers, fault.body))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()


async def _read_request(reader: asyncio.StreamReader, port: int) -> httpx.Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    pairs = [line.split(":", 1) for line in lines[1:] if ":" in line]
    headers = [(k.strip(), v.strip()) for k, v in pairs]
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    body = await reader.readexactly(length) if length else b""
    return httpx.Request(method, f"http://127.0.0.1:{port}{target}", headers=headers, content=body)


def _answer(ok: Handler, request: httpx.Request) -> bytes:
    try:
        response = ok(request)
    except Exception as exc:  # a fake that cannot answer is a test bug: make it loud
        return _raw(500, {}, f"stub error: {type(exc).__name__}: {exc}".encode())
    response.read()
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return _raw(response.status_code, headers, response.content)


def _head(status: int, headers: dict[str, str], length: int) -> bytes:
    reason = httpx.codes.get_reason_phrase(status) or "Status"
    lines = [f"HTTP/1.1 {status} {reason}"]
    merged = {"content-type": "application/json", **{k.lower(): v for k, v in headers.items()}}
    merged["content-length"] = str(length)
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _raw(status: int, headers: dict[str, str], body: bytes) -> bytes:
    return _head(status, headers, len(body)) + body


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _drip(writer: asyncio.StreamWriter, seconds: float) -> None:
    body = b'{"ok": true, "pad": "' + b"x" * int(seconds * 20) + b'"}'
    writer.write(_head(200, {}, len(body)))
    for i in range(len(body)):
        writer.write(body[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0.05)
    writer.close()


def every_kind(timeout: float, retry_after: float) -> dict[str, Callable[[], Fault]]:
    """One maker per fault kind, sized for a client with this timeout: a hang outlasts
    it, a drip outlasts its deadline, a 429 asks for `retry_after` seconds."""
    return {
        "http_500": lambda: Fault.status_code(500),
        "http_503": lambda: Fault.status_code(503),
        "429_seconds": lambda: Fault.retry_after(f"{retry_after:g}"),
        "429_http_date": lambda: Fault.retry_after_date(retry_after + 1),
        "connection_reset": Fault.reset,
        "read_timeout": lambda: Fault.hang(timeout * 2),
        "slow_drip": lambda: Fault.drip(timeout * 4),
        "malformed_json": Fault.malformed_json,
    }
