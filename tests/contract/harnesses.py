"""One harness per registered side-effecting adapter, for the shared contract suite.

A harness builds its adapter against a stand-in for the vendor and says what the
vendor would keep: HTTP adapters talk to `FakeVendor` (an `httpx.MockTransport`
handler that records requests and answers like the vendor, or with a forced error
status); the email notifier talks to a real aiosmtpd server; local adapters keep
their own state in tmp_path. `kept()` lists, per lead email, the side effects the
vendor ends up with after its own de-duplication (HubSpot by email, Segment by
messageId, webhooks by Idempotency-Key, chat and email none), and `per_request()`
the leads one request carries, so the suite can check that a repeated write and a
bulk call with a duplicate inside each leave exactly one effect per lead.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from leadflow.integrations.base import Adapter
from leadflow.integrations.email_notifier import EmailNotifier, EmailSettings
from leadflow.integrations.file_events import (
    JsonlEventSink,
    WebhookEventSink,
    WebhookEventsSettings,
)
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotSettings
from leadflow.integrations.local_crm import LocalCRM
from leadflow.integrations.pipedrive import PipedriveCRM, PipedriveSettings
from leadflow.integrations.salesforce import SalesforceCRM, SalesforceSettings
from leadflow.integrations.segment import SegmentEventSink, SegmentSettings
from leadflow.integrations.slack import (
    SlackNotifier,
    SlackSettings,
    SlackWebhookNotifier,
    SlackWebhookSettings,
)
from leadflow.integrations.sql_events import SqlEventSink
from leadflow.integrations.teams import TeamsNotifier, TeamsSettings
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.integrations.webhook_notifier import WebhookNotifier
from tests.conftest import EXAMPLES

HOOK = "https://hooks.example.test/hook"


class FakeVendor:
    """Records requests; answers with `ok(request)` or with `fail_status`."""

    def __init__(self, ok: Callable[[httpx.Request], httpx.Response]) -> None:
        self.ok = ok
        self.fail_status: int | None = None
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_status is not None and not _is_lookup(request):
            headers = {"Retry-After": "0"} if self.fail_status == 429 else {}
            return httpx.Response(self.fail_status, headers=headers, json={"error": "forced"})
        self.requests.append(request)
        return self.ok(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _is_lookup(request: httpx.Request) -> bool:
    """Reads that precede a write (HubSpot's owner search) answer normally."""
    return request.method == "GET"


def _json(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def mentioned(request: httpx.Request, emails: set[str]) -> list[str]:
    """Lead emails a chat message mentions (each once per message)."""
    text = request.content.decode()
    return sorted(e for e in emails if e in text)


@dataclass
class Harness:
    kind: str
    name: str
    build: Callable[[Path, Any], Adapter]
    ok: Callable[[httpx.Request], httpx.Response] | None = None
    # vendor's de-duplication: request -> [(dedupe key, lead email)]
    effects: Callable[[httpx.Request, set[str]], list[tuple[str, str]]] | None = None
    # for non-HTTP adapters: what the adapter's store holds, as lead emails
    stored: Callable[[Adapter, Path, set[str]], Awaitable[list[str]]] | None = None
    smtp: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def http(self) -> bool:
        return self.ok is not None


# --- HTTP vendors --------------------------------------------------------------------


def hubspot_ok(request: httpx.Request) -> httpx.Response:
    if request.url.path.startswith("/crm/v3/owners"):
        return httpx.Response(200, json={"results": [{"id": "7", "email": "rep@x"}]})
    inputs = _json(request)["inputs"]
    return httpx.Response(
        200,
        json={
            "status": "COMPLETE",
            "startedAt": "2026-11-22T08:00:00Z",
            "completedAt": "2026-11-22T08:00:01Z",
            "results": [
                {
                    "id": str(abs(hash(item["id"])) % 10**9),
                    "properties": {"email": item["id"]},
                    "archived": False,
                    "new": True,
                    "createdAt": "2026-11-22T08:00:00Z",
                    "updatedAt": "2026-11-22T08:00:00Z",
                }
                for item in inputs
            ],
        },
    )


def hubspot_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    if not request.url.path.endswith("/batch/upsert"):
        return []
    return [(item["id"], item["id"]) for item in _json(request)["inputs"]]


def chat_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    # chat keeps every message: the key is the request itself
    return [(f"{id(request)}:{e}", e) for e in mentioned(request, emails)]


def keyed_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    """Webhooks: the receiver drops a repeated Idempotency-Key."""
    key = request.headers["idempotency-key"]
    return [(f"{key}:{e}", e) for e in mentioned(request, emails)]


def event_webhook_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    """The receiver drops a repeated Idempotency-Key; a batch carries `events`."""
    key = request.headers["idempotency-key"]
    body = _json(request)
    events = body["events"] if "events" in body else [body]
    return [(f"{key}:{e['lead_id']}", e["lead_id"]) for e in events]


def segment_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    body = _json(request)
    messages = body["batch"] if "batch" in body else [body]
    return [(m["messageId"], m["userId"]) for m in messages]


def slack_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "channel": "C1", "ts": "1.2"})


def _settings(cls, **values):
    return cls(_env_file=None, **values)


HARNESSES: dict[tuple[str, str], Harness] = {}


def harness(h: Harness) -> Harness:
    HARNESSES[(h.kind, h.name)] = h
    return h


harness(
    Harness(
        "crm",
        "hubspot",
        lambda tmp, t: HubSpotCRM(_settings(HubSpotSettings, token=SecretStr("t")), transport=t),
        ok=hubspot_ok,
        effects=hubspot_effects,
    )
)
harness(
    Harness(
        "notifier",
        "slack_webhook",
        lambda tmp, t: SlackWebhookNotifier(
            _settings(SlackWebhookSettings, url=SecretStr(HOOK), rate_limit_requests=1000),
            transport=t,
        ),
        ok=lambda r: httpx.Response(200, text="ok"),
        effects=chat_effects,
    )
)
harness(
    Harness(
        "notifier",
        "slack",
        lambda tmp, t: SlackNotifier(
            _settings(
                SlackSettings, token=SecretStr("xoxb-1"), channel="C1", rate_limit_requests=1000
            ),
            transport=t,
        ),
        ok=slack_ok,
        effects=chat_effects,
    )
)
harness(
    Harness(
        "notifier",
        "teams",
        lambda tmp, t: TeamsNotifier(_settings(TeamsSettings, url=SecretStr(HOOK)), transport=t),
        ok=lambda r: httpx.Response(202),
        effects=chat_effects,
    )
)
harness(
    Harness(
        "notifier",
        "webhook",
        lambda tmp, t: WebhookNotifier(HOOK, transport=t),
        ok=lambda r: httpx.Response(200),
        effects=keyed_effects,
    )
)
harness(
    Harness(
        "event_sink",
        "segment",
        lambda tmp, t: SegmentEventSink(
            _settings(SegmentSettings, write_key=SecretStr("wk")), transport=t
        ),
        ok=lambda r: httpx.Response(200, json={"success": True}),
        effects=segment_effects,
    )
)
harness(
    Harness(
        "event_sink",
        "webhook",
        lambda tmp, t: WebhookEventSink(_settings(WebhookEventsSettings, url=HOOK), transport=t),
        ok=lambda r: httpx.Response(202),
        effects=event_webhook_effects,
    )
)


def salesforce_ok(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/query"):
        return httpx.Response(200, json={"totalSize": 1, "done": True, "records": [{"Id": "005U"}]})
    records = _json(request)["records"]
    return httpx.Response(
        200, json=[{"id": f"00Q{r['Leadflow_Id__c']}", "success": True} for r in records]
    )


def salesforce_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    if request.method != "PATCH":
        return []
    return [(r["Leadflow_Id__c"], r["Email"]) for r in _json(request)["records"]]


class PipedriveFake:
    """Pipedrive's persons and leads, enough to see duplicates: search finds only
    persons created before the last `index()` (Pipedrive's search lags creation)."""

    def __init__(self) -> None:
        self.persons: dict[int, dict] = {}
        self.leads: list[dict] = []
        self.indexed: set[int] = set()

    def index(self) -> None:
        self.indexed = set(self.persons)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == "/v1/users/find":
            data = [{"id": 7, "email": params["term"]}]
        elif path == "/v1/persons/search":
            found = [
                {"item": {"id": i, "emails": [p["email"][0]["value"]], "owner": {"id": 7}}}
                for i, p in self.persons.items()
                if i in self.indexed and p["email"][0]["value"] == params["term"]
            ]
            data = {"items": found[:1]}
        elif path == "/v1/persons" and request.method == "POST":
            person_id = len(self.persons) + 1
            self.persons[person_id] = _json(request)
            data = {"id": person_id}
        elif path.startswith("/v1/persons/"):
            data = {"id": int(path.rsplit("/", 1)[1])}
        elif path == "/v1/leads" and request.method == "GET":
            data = [x for x in self.leads if x["person_id"] == int(params["person_id"])]
        elif path == "/v1/leads":
            self.leads.append(_json(request))
            data = {"id": f"lead-{len(self.leads)}"}
        else:
            return httpx.Response(404, json={"success": False, "error": "Unknown method"})
        return httpx.Response(200, json={"success": True, "data": data})


def pipedrive_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    """Pipedrive keeps every lead added (no de-duplication): one effect per POST."""
    if not (request.method == "POST" and request.url.path == "/v1/leads"):
        return []
    return [(f"{id(request)}", _json(request)["title"].rsplit(" ", 1)[1].rstrip("]"))]


harness(
    Harness(
        "crm",
        "salesforce",
        lambda tmp, t: SalesforceCRM(
            _settings(
                SalesforceSettings,
                base_url="https://x.my.salesforce.com",
                access_token=SecretStr("a"),
            ),
            transport=t,
        ),
        ok=salesforce_ok,
        effects=salesforce_effects,
    )
)
harness(
    Harness(
        "crm",
        "pipedrive",
        lambda tmp, t: PipedriveCRM(
            _settings(PipedriveSettings, api_token=SecretStr("p")), transport=t
        ),
        ok=PipedriveFake,  # a class: a fresh, stateful fake per test
        effects=pipedrive_effects,
    )
)


# --- local and SMTP ------------------------------------------------------------------


def _db(tmp: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp / 'contract.db'}"


def _rows(tmp: Path, sql: str) -> list[str]:
    with sqlite3.connect(tmp / "contract.db") as connection:
        return [row[0] for row in connection.execute(sql)]


async def local_crm_stored(adapter, tmp: Path, emails: set[str]) -> list[str]:
    return _rows(tmp, "select email from crm_contacts")


async def outbox_stored(adapter, tmp: Path, emails: set[str]) -> list[str]:
    lines = (tmp / "outbox.jsonl").read_text().splitlines()
    return [json.loads(line)["email"] for line in lines if line]


async def sql_events_stored(adapter, tmp: Path, emails: set[str]) -> list[str]:
    return _rows(tmp, "select lead_id from lead_events")


async def jsonl_stored(adapter, tmp: Path, emails: set[str]) -> list[str]:
    lines = (tmp / "events.jsonl").read_text().splitlines()
    return [json.loads(line)["lead_id"] for line in lines if line]


harness(Harness("crm", "local", lambda tmp, t: LocalCRM(_db(tmp)), stored=local_crm_stored))
harness(
    Harness(
        "notifier",
        "terminal",
        lambda tmp, t: TerminalNotifier(tmp / "outbox.jsonl", echo=False),
        stored=outbox_stored,
    )
)
for _name in ("sqlite", "sql"):
    harness(
        Harness(
            "event_sink", _name, lambda tmp, t: SqlEventSink(_db(tmp)), stored=sql_events_stored
        )
    )
harness(
    Harness(
        "event_sink",
        "jsonl",
        lambda tmp, t: JsonlEventSink(tmp / "events.jsonl"),
        stored=jsonl_stored,
    )
)
harness(
    Harness(
        "notifier",
        "email",
        lambda tmp, smtp: EmailNotifier(
            _settings(
                EmailSettings,
                host=smtp.host,
                port=smtp.port,
                sender="leadflow@example.test",
                start_tls=False,
            )
        ),
        smtp=True,
    )
)

assert (EXAMPLES / "rules.toml").exists()
