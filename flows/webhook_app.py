"""A webhook receiver for real-time leads: `leadflow serve-webhook`.

`POST /leads` with one lead as a JSON object:

- 202 Accepted at once, with the lead id, when the payload validates; the lead then
  runs through `process_lead` (a flow run of its own) in the background, so a form
  tool's short timeout never waits for the CRM;
- 422 naming the field when it does not; the record is also set aside in the
  quarantine (`leadflow quarantine list`), so nothing sent to us is lost;
- 400 for a body that is not a JSON object, 413 over 1 MB, 401 for a bad signature
  when `LEADFLOW_RECEIVER_SIGNING_SECRET` is set (the same `X-Leadflow-Signature`
  scheme the webhook notifier sends: HMAC-SHA256 over "<timestamp>." + raw body).

`GET /health` answers 200. Background runs are kept in `app.state.pending` until
they finish, and awaited on shutdown.
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

from leadflow.flows.context import current_runtime, use_runtime
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.integrations.webhook_notifier import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from leadflow.logging import get_logger
from leadflow.settings import AdapterSettings

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


def create_app(
    runtime: Runtime | None = None, *, signing_secret: SecretStr | None = None
) -> Starlette:
    """The receiver. `runtime` is used for the background runs (tests pass theirs);
    by default each run builds the runtime from settings once per process."""
    pending: set[asyncio.Task] = set()
    counter = {"received": 0}

    async def run(record: dict[str, Any], position: int) -> None:
        from leadflow.flows.lead import process_lead

        async def go() -> None:
            state = await process_lead(
                record=record, origin="webhook", position=position, return_state=True
            )
            if not state.is_completed():
                log.warning("webhook lead failed", state=state.name, message=state.message)

        if runtime is None:
            await go()
        else:
            with use_runtime(runtime):
                await go()

    async def receive(request: Request) -> JSONResponse:
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
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        counter["received"] += 1
        position = counter["received"]
        checked = validate_record(RawRecord(origin="webhook", position=position, data=data))
        if isinstance(checked, Rejection):
            quarantine = (runtime or current_runtime()).quarantine
            await quarantine.put([checked])
            return JSONResponse({"error": checked.reason}, status_code=422)
        task = asyncio.create_task(run(data, position), name=f"lead-{checked.id}")
        pending.add(task)
        task.add_done_callback(pending.discard)
        return JSONResponse({"status": "accepted", "lead_id": checked.id}, status_code=202)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "in_flight": len(pending)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if pending:  # let accepted leads finish before the process ends
            await asyncio.gather(*pending, return_exceptions=True)

    app = Starlette(
        routes=[Route("/leads", receive, methods=["POST"]), Route("/health", health)],
        lifespan=lifespan,
    )
    app.state.pending = pending
    return app
