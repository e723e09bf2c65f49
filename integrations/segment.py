"""Segment (HTTP Tracking API): each processed lead as a `track` event.

Contract (https://www.twilio.com/docs/segment/connections/sources/catalog/libraries/server/http-api):
- `POST /v1/track` for one event, `POST /v1/batch` with `{"batch": [...]}` for many;
  Basic auth with the source's write key as the user name and an empty password;
- at most 32 KB per event and 500 KB per batch request (400 beyond); Segment answers
  200 to everything else, so a 200 is not proof of acceptance (the Debugger shows
  rejected events);
- Segment de-duplicates on `messageId`: it is derived from the once-only event id,
  so a retried or repeated event collapses on Segment's side.

`record_many` packs events into as few batches as the 500 KB limit allows (with a
margin for the envelope) and drops a repeated event id inside the call.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Self

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import EventSink, LeadEvent
from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import PermanentError
from leadflow.integrations.vendor import VendorHttp, VendorSettings
from leadflow.settings import Settings

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
_ENVELOPE_MARGIN = 1024


class SegmentSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SEGMENT_")

    base_url: str = Field(
        default="https://api.segment.io",
        description="EU workspaces: https://events.eu1.segmentapis.com",
    )
    write_key: SecretStr | None = Field(default=None, description="the HTTP API source's write key")
    write_key_block: str | None = Field(default=None, description="or: a Prefect Secret block")
    event_name: str = Field(default="Lead Processed", description="the track event's name")
    rate_limit_requests: int = Field(default=500, ge=1, description="requests per window")
    rate_limit_seconds: float = Field(default=1.0, gt=0, description="the window, in seconds")


def message_id(event_id: str) -> str:
    return "leadflow-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def basic_auth(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def pack(items: list[tuple[dict[str, Any], int]], limit: int) -> list[list[dict[str, Any]]]:
    """Greedy batches of (message, encoded size) whose sizes add up to at most `limit`."""
    batches: list[list[dict[str, Any]]] = []
    size = limit + 1
    for message, length in items:
        if size + length + 1 > limit:
            batches.append([])
            size = 0
        batches[-1].append(message)
        size += length + 1
    return batches


class SegmentEventSink(EventSink[SegmentSettings]):
    name = "segment"
    settings_class = SegmentSettings

    def __init__(
        self, own: SegmentSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.event_name = own.event_name
        credential = Credential("LEADFLOW_SEGMENT_WRITE_KEY", own.write_key, own.write_key_block)
        self.http = VendorHttp.from_settings(
            "segment",
            own,
            credential=credential.require("segment"),
            auth=basic_auth,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, own: SegmentSettings) -> Self:
        return cls(own)

    def track(self, event: LeadEvent) -> dict[str, Any]:
        d = event.decision
        return {
            "type": "track",
            "event": self.event_name,
            "userId": event.lead_id,
            "messageId": message_id(event.event_id),
            "timestamp": event.occurred_at.isoformat(),
            "properties": {
                "score": d.score,
                "tier": d.tier,
                "follow_up": d.follow_up.value,
                "sla_minutes": d.sla_minutes,
                "due_at": d.due_at.isoformat() if d.due_at else None,
                "rep": d.rep,
                "assignment_rule": d.assignment_rule,
                "rules_version": d.rules_version,
                "score_reasons": [r.model_dump() for r in d.score_reasons],
            },
            "context": {"library": {"name": "leadflow", "version": "0.1"}},
        }

    def _sized(self, event: LeadEvent) -> tuple[dict[str, Any], int]:
        message = self.track(event)
        length = len(json.dumps(message, separators=(",", ":")).encode())
        if length > MAX_EVENT_BYTES:
            raise PermanentError(
                f"segment: event {event.event_id} is {length} bytes, over Segment's 32 KB"
            )
        return message, length

    async def record(self, event: LeadEvent) -> None:
        message, _ = self._sized(event)
        await self.http.request("POST", "/v1/track", "track", json=message)

    async def record_many(self, events: Sequence[LeadEvent]) -> None:
        unique = list({event.event_id: event for event in events}.values())
        sized = [self._sized(event) for event in unique]
        for batch in pack(sized, MAX_BATCH_BYTES - _ENVELOPE_MARGIN):
            await self.http.request("POST", "/v1/batch", "batch", json={"batch": batch})

    async def probe(self) -> str:
        if self.http.credential is None:
            return "no write key set"
        await self.http.credential.get()
        return "write key set (Segment's tracking API has no read call: nothing sent)"

    async def aclose(self) -> None:
        await self.http.aclose()
