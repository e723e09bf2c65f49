"""Salesforce (REST API), for the look-up and the upsert of Leads.

Contract:
- upsert: sObject Collections, `PATCH /services/data/vXX.X/composite/sobjects/Lead/
  <external id field>` with `{"allOrNone": false, "records": [...]}`, up to 200
  records a call, each with `attributes.type = "Lead"` and the external id (the
  lead id, a custom field such as `Leadflow_Id__c`, External ID + Unique). The answer
  is 200 with one UpsertResult per record, in order, each with `success` and an
  `errors` array. Upserting on the external id is what makes a retry harmless.
  (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html)
- every request carries `Sforce-Auto-Assign: FALSE`: leadflow sets OwnerId itself,
  so Salesforce's assignment rules must not move the lead
  (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_autoassign.htm);
- errors come as an array of `{"errorCode", "message", "fields"}`: translated here
  (REQUEST_LIMIT_EXCEEDED -> RateLimited, UNABLE_TO_LOCK_ROW and 5xx -> transient,
  INVALID_SESSION_ID / 401 -> refresh the OAuth token once and repeat, others
  permanent, naming the code and fields)
  (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm);
- look-up: SOQL through `GET /services/data/vXX.X/query?q=` (Lead by Email, with
  Owner.Email); a rep's User id by email, looked up once and cached;
- first touch (the SLA watcher): the upserted Lead's `LastActivityDate` (by its
  external id), the day of its latest task or event: a date without a time, so a
  touch on the day of the assignment or later counts;
- OAuth: an access token from the settings, refreshed at `/services/oauth2/token`
  with a refresh token (web-server flow) or client credentials.

Limit: Salesforce counts API requests per org per 24 h (100,000 + per-licence) and
at most 25 long-running requests at once; the defaults here follow that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import CRM, touched_since
from leadflow.integrations.errors import (
    AuthenticationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from leadflow.integrations.http import parse_retry_after
from leadflow.integrations.vendor import (
    VendorHttp,
    VendorSettings,
    path_segment,
    unique_batches,
)
from leadflow.models import CrmMatch, Decision, Lead
from leadflow.settings import Settings, SettingsError

BATCH_LIMIT = 200
TRANSIENT_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}


class SalesforceSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SALESFORCE_")

    base_url: str = Field(
        default="", description="instance URL, https://<domain>.my.salesforce.com"
    )
    api_version: str = Field(default="v62.0", description="REST API version")
    access_token: SecretStr | None = Field(default=None, description="OAuth access token")
    client_id: str | None = Field(default=None, description="connected app consumer key")
    client_secret: SecretStr | None = Field(default=None, description="consumer secret")
    refresh_token: SecretStr | None = Field(
        default=None, description="refresh token; without one, client credentials are used"
    )
    external_id_field: str = Field(default="Leadflow_Id__c", description="Lead external id")
    score_field: str = Field(default="Leadflow_Score__c", description="'' to skip")
    tier_field: str = Field(default="Leadflow_Tier__c", description="'' to skip")
    follow_up_field: str = Field(default="Leadflow_Follow_Up__c", description="'' to skip")
    due_field: str = Field(default="Leadflow_Follow_Up_Due__c", description="'' to skip")
    rate_limit_requests: int = Field(default=100_000, ge=1, description="requests per window")
    rate_limit_seconds: float = Field(default=86_400.0, gt=0, description="the window (24 h)")
    max_concurrent: int = Field(default=25, ge=1, description="requests in flight at once")


class SessionExpired(AuthenticationError):
    """401 / INVALID_SESSION_ID: the access token needs refreshing."""


def check_salesforce_reply(response: httpx.Response, operation: str) -> None:
    """Translate Salesforce's error array; success statuses pass."""
    status = response.status_code
    if status < 300:
        return
    try:
        errors = response.json()
    except ValueError:
        errors = []
    if isinstance(errors, dict):
        errors = [errors]
    codes = [str(e.get("errorCode", "")) for e in errors if isinstance(e, dict)]
    detail = "; ".join(
        f"{e.get('errorCode')}: {e.get('message', '')}"
        + (f" (fields {', '.join(e['fields'])})" if e.get("fields") else "")
        for e in errors
        if isinstance(e, dict)
    )
    message = f"{operation}: HTTP {status}" + (f": {detail}" if detail else "")
    if status == 401 or "INVALID_SESSION_ID" in codes:
        raise SessionExpired(message)
    if "REQUEST_LIMIT_EXCEEDED" in codes or status == 429:
        raise RateLimited(message, parse_retry_after(response.headers.get("retry-after")))
    if status >= 500 or TRANSIENT_CODES & set(codes):
        raise TransientError(message)
    if status == 403:
        raise AuthenticationError(message)
    raise PermanentError(message)


def soql_quote(value: str) -> str:
    """A SOQL string literal: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceCRM(CRM[SalesforceSettings]):
    name = "salesforce"
    settings_class = SalesforceSettings
    reports_first_touch = True

    def __init__(
        self, own: SalesforceSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if not own.base_url:
            raise SettingsError(
                "LEADFLOW_SALESFORCE_BASE_URL: required by the salesforce CRM, not set"
            )
        can_refresh = own.client_id and own.client_secret
        if own.access_token is None and not can_refresh:
            raise SettingsError(
                "LEADFLOW_SALESFORCE_ACCESS_TOKEN: not set, and no LEADFLOW_SALESFORCE_CLIENT_ID"
                " with LEADFLOW_SALESFORCE_CLIENT_SECRET to get one"
            )
        self.settings = own
        self.http = VendorHttp.from_settings(
            "salesforce", own, headers={"Sforce-Auto-Assign": "FALSE"}, transport=transport
        )
        self._token = own.access_token
        self._token_lock = asyncio.Lock()
        self._users: dict[str, str] = {}
        self._user_locks: dict[str, asyncio.Lock] = {}

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.http.base_url}"

    @classmethod
    def from_settings(cls, settings: Settings, own: SalesforceSettings) -> Self:
        return cls(own)

    @property
    def api(self) -> str:
        return f"/services/data/{self.settings.api_version}"

    # --- OAuth -----------------------------------------------------------------------

    async def _access_token(self) -> SecretStr:
        if self._token is None:
            await self._refresh(None)
        assert self._token is not None
        return self._token

    async def _refresh(self, stale: SecretStr | None) -> None:
        """Get a new access token, once for all callers that saw `stale` fail."""
        own = self.settings
        async with self._token_lock:
            if self._token is not None and self._token is not stale:
                return  # another caller refreshed already
            if not (own.client_id and own.client_secret):
                raise AuthenticationError(
                    "salesforce: the access token was refused and no client id/secret is set"
                )
            form = {
                "client_id": own.client_id,
                "client_secret": own.client_secret.get_secret_value(),
            }
            if own.refresh_token is not None:
                form |= {
                    "grant_type": "refresh_token",
                    "refresh_token": own.refresh_token.get_secret_value(),
                }
            else:
                form |= {"grant_type": "client_credentials"}
            reply = await self.http.json(
                "POST",
                "/services/oauth2/token",
                "token refresh",
                data=form,
                check=lambda r: _check_token_reply(r),
            )
            self._token = SecretStr(reply["access_token"])

    async def call(self, method: str, path: str, operation: str, **kwargs: Any) -> Any:
        """One API call with the bearer token; on 401 the token is refreshed once and
        the call repeated once."""
        for attempt in (1, 2):
            token = await self._access_token()
            try:
                return await self.http.json(
                    method,
                    path,
                    operation,
                    headers={"Authorization": f"Bearer {token.get_secret_value()}"},
                    check=lambda r: check_salesforce_reply(r, f"salesforce {operation}"),
                    **kwargs,
                )
            except SessionExpired:
                if attempt == 2:
                    raise
                await self._refresh(token)
        raise AssertionError("unreachable")

    async def query(self, soql: str, operation: str) -> list[dict[str, Any]]:
        reply = await self.call("GET", f"{self.api}/query", operation, params={"q": soql})
        return reply.get("records") or []

    # --- look-up ---------------------------------------------------------------------

    async def look_up(self, lead: Lead) -> CrmMatch:
        records = await self.query(
            "SELECT Id, Company, Title, Owner.Email FROM Lead "
            f"WHERE Email = {soql_quote(lead.email)} ORDER BY CreatedDate LIMIT 1",
            "lead query",
        )
        if not records:
            return CrmMatch()
        record = records[0]
        owner = (record.get("Owner") or {}).get("Email")
        return CrmMatch(
            contact_id=record["Id"],
            contact_owner=owner.lower() if owner else None,
            enrichment={
                key: record[field]
                for key, field in (("company", "Company"), ("title", "Title"))
                if record.get(field)
            },
        )

    async def first_touch(
        self, lead: Lead, match: CrmMatch | None, *, since: datetime
    ) -> datetime | None:
        field = self.settings.external_id_field
        records = await self.query(
            f"SELECT LastActivityDate FROM Lead WHERE {field} = {soql_quote(lead.id)} LIMIT 1",
            "lead activity query",
        )
        return touched_since([records[0].get("LastActivityDate")], since) if records else None

    async def user_id(self, email: str) -> str:
        email = email.lower()
        async with self._user_locks.setdefault(email, asyncio.Lock()):
            if email not in self._users:
                records = await self.query(
                    f"SELECT Id FROM User WHERE Email = {soql_quote(email)} "
                    "AND IsActive = true LIMIT 1",
                    "user query",
                )
                if not records:
                    raise PermanentError(f"salesforce: no active Salesforce user for rep {email}")
                self._users[email] = records[0]["Id"]
        return self._users[email]

    # --- upsert ----------------------------------------------------------------------

    async def record(self, lead: Lead, decision: Decision) -> dict[str, Any]:
        own = self.settings
        values: dict[str, Any] = {
            "attributes": {"type": "Lead"},
            own.external_id_field: lead.id,
            "Email": lead.email,
            "FirstName": lead.first_name,
            # LastName and Company are required on a Lead
            "LastName": lead.last_name or lead.email.split("@")[0],
            "Company": lead.company or lead.domain,
            "Title": lead.title,
            "Country": lead.country,
            "LeadSource": lead.source,
            "OwnerId": await self.user_id(decision.rep),
            own.score_field: decision.score,
            own.tier_field: decision.tier,
            own.follow_up_field: decision.follow_up.value,
            own.due_field: decision.due_at.isoformat() if decision.due_at else None,
        }
        return {k: v for k, v in values.items() if k and v is not None}

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        return (await self.upsert_many([(lead, decision, idempotency_key)]))[0]

    async def upsert_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> list[str]:
        records = [(lead.id, await self.record(lead, decision)) for lead, decision, _ in items]
        ids: dict[str, str] = {}
        path = f"{self.api}/composite/sobjects/Lead/{path_segment(self.settings.external_id_field)}"
        for batch in unique_batches(records, BATCH_LIMIT):
            body = {"allOrNone": False, "records": [record for _, record in batch]}
            results = await self.call("PATCH", path, "collection upsert", json=body)
            ids.update(parse_upsert_results(results, [key for key, _ in batch]))
        return [ids[lead.id] for lead, _, _ in items]

    async def probe(self) -> str:
        reply = await self.call("GET", f"{self.api}/limits", "limits")
        daily = reply.get("DailyApiRequests", {})
        return f"API requests left today: {daily.get('Remaining', '?')} of {daily.get('Max', '?')}"

    async def aclose(self) -> None:
        await self.http.aclose()


def _check_token_reply(response: httpx.Response) -> None:
    if response.status_code in (400, 401):
        try:
            error = response.json().get("error", "invalid_grant")
        except ValueError:
            error = "invalid_grant"
        raise AuthenticationError(f"salesforce token refresh: {error}")


def parse_upsert_results(results: list[dict[str, Any]], keys: list[str]) -> dict[str, str]:
    """{lead id: Salesforce id} from UpsertResults (same order as the records); the
    first failure raises, transient if Salesforce says the row was locked."""
    found: dict[str, str] = {}
    failed: list[str] = []
    transient = False
    for key, result in zip(keys, results, strict=True):
        if result.get("success"):
            found[key] = result["id"]
            continue
        errors = result.get("errors") or []
        transient |= any(e.get("statusCode") in TRANSIENT_CODES for e in errors)
        reasons = ", ".join(
            f"{e.get('statusCode')}: {e.get('message', '')}"
            + (f" ({', '.join(e['fields'])})" if e.get("fields") else "")
            for e in errors
        )
        failed.append(f"lead {key}: {reasons}")
    if failed:
        kind = TransientError if transient else PermanentError
        raise kind(f"salesforce collection upsert: {len(failed)} failed: {'; '.join(failed[:5])}")
    return found
