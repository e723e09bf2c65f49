"""Event sinks without a database: a JSONL file, or a webhook.

- `jsonl`: one JSON object per line in `LEADFLOW_JSONL_EVENTS_PATH`; the file is
  locked while the sink checks for the event id and appends, so an event is written
  once even from several processes (the same scheme as the terminal outbox).
- `webhook` (event sink): POSTs each event as JSON to `LEADFLOW_WEBHOOK_EVENTS_URL`
  with `Idempotency-Key: <event id>`, signed like the webhook notifier when a
  signing secret is set; `record_many` POSTs `{"events": [...]}` in one request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import EventSink, LeadEvent
from leadflow.integrations.credentials import Credential
from leadflow.integrations.jsonl_ledger import JsonlLedger
from leadflow.integrations.vendor import VendorHttp, VendorSettings
from leadflow.integrations.webhook_notifier import signed_headers
from leadflow.settings import AdapterSettings, Settings, SettingsError


def event_row(event: LeadEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


class JsonlEventsSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_JSONL_EVENTS_")

    path: Path = Field(default=Path(".leadflow/events.jsonl"), description="file events go to")


class JsonlEventSink(EventSink[JsonlEventsSettings]):
    name = "jsonl"
    settings_class = JsonlEventsSettings

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ledger = JsonlLedger(self.path, "event_id")
        self._lock = asyncio.Lock()

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.path.resolve()}"

    @classmethod
    def from_settings(cls, settings: Settings, own: JsonlEventsSettings) -> Self:
        return cls(own.path)

    async def record(self, event: LeadEvent) -> None:
        await self.record_many([event])

    async def record_many(self, events: Sequence[LeadEvent]) -> None:
        async with self._lock:
            await asyncio.to_thread(self._ledger.append_new, [event_row(e) for e in events])


class WebhookEventsSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_WEBHOOK_EVENTS_")

    url: HttpUrl | None = Field(default=None, description="where events are POSTed")
    token: SecretStr | None = Field(default=None, description="sent as a Bearer token")
    token_block: str | None = Field(default=None, description="or: a Prefect Secret block")
    signing_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key")


class WebhookEventSink(EventSink[WebhookEventsSettings]):
    name = "webhook"
    settings_class = WebhookEventsSettings

    def __init__(
        self, own: WebhookEventsSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if own.url is None:
            raise SettingsError(
                "LEADFLOW_WEBHOOK_EVENTS_URL: required by the webhook event sink, not set"
            )
        self.url = str(own.url)
        self.signing_secret = own.signing_secret
        credential = Credential("LEADFLOW_WEBHOOK_EVENTS_TOKEN", own.token, own.token_block)
        self.http = VendorHttp.from_settings(
            "webhook events",
            own,
            credential=credential if credential.configured else None,
            transport=transport,
        )

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.url}"

    @classmethod
    def from_settings(cls, settings: Settings, own: WebhookEventsSettings) -> Self:
        return cls(own)

    async def _post(self, body: Any, key: str) -> None:
        raw = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "Idempotency-Key": key,
            "Content-Type": "application/json",
            **signed_headers(self.signing_secret, raw),
        }
        # the URL may be an automation hook whose path is the credential
        await self.http.request(
            "POST", self.url, "post", content=raw, headers=headers, secret_url=True
        )

    async def record(self, event: LeadEvent) -> None:
        await self._post(event_row(event), event.event_id)

    async def record_many(self, events: Sequence[LeadEvent]) -> None:
        unique = list({event.event_id: event for event in events}.values())
        if not unique:
            return
        ids = ",".join(sorted(e.event_id for e in unique))
        key = "batch:" + hashlib.sha256(ids.encode()).hexdigest()[:32]
        await self._post({"events": [event_row(e) for e in unique]}, key)

    async def aclose(self) -> None:
        await self.http.aclose()
