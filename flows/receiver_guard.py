"""The webhook receiver's door: every HTTP-level check a request passes before its
lead is looked at (`read_lead_body`), the receiver's settings, and the uvicorn
configuration that bounds slow connections.

In the order they run, each refusal one `Refused(status, message, headers)`:

- 415 unless `Content-Type: application/json`. A web page can POST `text/plain`,
  a form or multipart to `127.0.0.1` without asking (a CORS "simple request");
  `application/json` needs the browser's preflight, which the receiver never
  answers, so a page open in a user's browser cannot post leads;
- 401 when a signing secret is set and the signature headers are missing (before
  the body is read: an unauthenticated sender costs no memory);
- 413 over `LEADFLOW_RECEIVER_MAX_BODY_BYTES`, counted WHILE the body arrives: a
  declared Content-Length over the limit is refused before a byte is read, a
  chunked body as soon as the running total passes it. The rest is never read
  (uvicorn stops reading the socket once its buffer holds 64 KB) and the answer
  carries `Connection: close`;
- 408 when the body is not complete `LEADFLOW_RECEIVER_BODY_TIMEOUT_SECONDS` after
  the headers: a deadline on the whole body, so a sender dripping one byte at a
  time cannot hold a connection open (a per-read timeout would not stop it);
- 401 for a bad or stale signature (HMAC-SHA256 over "<timestamp>." + body, the
  webhook notifier's scheme, constant-time, timestamps within
  `LEADFLOW_RECEIVER_SIGNATURE_TOLERANCE_SECONDS`);
- 409 for a signature already used within that window (`SeenSignatures`): a
  captured request replayed is refused; each attempt must be signed anew, as
  leadflow's webhook notifier does;
- 422 for JSON nested deeper than `LEADFLOW_RECEIVER_MAX_JSON_DEPTH` or with more
  than `LEADFLOW_RECEIVER_MAX_JSON_VALUES` values, checked on the raw bytes before
  parsing (the parser never recurses into a hostile body; a lead that passes can
  be serialised by Prefect, so nothing is answered 202 and then dropped);
- 400 for a body that is not a JSON object.

Slow headers: uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`)
and h11 the size of a request head (16 KB), but nothing bounds the time a client
takes to send its headers. `receiver_protocol` is uvicorn's h11 protocol with one
addition: a connection whose request head is not complete
`LEADFLOW_RECEIVER_HEADER_TIMEOUT_SECONDS` after it opened (or after its previous
answer) is closed. `server_config` is the one uvicorn configuration the command
and the tests use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
from collections.abc import Mapping
from itertools import accumulate, repeat
from operator import sub
from typing import Any

import uvicorn
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from starlette.requests import ClientDisconnect, Request
from uvicorn.protocols.http.h11_impl import H11Protocol

from leadflow.integrations.webhook_notifier import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from leadflow.settings import AdapterSettings, SettingsError

SECRET_VARIABLE = "LEADFLOW_RECEIVER_SIGNING_SECRET"


class ReceiverSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_RECEIVER_")

    host: str = Field(default="127.0.0.1", description="address serve-webhook listens on")
    port: int = Field(default=8787, ge=1, le=65535, description="port serve-webhook listens on")
    signing_secret: SecretStr | None = Field(
        default=None,
        description="requests must carry a valid X-Leadflow-Signature; required beyond loopback",
    )
    signature_tolerance_seconds: float = Field(
        default=300.0, gt=0, description="how old a signed timestamp may be"
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="largest request body, enforced while reading"
    )
    max_json_depth: int = Field(default=32, ge=1, le=200, description="deepest JSON nesting")
    max_json_values: int = Field(default=10_000, ge=1, description="most JSON values in a lead")
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="time a client has to send its request headers"
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="time a client has to send its whole body"
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, description="an idle keep-alive connection is closed after this"
    )

    def check_exposure(self, host: str) -> None:
        """Refuse to listen beyond loopback without a signing secret: anyone who can
        reach the port could post leads."""
        if self.signing_secret is None and not is_loopback(host):
            raise SettingsError(
                f"{SECRET_VARIABLE} is not set: serve-webhook would listen on {host}, beyond "
                "loopback, and take leads from anyone; set the secret (senders sign each "
                "request) or listen on 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine. A name other than
    localhost counts as beyond loopback (it may resolve anywhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Refused(Exception):
    """A request the receiver will not take: its HTTP status, one line saying why,
    and headers for the answer."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


CLOSE = {"Connection": "close"}


class SeenSignatures:
    """Signatures accepted within the tolerance window, each kept until its
    timestamp leaves the window (a replay after that fails as stale).

    In memory, on purpose: the window is minutes long, only senders holding the
    secret can add entries (a signature is noted only once it verified), and the
    receiver is one process. What it does not cover: a request replayed just after
    a restart, or to a second receiver process. Such a replay is the same lead (a
    lead's id comes from its source and email), which the engine's once-only keys
    already keep from doing any side effect twice; the store is the first line, not
    the only one."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self._expiry: dict[str, float] = {}

    def first_use(self, signature: str, timestamp: str) -> bool:
        """Note `signature`; False when it was already noted and has not expired."""
        now = time.time()
        if len(self._expiry) > 1024:
            self._expiry = {s: t for s, t in self._expiry.items() if t > now}
        if self._expiry.get(signature, 0.0) > now:
            return False
        self._expiry[signature] = int(timestamp) + self.tolerance
        return True

    def __len__(self) -> int:
        return len(self._expiry)


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


async def _read_body(request: Request, limit: int, deadline: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body of {declared} bytes is over {limit} bytes", CLOSE)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"body over {limit} bytes", CLOSE)
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, f"body not complete within {deadline:g} s", CLOSE) from None
    except ClientDisconnect:
        raise Refused(400, "the client went away before the body was complete", CLOSE) from None
    return b"".join(chunks)


_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_STRUCTURE = re.compile(rb"[^\[\]{},]")
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def json_shape(raw: bytes) -> tuple[int, int]:
    """(deepest nesting, number of values, roughly) of a JSON text, read from its
    brackets and commas outside strings, without parsing it: a hostile body is
    never handed to a recursive parser. C-speed throughout (regular expressions,
    `accumulate`), a few milliseconds for a megabyte."""
    structure = _NOT_STRUCTURE.sub(b"", _STRING.sub(b'""', raw))
    values = structure.count(b",") + structure.count(b"[") + structure.count(b"{") + 1
    brackets = structure.replace(b",", b"").translate(_OPEN_CLOSE)
    depth = max(accumulate(map(sub, brackets, repeat(1))), default=0)
    return depth, values


def _parse(raw: bytes, settings: ReceiverSettings) -> dict[str, Any]:
    depth, values = json_shape(raw)
    if depth > settings.max_json_depth:
        raise Refused(422, f"JSON nested {depth} levels deep; at most {settings.max_json_depth}")
    if values > settings.max_json_values:
        raise Refused(422, f"JSON with {values} values; at most {settings.max_json_values}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object")
    return data


async def read_lead_body(
    request: Request, settings: ReceiverSettings, seen: SeenSignatures
) -> dict[str, Any]:
    """The request's lead as a JSON object, or `Refused` (see the module's list)."""
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        raise Refused(415, f"Content-Type must be application/json, not {content_type!r:.60}")
    secret = settings.signing_secret
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if secret is not None and not (timestamp and signature):
        raise Refused(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}", CLOSE)
    raw = await _read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    if secret is not None:
        if not verify_signature(
            secret.get_secret_value(),
            timestamp,
            raw,
            signature,
            tolerance=settings.signature_tolerance_seconds,
        ):
            raise Refused(401, "bad or stale signature")
        if not seen.first_use(signature, timestamp):
            raise Refused(409, "this signature was already used; sign each request anew")
    return _parse(raw, settings)


# --- slow headers ---------------------------------------------------------------------


class _HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head does not
    arrive within `header_timeout` of the connection opening or of its previous
    answer (slowloris). The request's body is bounded by `read_lead_body`."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        if self.transport.is_closing():
            return
        waiting_since = self.cycle
        self._header_timer = self.loop.call_later(
            self.header_timeout, self._headers_late, waiting_since
        )

    def _headers_late(self, waiting_since: object) -> None:
        if self.cycle is waiting_since and not self.transport.is_closing():
            self.transport.close()  # no request began since the timer was armed


def receiver_protocol(settings: ReceiverSettings) -> type[H11Protocol]:
    """The h11 protocol with the settings' header timeout."""
    return type(
        "ReceiverH11Protocol",
        (_HeaderTimeoutProtocol,),
        {"header_timeout": settings.header_timeout_seconds},
    )


def server_config(app: Any, settings: ReceiverSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of the receiver: the h11 protocol with the header
    timeout, the keep-alive timeout, lifespan on (it runs the lead stream)."""
    return uvicorn.Config(
        app,
        http=receiver_protocol(settings),
        timeout_keep_alive=settings.keep_alive_seconds,
        lifespan="on",
        **{"log_level": "warning", **options},
    )
