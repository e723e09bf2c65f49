"""HubSpot CRM (v3 contacts), for the look-up and the upsert.

Contract (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts,
.../crm-crm-owners-v3/guide, and HubSpot's OpenAPI description in shared/specs):

- look-up: `GET /crm/v3/objects/contacts/{email}?idProperty=email&properties=...`;
  a 404 means "no such contact" (not an error on a read); the contact's
  `hubspot_owner_id` is turned into the owner's email (`GET /crm/v3/owners/{id}`);
- upsert: `POST /crm/v3/objects/contacts/batch/upsert`, inputs keyed by email
  (`idProperty=email`), at most 100 a call and never the same email twice in one
  call (HubSpot rejects such a batch); the once-only key travels as
  `objectWriteTraceId`, and the answer's results are matched to the inputs by it
  (`match_upsert_results`). Upserting by email is idempotent: a retry writes the same
  values onto the same contact;
- first touch (the SLA watcher): the same read with the contact's activity
  properties, `notes_last_contacted` (the last call, sales email or meeting logged
  with the contact) and `hs_last_sales_activity_timestamp`; HubSpot keeps the last
  such instant, so a touch since the assignment is the earlier of them that is;
- the assigned rep's email becomes a HubSpot owner id through
  `GET /crm/v3/owners/?email=`, looked up once per email and cached;
- score, tier and follow-up go into contact properties named in the settings
  (create them in HubSpot first; an empty name skips that property).

Auth: a private-app token, `Authorization: Bearer`. Limit: 100 requests / 10 s per
app on the lowest tier (the default here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import CRM, LeadSource, RawRecord, one_answer, touched_since
from leadflow.integrations.credentials import Credential
from leadflow.integrations.errors import AdapterError, PermanentError, TransientError
from leadflow.integrations.ratelimit import RateLimiter
from leadflow.integrations.vendor import (
    VendorHttp,
    VendorSettings,
    path_segment,
    unique_batches,
)
from leadflow.integrations.watermark import Watermark, WatermarkCommit
from leadflow.models import CrmMatch, Decision, Lead
from leadflow.settings import Settings

BATCH_LIMIT = 100
SEARCH_PAGE = 100
SEARCH_WINDOW = 10_000  # HubSpot's search returns at most 10,000 results per query
CONTACT_PROPERTIES = ("email", "firstname", "lastname", "company", "jobtitle", "hubspot_owner_id")
TOUCH_PROPERTIES = ("notes_last_contacted", "hs_last_sales_activity_timestamp")


class HubSpotSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_HUBSPOT_")

    base_url: str = Field(default="https://api.hubapi.com", description="HubSpot API root")
    token: SecretStr | None = Field(default=None, description="private-app access token")
    token_block: str | None = Field(
        default=None, description="or: name of a Prefect Secret block holding the token"
    )
    rate_limit_requests: int = Field(default=100, ge=1, description="requests per window")
    rate_limit_seconds: float = Field(default=10.0, gt=0, description="the window, in seconds")
    score_property: str = Field(default="leadflow_score", description="'' to skip")
    tier_property: str = Field(default="leadflow_tier", description="'' to skip")
    follow_up_property: str = Field(default="leadflow_follow_up", description="'' to skip")
    due_property: str = Field(default="leadflow_follow_up_due", description="'' to skip")
    search_rate_limit: int = Field(
        default=5, ge=1, description="search requests per second (HubSpot's search limit)"
    )
    source_state_path: Path = Field(
        default=Path(".leadflow/sources/hubspot.json"),
        description="where the hubspot source keeps its watermark",
    )
    source_overlap_seconds: float = Field(default=300.0, ge=0, description="re-read window")


def hubspot_http(own: HubSpotSettings, transport: httpx.AsyncBaseTransport | None) -> VendorHttp:
    credential = Credential("LEADFLOW_HUBSPOT_TOKEN", own.token, own.token_block)
    return VendorHttp.from_settings(
        "hubspot", own, credential=credential.require("hubspot"), transport=transport
    )


class HubSpotCRM(CRM[HubSpotSettings]):
    name = "hubspot"
    settings_class = HubSpotSettings
    reports_first_touch = True

    def __init__(
        self,
        own: HubSpotSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = own
        self.http = hubspot_http(own, transport)
        self._owner_ids: dict[str, str] = {}
        self._owner_emails: dict[str, str | None] = {}
        self._owner_locks: dict[str, asyncio.Lock] = {}

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.http.base_url}"

    @classmethod
    def from_settings(cls, settings: Settings, own: HubSpotSettings) -> Self:
        return cls(own)

    # --- look-up ----------------------------------------------------------------------

    async def _contact(self, lead: Lead, properties: Sequence[str]) -> dict[str, Any] | None:
        """The contact with the lead's email, with `properties`; None: no such contact."""
        contact: dict[str, Any] | None = await self.http.json(
            "GET",
            f"/crm/v3/objects/contacts/{quote(lead.email, safe='@')}",
            "contact read",
            params={"idProperty": "email", "properties": ",".join(properties)},
            allow=(404,),
        )
        return contact

    async def first_touch(
        self, lead: Lead, match: CrmMatch | None, *, since: datetime
    ) -> datetime | None:
        contact = await self._contact(lead, TOUCH_PROPERTIES)
        properties = (contact or {}).get("properties") or {}
        return touched_since([properties.get(name) for name in TOUCH_PROPERTIES], since)

    async def look_up(self, lead: Lead) -> CrmMatch:
        contact = await self._contact(lead, CONTACT_PROPERTIES)
        if contact is None:
            return CrmMatch()
        properties = contact.get("properties") or {}
        owner_id = properties.get("hubspot_owner_id")
        return CrmMatch(
            contact_id=str(contact["id"]),
            contact_owner=await self.owner_email(owner_id) if owner_id else None,
            enrichment={
                key: properties[prop]
                for key, prop in (("company", "company"), ("title", "jobtitle"))
                if properties.get(prop)
            },
        )

    async def owner_email(self, owner_id: str) -> str | None:
        if owner_id not in self._owner_emails:
            owner = await self.http.json(
                "GET", f"/crm/v3/owners/{path_segment(owner_id)}", "owner read", allow=(404,)
            )
            email = owner.get("email") if owner else None  # 404: a removed owner
            self._owner_emails[owner_id] = email.lower() if email else None
        return self._owner_emails[owner_id]

    async def owner_id(self, email: str) -> str:
        """The HubSpot owner id of a rep, looked up once per email (concurrent callers
        wait for the one look-up)."""
        email = email.lower()
        lock = self._owner_locks.setdefault(email, asyncio.Lock())
        async with lock:
            if email not in self._owner_ids:
                page = await self.http.json(
                    "GET", "/crm/v3/owners/", "owner search", params={"email": email, "limit": 1}
                )
                results = (page or {}).get("results") or []
                if not results:
                    raise PermanentError(f"hubspot owner search: no HubSpot owner for rep {email}")
                self._owner_ids[email] = str(results[0]["id"])
                self._owner_emails[self._owner_ids[email]] = email
        return self._owner_ids[email]

    # --- upsert -----------------------------------------------------------------------

    async def properties(self, lead: Lead, decision: Decision) -> dict[str, str]:
        """The contact properties written for one lead (HubSpot takes strings)."""
        own = self.settings
        values: dict[str, Any] = {
            "email": lead.email,
            "firstname": lead.first_name,
            "lastname": lead.last_name,
            "company": lead.company,
            "jobtitle": lead.title,
            "country": lead.country,
            "hubspot_owner_id": await self.owner_id(decision.rep),
            own.score_property: decision.score,
            own.tier_property: decision.tier,
            own.follow_up_property: decision.follow_up.value,
            own.due_property: decision.due_at.isoformat() if decision.due_at else None,
        }
        return {k: str(v) for k, v in values.items() if k and v is not None}

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        return one_answer(await self.upsert_many([(lead, decision, idempotency_key)]))

    async def upsert_many(
        self, items: Sequence[tuple[Lead, Decision, str]]
    ) -> list[str | AdapterError]:
        """Each input's contact id, or the error saying why HubSpot's answer does not
        confirm it (the bulk contract of `CRM.upsert_many`)."""
        inputs = [
            (
                lead.email,
                {
                    "id": lead.email,
                    "idProperty": "email",
                    "objectWriteTraceId": key,
                    "properties": await self.properties(lead, decision),
                },
            )
            for lead, decision, key in items
        ]
        answers: dict[str, str | AdapterError] = {}
        for batch in unique_batches(inputs, BATCH_LIMIT):
            sent = [item for _, item in batch]
            reply = await self.http.json(
                "POST",
                "/crm/v3/objects/contacts/batch/upsert",
                "batch upsert",
                json={"inputs": sent},
            )
            matched = match_upsert_results(reply, sent)
            answers.update(zip([email for email, _ in batch], matched, strict=True))
        return [answers[lead.email] for lead, _, _ in items]

    async def probe(self) -> str:
        await self.http.json(
            "GET", "/crm/v3/objects/contacts", "contacts list", params={"limit": 1}
        )
        return "contacts readable"

    async def aclose(self) -> None:
        await self.http.aclose()


def match_upsert_results(
    reply: dict[str, Any] | None, inputs: list[dict[str, Any]]
) -> list[str | AdapterError]:
    """Each input's contact id from a batch upsert answer (200, or 207 with `errors`),
    matched by what HubSpot's spec documents, never by the result's properties (the
    response schema does not promise an `email` among them):

    - a result's `objectWriteTraceId`, which echoes the input's (the once-only key);
    - without any trace id: by position, only when the answer has exactly one result
      per input and no errors.

    An input no result confirms gets an error that says so: permanent, with HubSpot's
    reasons, when the answer carries errors; transient otherwise (the contact may
    well be written; upserting by email again is safe)."""
    reply = reply or {}
    results = [r for r in reply.get("results") or [] if isinstance(r, dict) and r.get("id")]
    errors = reply.get("errors") or []
    traced = {r["objectWriteTraceId"]: r for r in results if r.get("objectWriteTraceId")}
    if traced:
        found = [traced.get(item["objectWriteTraceId"]) for item in inputs]
    elif len(results) == len(inputs) and not errors:
        found = list(results)
    else:
        found = [None] * len(inputs)
    reasons = "; ".join(
        f"{error.get('category', 'ERROR')}: {error.get('message', '')}" for error in errors
    )
    answers: list[str | AdapterError] = []
    for item, result in zip(inputs, found, strict=True):
        if result is not None:
            answers.append(str(result["id"]))
        elif reasons:
            answers.append(
                PermanentError(f"hubspot batch upsert: contact {item['id']} not written: {reasons}")
            )
        else:
            answers.append(
                TransientError(
                    f"hubspot batch upsert: contact {item['id']} not confirmed: the answer has "
                    f"{len(results)} result(s) for {len(inputs)} input(s) and none carries this "
                    "input's objectWriteTraceId"
                )
            )
    return answers


# --- lead source ----------------------------------------------------------------------

SOURCE_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "company",
    "jobtitle",
    "country",
    "createdate",
)


class HubSpotLeadSource(WatermarkCommit, LeadSource[HubSpotSettings]):
    """Contacts created since the watermark, as leads.

    `POST /crm/v3/objects/contacts/search` filtered on `createdate GTE <watermark -
    overlap>` (epoch milliseconds), sorted by `createdate` ascending, paged with
    `after`, an opaque string (HubSpot's own example is "NTI1Cg%3D%3D"), passed back
    as it came; a query stops once it has read HubSpot's 10,000-result window and the
    next one starts from the new watermark. Contact ids seen inside the overlap are
    skipped, so polls neither miss nor repeat a contact (integrations.watermark). The
    watermark is saved by `commit()` once the poll has accepted the contacts (the
    protocol of `LeadSource`). Search has its own limit (5 requests a second).
    """

    name = "hubspot"
    settings_class = HubSpotSettings

    def __init__(
        self, own: HubSpotSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = own
        self.http = hubspot_http(own, transport)
        self.http.limiter = RateLimiter(own.search_rate_limit, 1.0, max_concurrent=1)

    @classmethod
    def from_settings(cls, settings: Settings, own: HubSpotSettings) -> Self:
        return cls(own)

    def search_body(self, since: datetime | None, after: str) -> dict[str, Any]:
        filters = []
        if since is not None:
            millis = str(int(since.timestamp() * 1000))
            filters = [{"propertyName": "createdate", "operator": "GTE", "value": millis}]
        return {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
            "properties": list(SOURCE_PROPERTIES),
            "limit": SEARCH_PAGE,
            "after": after,
        }

    async def records(self) -> AsyncIterator[RawRecord]:
        own = self.settings
        mark = Watermark.load(own.source_state_path, timedelta(seconds=own.source_overlap_seconds))
        self._mark = mark
        position = 0
        while True:  # one query per 10,000-result window
            since, after, fresh, read = mark.ask_from, "0", 0, 0
            while True:
                page = await self.http.json(
                    "POST",
                    "/crm/v3/objects/contacts/search",
                    "contact search",
                    json=self.search_body(since, after),
                )
                results = page.get("results") or []
                for contact in results:
                    position += 1
                    record = contact_record(contact, position, mark)
                    if record is not None:
                        fresh += 1
                        yield record
                read += len(results)
                after = str(((page.get("paging") or {}).get("next") or {}).get("after") or "")
                if not after or read >= SEARCH_WINDOW:
                    break
            if not after or fresh == 0:
                return

    async def probe(self) -> str:
        page = await self.http.json(
            "POST",
            "/crm/v3/objects/contacts/search",
            "contact search",
            json={**self.search_body(None, "0"), "limit": 1},
        )
        return f"{page.get('total', '?')} contacts searchable"

    async def aclose(self) -> None:
        await self.http.aclose()


def contact_record(contact: dict[str, Any], position: int, mark: Watermark) -> RawRecord | None:
    """A HubSpot contact as a raw lead record; None when already handed on."""
    properties = contact.get("properties") or {}
    created = properties.get("createdate") or contact.get("createdAt")
    contact_id = str(contact.get("id"))
    try:
        at = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return RawRecord(
            position=position, data=contact, error="createdate: not a timestamp", origin="hubspot"
        )
    if not mark.is_new(contact_id):
        return None
    mark.advance(contact_id, at if at.tzinfo else at.replace(tzinfo=UTC))
    data = {
        "id": f"hubspot-{contact_id}",
        "email": properties.get("email"),
        "first_name": properties.get("firstname"),
        "last_name": properties.get("lastname"),
        "company": properties.get("company"),
        "title": properties.get("jobtitle"),
        "country": properties.get("country"),
        "source": "hubspot",
        "created_at": properties.get("createdate"),
    }
    return RawRecord(position=position, data={k: v for k, v in data.items() if v}, origin="hubspot")
