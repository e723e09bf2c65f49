"""A webhook receiver for real-time leads: `leadflow serve-webhook`.

`POST /leads` with one lead as a JSON object:

- 202 Accepted, with the lead id, once the lead is written to leadflow's inbox
  (leadflow.stores.inbox): accepted means kept, whatever happens to the process
  after the answer. The lead then runs through the engine inside a long-lived
  `lead-stream` flow run (flows/stream.py), so a form tool's short timeout never
  waits for the CRM;
- 422 naming the field when it does not validate; the record is also set aside in
  the quarantine (`leadflow quarantine list`), so nothing sent to us is lost;
- 400 for a body that is not a JSON object, 413 over 1 MB, 401 for a bad signature
  when `LEADFLOW_RECEIVER_SIGNING_SECRET` is set (the same `X-Leadflow-Signature`
  scheme the webhook notifier sends: HMAC-SHA256 over "<timestamp>." + raw body);
- 503 with Retry-After when more than `LEADFLOW_STREAM_QUEUE_LIMIT` accepted leads
  are waiting or in flight, or while the receiver stops: the sender retries later
  instead of the receiver falling behind without limit.

Requests that arrive together are written to the inbox in one transaction (each
still answered only once its own lead is committed).

`GET /health` answers 200 with the number of leads waiting or in flight. On
shutdown the receiver stops taking leads, lets those in flight finish for
`LEADFLOW_PIPELINE__DRAIN_SECONDS`, and hands the rest back to the inbox, where the
next start finds them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from leadflow.flows.stream import LeadStream, StreamSettings
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.integrations.webhook_notifier import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from leadflow.logging import get_logger
from leadflow.settings import AdapterSettings
from leadflow.stores.inbox import Inbox, InboxEntry

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)
MAX_BODY = 1024 * 1024


class ReceiverSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_RECEIVER_")

    host: str = Field(default="127.0.0.1", description="address serve-webhook listens on")
    port: int = Field(default=8787, ge=1, le=65535, description="port serve-webhook listens on")
    signing_secret: SecretStr | None = Field(
        default=None, description="if set, requests must carry a valid X-Leadflow-Signature"
    )


class _Acceptor:
    """Writes accepted leads to the inbox, the leads of requests that arrive together
    in one transaction; each request waits for its own lead's commit."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._waiting: list[tuple[tuple[str, str, int, dict[str, Any]], asyncio.Future]] = []
        self._writing: asyncio.Task | None = None

    async def accept(self, lead_id: str, position: int, record: dict[str, Any]) -> InboxEntry:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.append(((lead_id, "webhook", position, record), future))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                entries = await self.inbox.accept([item for item, _f in batch])
            except Exception as exc:
                for _item, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_item, future), entry in zip(batch, entries, strict=True):
                if not future.done():
                    future.set_result(entry)


def create_app(
    runtime: Runtime,
    *,
    signing_secret: SecretStr | None = None,
    stream: LeadStream | None = None,
) -> Starlette:
    """The receiver, taking leads into `runtime`'s inbox and running them in `stream`
    (one for `runtime` with the settings' LEADFLOW_STREAM_*, by default), which the
    app starts and stops with its lifespan."""
    stream = stream or LeadStream(runtime, StreamSettings())
    acceptor = _Acceptor(runtime.inbox)
    counter = {"received": 0}

    async def receive(request: Request) -> JSONResponse:
        if not stream.has_room():
            wait = stream.retry_after()
            return JSONResponse(
                {"error": f"busy: {stream.pending} leads waiting; retry in {wait} s"},
                status_code=503,
                headers={"Retry-After": str(wait)},
            )
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return JSONResponse({"error": "body over 1 MB"}, status_code=413)
        if signing_secret is not None and not verify_signature(
            signing_secret.get_secret_value(),
            request.headers.get(TIMESTAMP_HEADER, ""),
            raw,
            request.headers.get(SIGNATURE_HEADER, ""),
        ):
            return JSONResponse({"error": "bad or missing signature"}, status_code=401)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        counter["received"] += 1
        position = counter["received"]
        checked = validate_record(RawRecord(origin="webhook", position=position, data=data))
        if isinstance(checked, Rejection):
            await runtime.quarantine.put([checked])
            return JSONResponse({"error": checked.reason}, status_code=422)
        entry = await acceptor.accept(checked.id, position, data)
        stream.put([entry])
        return JSONResponse({"status": "accepted", "lead_id": checked.id}, status_code=202)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "pending": stream.pending})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        running = asyncio.create_task(stream.run(), name="lead-stream")
        try:
            yield
        finally:
            stream.stop()
            await asyncio.gather(running, return_exceptions=True)

    app = Starlette(
        routes=[Route("/leads", receive, methods=["POST"]), Route("/health", health)],
        lifespan=lifespan,
    )
    app.state.stream = stream
    return app
