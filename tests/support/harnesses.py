"""One harness per built-in adapter (every entry point of leadflow's own
`leadflow.adapters` group), for the contract kit (leadflow.testing) run in
test_adapter_suite.py.

A harness builds its adapter against a stand-in for the vendor: HTTP adapters talk
to an `HttpVendor` (an `httpx.MockTransport` handler that records requests and
answers like the vendor, or with a forced error status) whose `effects()` says what
the vendor keeps from a request after its own de-duplication (HubSpot by email,
Segment by messageId, webhooks by Idempotency-Key, chat and email none); the email
notifier talks to a real aiosmtpd server; local adapters keep their own state in
tmp_path, read back through a `LocalStore`. `env` is what `from_settings` needs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
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
from leadflow.integrations.http_source import HttpLeadSource, HttpSourceSettings
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotLeadSource, HubSpotSettings
from leadflow.integrations.legacy_command import CommandLegacy
from leadflow.integrations.legacy_http import HttpLegacy
from leadflow.integrations.legacy_observed import ObservedLegacy
from leadflow.integrations.legacy_python import PythonLegacy
from leadflow.integrations.legacy_rules import RulesLegacy
from leadflow.integrations.local_crm import LocalCRM
from leadflow.integrations.model_scorer import ModelScorer, ModelScorerSettings
from leadflow.integrations.pipedrive import PipedriveCRM, PipedriveSettings
from leadflow.integrations.registry import ENTRY_POINT_GROUP
from leadflow.integrations.rules_scorer import RulesScorer
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
from leadflow.rules import load_rules
from leadflow.testing import HttpVendor, LocalStore, mentioned
from leadflow.testing import json_body as _json
from tests.support.paths import EXAMPLES
from tests.support.smtp import start_smtp

HOOK = "https://hooks.example.test/hook"


@dataclass
class Harness:
    entry_point: str
    build: Callable[[Path, Any], Adapter]  # (tmp_path, vendor) -> adapter
    vendor: Callable[[Path], Any] = lambda tmp: None  # tmp_path -> vendor stand-in
    env: dict[str, str] = field(default_factory=dict)  # what from_settings needs
    extra: dict[str, Any] = field(default_factory=dict)  # expected, target, record


HARNESSES: dict[str, Harness] = {}
OURS = {e.name for e in entry_points(group=ENTRY_POINT_GROUP) if e.dist.name == "leadflow"}


def harness(h: Harness) -> Harness:
    """Keep the harness while leadflow registers its entry point."""
    if h.entry_point in OURS:
        HARNESSES[h.entry_point] = h
    return h


def http(ok, effects=None, **options) -> Callable[[Path], HttpVendor]:
    return lambda tmp: HttpVendor(ok, effects, **options)


# --- HTTP vendors --------------------------------------------------------------------


def hubspot_ok(request: httpx.Request) -> httpx.Response:
    if request.url.path.startswith("/crm/v3/owners"):
        return httpx.Response(200, json={"results": [{"id": "7", "email": "rep@x"}]})
    if request.method == "GET":  # a contact read by email: the contact, owned by rep 7
        email = request.url.path.rsplit("/", 1)[1]
        properties = {"email": email, "hubspot_owner_id": "7"}
        return httpx.Response(200, json={"id": hubspot_id(email), "properties": properties})
    inputs = _json(request)["inputs"]
    return httpx.Response(
        200,
        json={
            "status": "COMPLETE",
            "startedAt": "2026-11-22T08:00:00Z",
            "completedAt": "2026-11-22T08:00:01Z",
            "results": [
                {
                    "id": hubspot_id(item["id"]),
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


def hubspot_id(email: str) -> str:
    return str(int(hashlib.sha256(email.encode()).hexdigest()[:8], 16))


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
    """Pipedrive's persons (v2 API) and leads (v1), enough to see duplicates: search
    finds only persons created before the last `index()` (Pipedrive's search lags
    creation)."""

    def __init__(self) -> None:
        self.persons: dict[int, dict] = {}
        self.leads: list[dict] = []
        self.indexed: set[int] = set()
        self.activities: list[dict] = []  # v2 activities: person_id, done, times
        self.activity_page = 500

    def index(self) -> None:
        self.indexed = set(self.persons)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == "/v1/users/find":
            data = [{"id": 7, "email": params["term"]}]
        elif path == "/api/v2/persons/search":
            found = [
                {"item": {"id": i, "emails": [p["emails"][0]["value"]], "owner": {"id": 7}}}
                for i, p in self.persons.items()
                if i in self.indexed and p["emails"][0]["value"] == params["term"]
            ]
            data = {"items": found[:1]}
        elif path == "/api/v2/persons" and request.method == "POST":
            person_id = len(self.persons) + 1
            self.persons[person_id] = _json(request)
            data = {"id": person_id}
        elif path.startswith("/api/v2/persons/") and request.method == "PATCH":
            data = {"id": int(path.rsplit("/", 1)[1])}
        elif path == "/api/v2/activities":
            return self._activities(params)
        elif path == "/v1/leads" and request.method == "GET":
            data = [x for x in self.leads if x["person_id"] == int(params["person_id"])]
        elif path == "/v1/leads":
            self.leads.append(_json(request))
            data = {"id": f"lead-{len(self.leads)}"}
        else:
            return httpx.Response(404, json={"success": False, "error": "Unknown method"})
        return httpx.Response(200, json={"success": True, "data": data})

    def _activities(self, params: httpx.QueryParams) -> httpx.Response:
        """`GET /api/v2/activities`: by person, done, updated since; cursor paging."""
        found = [
            a
            for a in self.activities
            if a["person_id"] == int(params["person_id"])
            and (params.get("done") is None or a["done"] == (params["done"] == "true"))
            and a["update_time"] >= params.get("updated_since", "")
        ]
        start = int(params.get("cursor", 0))
        size = min(int(params.get("limit", 100)), self.activity_page)
        page, more = found[start : start + size], start + size < len(found)
        extra = {"next_cursor": str(start + size) if more else None}
        return httpx.Response(200, json={"success": True, "data": page, "additional_data": extra})


def pipedrive_effects(request: httpx.Request, emails: set[str]) -> list[tuple[str, str]]:
    """Pipedrive keeps every lead added (no de-duplication): one effect per POST."""
    if not (request.method == "POST" and request.url.path == "/v1/leads"):
        return []
    return [(f"{id(request)}", _json(request)["title"].rsplit(" ", 1)[1].rstrip("]"))]


# --- side-effecting HTTP adapters ----------------------------------------------------

harness(
    Harness(
        "crm.hubspot",
        lambda tmp, v: HubSpotCRM(
            _settings(HubSpotSettings, token=SecretStr("t")), transport=v.transport
        ),
        http(hubspot_ok, hubspot_effects),
        env={"LEADFLOW_HUBSPOT_TOKEN": "t"},
    )
)
harness(
    Harness(
        "crm.salesforce",
        lambda tmp, v: SalesforceCRM(
            _settings(
                SalesforceSettings,
                base_url="https://x.my.salesforce.com",
                access_token=SecretStr("a"),
            ),
            transport=v.transport,
        ),
        http(salesforce_ok, salesforce_effects),
        env={
            "LEADFLOW_SALESFORCE_BASE_URL": "https://x.my.salesforce.com",
            "LEADFLOW_SALESFORCE_ACCESS_TOKEN": "a",
        },
    )
)
harness(
    Harness(
        "crm.pipedrive",
        lambda tmp, v: PipedriveCRM(
            _settings(PipedriveSettings, api_token=SecretStr("p")), transport=v.transport
        ),
        http(PipedriveFake, pipedrive_effects),  # a class: a fresh, stateful fake per test
        env={"LEADFLOW_PIPEDRIVE_API_TOKEN": "p"},
    )
)
harness(
    Harness(
        "notifier.slack_webhook",
        lambda tmp, v: SlackWebhookNotifier(
            _settings(SlackWebhookSettings, url=SecretStr(HOOK), rate_limit_requests=1000),
            transport=v.transport,
        ),
        http(lambda r: httpx.Response(200, text="ok"), chat_effects),
        env={"LEADFLOW_SLACK_WEBHOOK_URL": HOOK},
    )
)
harness(
    Harness(
        "notifier.slack",
        lambda tmp, v: SlackNotifier(
            _settings(
                SlackSettings, token=SecretStr("xoxb-1"), channel="C1", rate_limit_requests=1000
            ),
            transport=v.transport,
        ),
        http(slack_ok, chat_effects),
        env={"LEADFLOW_SLACK_TOKEN": "xoxb-1", "LEADFLOW_SLACK_CHANNEL": "C1"},
    )
)
harness(
    Harness(
        "notifier.teams",
        lambda tmp, v: TeamsNotifier(
            _settings(TeamsSettings, url=SecretStr(HOOK)), transport=v.transport
        ),
        http(lambda r: httpx.Response(202), chat_effects),
        env={"LEADFLOW_TEAMS_URL": HOOK},
    )
)
harness(
    Harness(
        "notifier.webhook",
        lambda tmp, v: WebhookNotifier(HOOK, transport=v.transport),
        http(lambda r: httpx.Response(200), keyed_effects),
        env={"LEADFLOW_WEBHOOK_URL": HOOK},
    )
)
harness(
    Harness(
        "event_sink.segment",
        lambda tmp, v: SegmentEventSink(
            _settings(SegmentSettings, write_key=SecretStr("wk")), transport=v.transport
        ),
        http(lambda r: httpx.Response(200, json={"success": True}), segment_effects),
        env={"LEADFLOW_SEGMENT_WRITE_KEY": "wk"},
    )
)
harness(
    Harness(
        "event_sink.webhook",
        lambda tmp, v: WebhookEventSink(
            _settings(WebhookEventsSettings, url=HOOK), transport=v.transport
        ),
        http(lambda r: httpx.Response(202), event_webhook_effects),
        env={"LEADFLOW_WEBHOOK_EVENTS_URL": HOOK},
    )
)


# --- local and SMTP ------------------------------------------------------------------


def _db(tmp: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp / 'contract.db'}"


def _rows(tmp: Path, sql: str) -> list[str]:
    with sqlite3.connect(tmp / "contract.db") as connection:
        return [row[0] for row in connection.execute(sql)]


def _jsonl(path: Path, key: str) -> list[str]:
    return [json.loads(line)[key] for line in path.read_text().splitlines() if line]


harness(
    Harness(
        "crm.local",
        lambda tmp, v: LocalCRM(_db(tmp)),
        lambda tmp: LocalStore(lambda: _rows(tmp, "select email from crm_contacts")),
    )
)
harness(
    Harness(
        "notifier.terminal",
        lambda tmp, v: TerminalNotifier(tmp / "outbox.jsonl", echo=False),
        lambda tmp: LocalStore(lambda: _jsonl(tmp / "outbox.jsonl", "email")),
    )
)
for _name in ("sqlite", "sql"):
    harness(
        Harness(
            f"event_sink.{_name}",
            lambda tmp, v: SqlEventSink(_db(tmp)),
            lambda tmp: LocalStore(lambda: _rows(tmp, "select lead_id from lead_events")),
        )
    )
harness(
    Harness(
        "event_sink.jsonl",
        lambda tmp, v: JsonlEventSink(tmp / "events.jsonl"),
        lambda tmp: LocalStore(lambda: _jsonl(tmp / "events.jsonl", "lead_id")),
    )
)


class SmtpVendor:
    """A real SMTP server (aiosmtpd) on loopback as the vendor: `fail` makes it answer
    DATA with the SMTP code for the HTTP status; every message is kept."""

    CODES = {503: 451, 429: 421, 400: 550}

    def __init__(self) -> None:
        self.controller, self.server = start_smtp()

    def fail(self, status: int) -> None:
        self.server.sink.fail_code = self.CODES[status]

    async def kept(self, leads) -> list[str]:
        emails = sorted({lead.email for lead in leads})
        bodies = [m.get_body(("plain",)).get_content() for m in self.server.sink.messages]
        return [e for body in bodies for e in emails if e in body]

    def close(self) -> None:
        self.controller.stop()


harness(
    Harness(
        "notifier.email",
        lambda tmp, v: EmailNotifier(
            _settings(
                EmailSettings,
                host=v.server.host,
                port=v.server.port,
                sender="leadflow@example.test",
                start_tls=False,
            )
        ),
        lambda tmp: SmtpVendor(),
        env={"LEADFLOW_EMAIL_HOST": "127.0.0.1", "LEADFLOW_EMAIL_SENDER": "leadflow@example.test"},
    )
)


# --- scorers -------------------------------------------------------------------------


def _rules():
    return load_rules(EXAMPLES / "rules.toml")


def model_ok(request: httpx.Request) -> httpx.Response:
    """An OpenAI-compatible answer whose score depends on the lead (its title length)."""
    facts = json.loads(_json(request)["messages"][1]["content"])
    points = len(facts["lead"].get("title") or "")
    answer = {"score": points, "reasons": [{"rule": "title length", "points": points}]}
    return httpx.Response(
        200, json={"choices": [{"message": {"role": "assistant", "content": json.dumps(answer)}}]}
    )


harness(Harness("scorer.rules", lambda tmp, v: RulesScorer(_rules().scoring)))
harness(
    Harness(
        "scorer.model",
        lambda tmp, v: ModelScorer(
            _settings(ModelScorerSettings, model="m", api_key=SecretStr("k")),
            _rules().scoring,
            transport=v.transport,
        ),
        http(model_ok),
        env={"LEADFLOW_MODEL_SCORER_MODEL": "m"},
    )
)


# --- sources: each lists the same three people, in this order ------------------------

SOURCE_EMAILS = ["cara@northwind.test", "abe@contoso.test", "bo@fabrikam.test"]


def _csv(tmp: Path) -> Path:
    path = tmp / "leads.csv"
    path.write_text("email,first_name\n" + "".join(f"{e},x\n" for e in SOURCE_EMAILS))
    return path


def http_source_ok(request: httpx.Request) -> httpx.Response:
    items = [
        {"id": str(i), "email": e, "updated_at": f"2026-11-22T08:0{i}:00Z"}
        for i, e in enumerate(SOURCE_EMAILS)
    ]
    return httpx.Response(200, json={"data": items})


def hubspot_search_ok(request: httpx.Request) -> httpx.Response:
    results = [
        {
            "id": str(100 + i),
            "properties": {"email": e, "createdate": f"2026-11-22T08:0{i}:00Z"},
            "createdAt": f"2026-11-22T08:0{i}:00Z",
        }
        for i, e in enumerate(SOURCE_EMAILS)
    ]
    return httpx.Response(200, json={"total": 3, "results": results})


harness(
    Harness(
        "source.http",
        lambda tmp, v: HttpLeadSource(
            _settings(
                HttpSourceSettings,
                url="https://leads.example.test/leads",
                state_path=tmp / "http.json",
            ),
            transport=v.transport,
        ),
        http(http_source_ok, reads_fail=True),
        env={"LEADFLOW_HTTP_SOURCE_URL": "https://leads.example.test/leads"},
        extra={"expected": SOURCE_EMAILS},
    )
)
harness(
    Harness(
        "source.hubspot",
        lambda tmp, v: HubSpotLeadSource(
            _settings(HubSpotSettings, token=SecretStr("t"), source_state_path=tmp / "hs.json"),
            transport=v.transport,
        ),
        http(hubspot_search_ok, reads_fail=True),
        env={"LEADFLOW_HUBSPOT_TOKEN": "t"},
        extra={"expected": SOURCE_EMAILS},
    )
)


# --- legacy processes ----------------------------------------------------------------

RECORD = {"email": "Kim@Example.ORG", "title": "VP Sales", "country": "US", "source": "referral"}
ANSWER = {"score": 80, "tier": "hot", "follow_up": "call", "sla_minutes": 15, "rep": "a@x.test"}
ANSWER_PROGRAM = f"import json, sys; json.load(sys.stdin); print(json.dumps({ANSWER!r}))"
DECISIONS_CSV = EXAMPLES / "legacy" / "decisions.csv"


def _observed_record() -> dict:
    with DECISIONS_CSV.open() as handle:
        next(handle)
        return {"email": next(handle).split(",")[1]}


harness(
    Harness(
        "legacy.python",
        lambda tmp, v: PythonLegacy(lambda record: ANSWER),
        extra={"target": "examples.legacy.process:decide", "record": RECORD},
    )
)
harness(
    Harness(
        "legacy.command",
        lambda tmp, v: CommandLegacy([sys.executable, "-c", ANSWER_PROGRAM]),
        extra={"target": f"{sys.executable} -c pass", "record": RECORD},
    )
)
harness(
    Harness(
        "legacy.http",
        lambda tmp, v: HttpLegacy("https://legacy.example.test/decide", transport=v.transport),
        http(lambda r: httpx.Response(200, json=ANSWER)),
        extra={"target": "https://legacy.example.test/decide", "record": RECORD},
    )
)
harness(
    Harness(
        "legacy.observed",
        lambda tmp, v: ObservedLegacy(DECISIONS_CSV),
        extra={"target": str(DECISIONS_CSV), "record": _observed_record()},
    )
)
harness(
    Harness(
        "legacy.rules",
        lambda tmp, v: RulesLegacy(_rules(), LocalCRM(_db(tmp)), _db(tmp)),
        extra={"target": str(EXAMPLES / "rules.toml"), "record": RECORD},
    )
)
