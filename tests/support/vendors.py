"""Every side-effecting HTTP adapter, built against a `FaultServer` on loopback.

A `Vendor` says how to build the adapter at the server's address (short timeouts,
no client-side rate limit in the way), which requests are its writes, what its
vendor keeps of them (the contract harnesses' `effects`: HubSpot keeps one contact
per email, Segment one event per messageId, a webhook receiver one per
Idempotency-Key, chat keeps every message), and, where the vendor's protocol has
one, an HTTP 200 that carries an error. The secrets the adapters are given are
known values, so a test can look for them in everything leadflow wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from leadflow.integrations.base import CRM, Adapter, EventSink, LeadEvent, Notifier
from leadflow.integrations.errors import PermanentError, TransientError
from leadflow.integrations.file_events import WebhookEventSink, WebhookEventsSettings
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotSettings
from leadflow.integrations.pipedrive import PipedriveCRM, PipedriveSettings
from leadflow.integrations.salesforce import SalesforceCRM, SalesforceSettings
from leadflow.integrations.segment import SegmentEventSink, SegmentSettings
from leadflow.integrations.slack import (
    SlackNotifier,
    SlackSettings,
    SlackWebhookNotifier,
    SlackWebhookSettings,
)
from leadflow.integrations.teams import TeamsNotifier, TeamsSettings
from leadflow.integrations.webhook_notifier import WebhookNotifier
from leadflow.models import Decision, Lead
from tests.support import harnesses as h

TIMEOUT = 1.0  # seconds: a hung vendor costs the tests little, a busy machine no retry

# Known secret values: nothing leadflow writes may contain them.
SECRETS = {
    "hubspot": "pat-na1-SECRET-hubspot-7d1f",
    "salesforce": "00D-SECRET-salesforce-9a2b",
    "pipedrive": "SECRET-pipedrive-41c0",
    "slack_webhook": "T000/B000/SECRET-slackhook-5e6f",
    "slack": "xoxb-SECRET-slack-3c4d",
    "teams": "sig=SECRET-teams-8a9b",
    "webhook": "SECRET-webhook-token-1a2b",
    # a Zapier/Make/n8n-style hook: the URL's path is the credential
    "webhook_path": "hooks/catch/4417/SECRET-zaphook-8c7d",
    "webhook_events_path": "hook/SECRET-n8nhook-3e4f",
    "segment": "SECRET-segment-writekey-6f7a",
    "webhook_events": "SECRET-events-token-2b3c",
}

FAST = {"timeout_seconds": TIMEOUT, "rate_limit_requests": 100_000, "max_concurrent": 100}


def _s(cls, **values):
    return cls(_env_file=None, **FAST, **values)


def hubspot_ok(request: httpx.Request) -> httpx.Response:
    """The contract fake, plus the look-up's read: no contact with that email yet."""
    if request.method == "GET" and request.url.path.startswith("/crm/v3/objects/contacts/"):
        return httpx.Response(404, json={"status": "error", "category": "OBJECT_NOT_FOUND"})
    return h.hubspot_ok(request)


def teams_url(base: str) -> str:
    return f"{base}/workflows/run?{SECRETS['teams']}"


@dataclass
class Vendor:
    id: str
    kind: str  # crm | notifier | event_sink
    build: Callable[[str], Adapter]
    ok: Callable[[], Callable[[httpx.Request], httpx.Response]]  # a fresh fake per server
    effects: Callable[[httpx.Request, set[str]], list[tuple[str, str]]]
    is_write: Callable[[httpx.Request], bool]
    # An HTTP 200 that carries an error, and the error class it must raise (None:
    # the vendor's protocol has no such answer).
    error_200: Any = None
    error_200_raises: type[Exception] | None = None
    # Whether the vendor drops a repeat by itself (an upsert key, an idempotency key).
    dedupes: bool = True

    async def write(self, adapter: Adapter, lead: Lead, decision: Decision, key: str) -> Any:
        if isinstance(adapter, CRM):
            return await adapter.upsert(lead, decision, idempotency_key=key)
        if isinstance(adapter, Notifier):
            return await adapter.notify(lead, decision, idempotency_key=key)
        assert isinstance(adapter, EventSink)
        return await adapter.record(
            LeadEvent(
                event_id=key,
                lead_id=lead.id,
                occurred_at=datetime.now(UTC),
                decision=decision,
            )
        )


def _not_get(request: httpx.Request) -> bool:
    return request.method != "GET"


VENDORS: list[Vendor] = [
    Vendor(
        "crm.hubspot",
        "crm",
        lambda base: HubSpotCRM(
            _s(HubSpotSettings, base_url=base, token=SecretStr(SECRETS["hubspot"]))
        ),
        lambda: hubspot_ok,
        h.hubspot_effects,
        lambda r: r.url.path.endswith("/batch/upsert"),
        error_200={
            "status": "COMPLETE",
            "results": [],
            "errors": [{"category": "VALIDATION_ERROR", "message": "Property values invalid"}],
        },
        error_200_raises=PermanentError,
    ),
    Vendor(
        "crm.salesforce",
        "crm",
        lambda base: SalesforceCRM(
            _s(
                SalesforceSettings,
                base_url=base,
                access_token=SecretStr(SECRETS["salesforce"]),
            )
        ),
        lambda: h.salesforce_ok,
        h.salesforce_effects,
        lambda r: r.method == "PATCH",
        error_200=[
            {
                "success": False,
                "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}],
            }
        ],
        error_200_raises=TransientError,
    ),
    Vendor(
        "crm.pipedrive",
        "crm",
        lambda base: PipedriveCRM(
            _s(PipedriveSettings, base_url=base, api_token=SecretStr(SECRETS["pipedrive"]))
        ),
        h.PipedriveFake,
        h.pipedrive_effects,
        _not_get,
        error_200={"success": False, "error": "Internal error"},
        error_200_raises=PermanentError,
        dedupes=False,
    ),
    Vendor(
        "notifier.slack_webhook",
        "notifier",
        lambda base: SlackWebhookNotifier(
            _s(SlackWebhookSettings, url=SecretStr(f"{base}/services/{SECRETS['slack_webhook']}"))
        ),
        lambda: lambda r: httpx.Response(200, text="ok"),
        h.chat_effects,
        _not_get,
        dedupes=False,
    ),
    Vendor(
        "notifier.slack",
        "notifier",
        lambda base: SlackNotifier(
            _s(SlackSettings, base_url=base, token=SecretStr(SECRETS["slack"]), channel="C1")
        ),
        lambda: h.slack_ok,
        h.chat_effects,
        _not_get,
        error_200={"ok": False, "error": "internal_error"},
        error_200_raises=TransientError,
        dedupes=False,
    ),
    Vendor(
        "notifier.teams",
        "notifier",
        lambda base: TeamsNotifier(_s(TeamsSettings, url=SecretStr(teams_url(base)))),
        lambda: lambda r: httpx.Response(202),
        h.chat_effects,
        _not_get,
        dedupes=False,
    ),
    Vendor(
        "notifier.webhook",
        "notifier",
        lambda base: WebhookNotifier(
            f"{base}/{SECRETS['webhook_path']}",
            token=SecretStr(SECRETS["webhook"]),
            timeout=TIMEOUT,
        ),
        lambda: lambda r: httpx.Response(200),
        h.keyed_effects,
        _not_get,
    ),
    Vendor(
        "event_sink.segment",
        "event_sink",
        lambda base: SegmentEventSink(
            _s(SegmentSettings, base_url=base, write_key=SecretStr(SECRETS["segment"]))
        ),
        lambda: lambda r: httpx.Response(200, json={"success": True}),
        h.segment_effects,
        _not_get,
    ),
    Vendor(
        "event_sink.webhook",
        "event_sink",
        lambda base: WebhookEventSink(
            _s(
                WebhookEventsSettings,
                url=f"{base}/{SECRETS['webhook_events_path']}",
                token=SecretStr(SECRETS["webhook_events"]),
            )
        ),
        lambda: lambda r: httpx.Response(202),
        h.event_webhook_effects,
        _not_get,
    ),
]

BY_ID = {v.id: v for v in VENDORS}
