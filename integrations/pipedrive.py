"""Pipedrive, for the look-up and the upsert: a person found by exact email, created
or updated, and a lead linked to that person.

Contract: persons on Pipedrive's v2 API, which replaces the v1 persons endpoints
(deprecated since 2026-01-01, out of support since 2026-08-01):
`GET /api/v2/persons/search` (https://developers.pipedrive.com/docs/api/v2/Persons#searchPersons),
`POST /api/v2/persons` (#addPerson) and `PATCH /api/v2/persons/{id}` (#updatePerson),
with `emails: [{value, primary, label}]` and `owner_id`. Leads and users have no v2
endpoints and stay on v1 (.../v1/Leads#addLead, #getLeads, .../v1/Users#findUsersByName,
#getUser). The API token goes in the `x-api-token` header (not the query string,
where it would reach access logs); answers are `{"success": true, "data": ...}`,
failures `{"success": false, "error": ...}` with a 4xx/5xx status, 429 past the
token's limit. Ids from Pipedrive are percent-encoded into paths. First touch (the SLA
watcher): activities linked to the person and marked done since the assignment,
`GET /api/v2/activities` (.../v2/Activities#getActivities, `marked_as_done_time`).

Limits (https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting): per
api_token and 2-second window, by plan: Essential 20, Advanced 40, Professional 80,
Power 100, Enterprise 120; search 10 on every plan. `LEADFLOW_PIPEDRIVE_PLAN`
(default essential, the lowest) sets the general limit;
`LEADFLOW_PIPEDRIVE_RATE_LIMIT_REQUESTS` overrides it (an OAuth token has four
times more).

Pipedrive has no upsert, so duplicates are avoided in three layers:

1. Within a process, writes for one email are serialised by a per-email lock, so
   two leads for the same person processed at once do search-then-create in turn.
2. A person this adapter created is remembered (email -> id): Pipedrive's search
   index lags creation by seconds, and a retry right after a create must not
   create again.
3. The lead's title carries the once-only key's lead id (`[leadflow <lead id>]`);
   before adding a lead the person's existing leads are read, and a lead with the
   marker means the lead was already added (by an earlier attempt that failed
   after the write).

What remains: two *processes* writing the same new email within the search lag can
each create the person. Run one pipeline per Pipedrive account for writes (the
pipeline's concurrency is within one process), or merge duplicates with Pipedrive's
merge tool; the README says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Self

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import CRM, touched_since
from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import PermanentError
from leadflow.integrations.ratelimit import RateLimiter
from leadflow.integrations.vendor import VendorHttp, VendorSettings, path_segment
from leadflow.models import CrmMatch, Decision, Lead
from leadflow.settings import Settings


class PipedriveSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_PIPEDRIVE_")

    base_url: str = Field(
        default="https://api.pipedrive.com", description="or https://<company>.pipedrive.com"
    )
    api_token: SecretStr | None = Field(default=None, description="a user's API token")
    api_token_block: str | None = Field(default=None, description="or: a Prefect Secret block")
    plan: Literal["essential", "advanced", "professional", "power", "enterprise"] = Field(
        default="essential", description="the Pipedrive plan, whose api_token limit applies"
    )
    rate_limit_requests: int | None = Field(  # type: ignore[assignment]
        default=None, ge=1, description="requests per window; unset: the plan's limit"
    )
    rate_limit_seconds: float = Field(default=2.0, gt=0, description="the window, in seconds")
    search_rate_limit: int = Field(
        default=10, ge=1, description="search requests per window (every plan: 10 per 2 s)"
    )

    def model_post_init(self, context: Any) -> None:
        if self.rate_limit_requests is None:
            self.rate_limit_requests = PLAN_LIMITS[self.plan]


ACTIVITY_PAGE = 500  # the most activities one page of GET /api/v2/activities may hold
PLAN_LIMITS = {"essential": 20, "advanced": 40, "professional": 80, "power": 100, "enterprise": 120}
"""Requests per 2 seconds per api_token, by plan (Pipedrive's rate-limiting guide)."""


def lead_marker(lead_id: str) -> str:
    return f"[leadflow {lead_id}]"


class PipedriveCRM(CRM[PipedriveSettings]):
    name = "pipedrive"
    settings_class = PipedriveSettings
    reports_first_touch = True

    def __init__(
        self, own: PipedriveSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        token = Credential("LEADFLOW_PIPEDRIVE_API_TOKEN", own.api_token, own.api_token_block)
        self.http = VendorHttp.from_settings(
            "pipedrive",
            own,
            credential=token.require("pipedrive"),
            auth=lambda value: {"x-api-token": value},
            transport=transport,
        )
        self._search = RateLimiter(own.search_rate_limit, own.rate_limit_seconds)
        self._person_ids: dict[str, int] = {}
        self._email_locks: dict[str, asyncio.Lock] = {}
        self._user_ids: dict[str, int] = {}
        self._user_emails: dict[int, str | None] = {}

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.http.base_url}"

    @classmethod
    def from_settings(cls, settings: Settings, own: PipedriveSettings) -> Self:
        return cls(own)

    async def _data(self, method: str, path: str, operation: str, **kwargs: Any) -> Any:
        reply = await self.http.json(method, path, operation, **kwargs)
        if not isinstance(reply, dict) or not reply.get("success"):
            error = reply.get("error") if isinstance(reply, dict) else None
            raise PermanentError(f"pipedrive {operation}: success=false ({error or 'no reason'})")
        return reply.get("data")

    # --- look-up ---------------------------------------------------------------------

    async def find_person(self, email: str) -> dict[str, Any] | None:
        async with self._search.slot():
            data = await self._data(
                "GET",
                "/api/v2/persons/search",
                "person search",
                params={"term": email, "fields": "email", "exact_match": "true", "limit": 1},
            )
        items = (data or {}).get("items") or []
        return items[0]["item"] if items else None

    async def look_up(self, lead: Lead) -> CrmMatch:
        person = await self.find_person(lead.email)
        if person is None:
            return CrmMatch()
        owner_id = (person.get("owner") or {}).get("id")
        organization = (person.get("organization") or {}).get("name")
        return CrmMatch(
            contact_id=str(person["id"]),
            contact_owner=await self.user_email(owner_id) if owner_id else None,
            enrichment={"company": organization} if organization else {},
        )

    async def user_email(self, user_id: int) -> str | None:
        if user_id not in self._user_emails:
            reply = await self.http.json(
                "GET", f"/v1/users/{path_segment(user_id)}", "user read", allow=(404,)
            )
            email = ((reply or {}).get("data") or {}).get("email")  # 404: a deleted user
            self._user_emails[user_id] = email.lower() if email else None
        return self._user_emails[user_id]

    async def user_id(self, email: str) -> int:
        email = email.lower()
        if email not in self._user_ids:
            users = await self._data(
                "GET",
                "/v1/users/find",
                "user search",
                params={"term": email, "search_by_email": 1},
            )
            match = [u for u in users or [] if str(u.get("email", "")).lower() == email]
            if not match:
                raise PermanentError(f"pipedrive user search: no Pipedrive user for rep {email}")
            self._user_ids[email] = int(match[0]["id"])
        return self._user_ids[email]

    # --- first touch (the SLA watcher) ----------------------------------------------

    async def first_touch(
        self, lead: Lead, match: CrmMatch | None, *, since: datetime
    ) -> datetime | None:
        """The earliest activity linked to the lead's person and marked done at or
        after `since` (`GET /api/v2/activities?person_id=&done=true&updated_since=`:
        an activity marked done since then was updated since then), read from its
        `marked_as_done_time`, page by page (`next_cursor`). A person Pipedrive does
        not know has not been touched."""
        person_id: Any = match.contact_id if match and match.contact_id else None
        if person_id is None:
            person = await self.find_person(lead.email)
            if person is None:
                return None
            person_id = person["id"]
        params: dict[str, Any] = {
            "person_id": person_id,
            "done": "true",
            "updated_since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "limit": ACTIVITY_PAGE,
        }
        done: list[Any] = []
        while True:
            reply = await self.http.json(
                "GET", "/api/v2/activities", "activity list", params=params
            )
            if not isinstance(reply, dict) or not reply.get("success"):
                raise PermanentError("pipedrive activity list: success=false")
            done += [item.get("marked_as_done_time") for item in reply.get("data") or []]
            cursor = (reply.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return touched_since(done, since)
            params["cursor"] = cursor

    # --- upsert ----------------------------------------------------------------------

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        owner_id = await self.user_id(decision.rep)
        name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email
        async with self._email_locks.setdefault(lead.email, asyncio.Lock()):
            person_id = self._person_ids.get(lead.email)
            if person_id is None:
                person = await self.find_person(lead.email)
                person_id = person["id"] if person else None
            if person_id is None:
                created = await self._data(
                    "POST",
                    "/api/v2/persons",
                    "person create",
                    json={
                        "name": name,
                        "emails": [{"value": lead.email, "primary": True, "label": "work"}],
                        "owner_id": owner_id,
                    },
                )
                person_id = created["id"]
            else:
                await self._data(
                    "PATCH",
                    f"/api/v2/persons/{path_segment(person_id)}",
                    "person update",
                    json={"name": name, "owner_id": owner_id},
                )
            self._person_ids[lead.email] = person_id
            await self._add_lead_once(lead, decision, person_id, owner_id)
        return str(person_id)

    async def _add_lead_once(
        self, lead: Lead, decision: Decision, person_id: int, owner_id: int
    ) -> None:
        marker = lead_marker(lead.id)
        existing = await self._data(
            "GET", "/v1/leads", "lead list", params={"person_id": person_id, "limit": 500}
        )
        if any(marker in str(item.get("title", "")) for item in existing or []):
            return
        title = f"{lead.company or lead.domain}: {decision.tier} ({decision.score}) {marker}"
        await self._data(
            "POST",
            "/v1/leads",
            "lead create",
            json={"title": title, "person_id": person_id, "owner_id": owner_id},
        )

    async def upsert_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> list[str]:
        """No bulk endpoint: one upsert per distinct lead (the last decision wins),
        concurrently within the rate limit."""
        latest = {lead.id: (lead, decision, key) for lead, decision, key in items}
        done = await asyncio.gather(
            *(self.upsert(lead, d, idempotency_key=k) for lead, d, k in latest.values())
        )
        ids = dict(zip(latest, done, strict=True))
        return [ids[lead.id] for lead, _, _ in items]

    async def probe(self) -> str:
        me = await self._data("GET", "/v1/users/me", "users/me")
        return f"authenticated as {me.get('email', '?')} ({me.get('company_name', '?')})"

    async def aclose(self) -> None:
        await self.http.aclose()
