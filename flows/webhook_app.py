"""A webhook receiver for real-time leads: `leadflow serve-webhook`.

`POST /leads` with one lead as a JSON object:

- 202 Accepted, with the lead id, once the lead is written to leadflow's inbox
  (leadflow.stores.inbox): accepted means kept, whatever happens to the process
  after the answer. The lead then runs through the engine inside a long-lived
  `lead-stream` flow run (flows/stream.py), so a form tool's short timeout never
  waits for the CRM;
- 422 naming the field when it does not validate; the record is also set aside in
  the quarantine (`leadflow quarantine list`), so nothing sent to us is lost;
- the HTTP-level refusals of flows/receiver_guard.py, checked first: 415 unless
  application/json, 413 over the body limit (counted while reading), 408 for a body
  too slow, 401 for a missing or bad signature when `LEADFLOW_RECEIVER_SIGNING_SECRET`
  is set (the `X-Leadflow-Signature` scheme the webhook notifier sends), 409 for a
  replayed signature, 422 for JSON nested too deep or too large, 400 for a body that
  is not a JSON object;
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from leadflow.flows.receiver_guard import (
    ReceiverSettings,
    Refused,
    SeenSignatures,
    read_lead_body,
)
from leadflow.flows.stream import LeadStream, StreamSettings
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.logging import get_logger
from leadflow.stores.inbox import Inbox, InboxEntry

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)
__all__ = ["ReceiverSettings", "create_app"]  # ReceiverSettings: re-exported from the guard


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
    settings: ReceiverSettings | None = None,
) -> Starlette:
    """The receiver, taking leads into `runtime`'s inbox and running them in `stream`
    (one for `runtime` with the settings' LEADFLOW_STREAM_*, by default), which the
    app starts and stops with its lifespan. `settings` are the door's limits
    (LEADFLOW_RECEIVER_*, by default); `signing_secret`, if given, overrides theirs."""
    guard = settings or ReceiverSettings()
    if signing_secret is not None:
        guard = guard.model_copy(update={"signing_secret": signing_secret})
    seen = SeenSignatures(guard.signature_tolerance_seconds)
    stream = stream or LeadStream(runtime, StreamSettings())
    acceptor = _Acceptor(runtime.inbox)
    counter = {"received": 0}

    async def receive(request: Request) -> JSONResponse:
        try:
            data = await read_lead_body(request, guard, seen)
        except Refused as refused:
            return JSONResponse(
                {"error": refused.message}, status_code=refused.status, headers=refused.headers
            )
        if not stream.has_room():
            wait = stream.retry_after()
            return JSONResponse(
                {"error": f"busy: {stream.pending} leads waiting; retry in {wait} s"},
                status_code=503,
                headers={"Retry-After": str(wait)},
            )
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
