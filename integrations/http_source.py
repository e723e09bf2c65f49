"""Leads polled from an HTTP JSON API, with a watermark kept between polls.

Two ways an API can page, chosen by `LEADFLOW_HTTP_SOURCE_MODE`:

- `updated_since` (default): `GET <url>?updated_since=<watermark - overlap>&limit=N`,
  records in `items_field` with an id and an `updated_at`; a `next_cursor` in the
  answer, if any, pages within the same query. Overlap plus the ids kept by
  `integrations.watermark` make repeated polls neither miss nor repeat a lead.
- `cursor`: `GET <url>?cursor=<saved cursor>&limit=N`, following `next_cursor` until
  a page comes back empty; the last cursor is saved.

Each poll (`records()`) reads every new page; the watermark moves in memory and is
saved by `commit()`, which the poll calls once the records are accepted into
leadflow (the protocol of `LeadSource`): a page that fails is read again by the next
poll, and the pages before it are not lost. The API must list records oldest change
first (the watermark is the latest `updated_at` handed on). A record without an id
or timestamp is still yielded (with `error` set) so it is set aside, not lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

import httpx
from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import LeadSource, RawRecord
from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import PermanentError
from leadflow.integrations.redact import redact_url
from leadflow.integrations.vendor import VendorHttp, VendorSettings
from leadflow.integrations.watermark import Watermark, WatermarkCommit
from leadflow.settings import Settings, SettingsError


class HttpSourceSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_HTTP_SOURCE_")

    url: HttpUrl | None = Field(default=None, description="the endpoint that lists leads")
    token: SecretStr | None = Field(default=None, description="sent as a Bearer token")
    token_block: str | None = Field(default=None, description="or: a Prefect Secret block")
    mode: Literal["updated_since", "cursor"] = Field(
        default="updated_since", description="how the API pages: updated_since or cursor"
    )
    since_param: str = Field(default="updated_since", description="query parameter for the time")
    cursor_param: str = Field(default="cursor", description="query parameter for the cursor")
    limit_param: str = Field(default="limit", description="query parameter for the page size")
    page_size: int = Field(default=100, ge=1, le=10_000, description="records per page")
    items_field: str = Field(default="data", description="answer field holding the records")
    next_cursor_field: str = Field(default="next_cursor", description="answer field, next page")
    id_field: str = Field(default="id", description="record field with a stable id")
    updated_field: str = Field(default="updated_at", description="record field, last change")
    overlap_seconds: float = Field(default=300.0, ge=0, description="re-read window")
    state_path: Path = Field(
        default=Path(".leadflow/sources/http.json"), description="where the watermark is kept"
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class HttpLeadSource(WatermarkCommit, LeadSource[HttpSourceSettings]):
    name = "http"
    settings_class = HttpSourceSettings

    def __init__(
        self, own: HttpSourceSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if own.url is None:
            raise SettingsError("LEADFLOW_HTTP_SOURCE_URL: required by the http source, not set")
        self.settings = own
        self.url = str(own.url)
        # where its records came from, as stored with them: the URL without its query
        # (an api_key= can ride there) nor user info
        self.origin = redact_url(self.url, keep_path=True)
        credential = Credential("LEADFLOW_HTTP_SOURCE_TOKEN", own.token, own.token_block)
        self.http = VendorHttp.from_settings(
            "http source",
            own,
            credential=credential if credential.configured else None,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, own: HttpSourceSettings) -> Self:
        return cls(own)

    async def _page(self, params: dict[str, Any]) -> tuple[list[Any], str | None]:
        own = self.settings
        reply = await self.http.json("GET", self.url, "poll", params=params)
        items = reply.get(own.items_field) if isinstance(reply, dict) else None
        if not isinstance(items, list):
            raise PermanentError(f"http source poll: no list in {own.items_field!r}")
        cursor = reply.get(own.next_cursor_field)
        return items, str(cursor) if cursor else None

    async def records(self) -> AsyncIterator[RawRecord]:
        own = self.settings
        mark = Watermark.load(own.state_path, timedelta(seconds=own.overlap_seconds))
        self._mark = mark
        position = 0
        params: dict[str, Any] = {own.limit_param: own.page_size}
        if own.mode == "cursor":
            if mark.cursor:
                params[own.cursor_param] = mark.cursor
        elif mark.ask_from is not None:
            params[own.since_param] = mark.ask_from.isoformat()
        while True:
            items, next_cursor = await self._page(params)
            for item in items:
                position += 1
                record = self._record(item, position, mark)
                if record is not None:
                    yield record
            if own.mode == "cursor" and next_cursor:
                mark.cursor = next_cursor  # the page is handed on: the next poll starts after it
            if not items or not next_cursor:
                return
            params[own.cursor_param] = next_cursor

    def _record(self, item: Any, position: int, mark: Watermark) -> RawRecord | None:
        own = self.settings
        if not isinstance(item, dict):
            return RawRecord(
                position=position,
                data={"item": repr(item)[:200]},
                error="not a JSON object",
                origin=self.origin,
            )
        record_id = item.get(own.id_field)
        updated = _parse_time(item.get(own.updated_field))
        if record_id is None or (own.mode == "updated_since" and updated is None):
            return RawRecord(
                position=position,
                data=item,
                error=f"{own.id_field}/{own.updated_field}: missing or not a timestamp",
                origin=self.origin,
            )
        key = str(record_id)
        if not mark.is_new(key):
            return None
        mark.advance(key, updated or datetime.now(UTC))
        return RawRecord(position=position, data=item, origin=self.origin)

    async def probe(self) -> str:
        items, _ = await self._page({self.settings.limit_param: 1})
        return f"endpoint answered with {len(items)} record(s) on a page of 1"

    async def aclose(self) -> None:
        await self.http.aclose()
