"""In-memory adapters for tests about the flows, not the adapters.

Each fake implements a port of leadflow.integrations.base and keeps what it was asked
in memory: `calls` lists every call in order (shared with other fakes through a
`Journal` when the order across adapters matters), and the side effects it keeps,
de-duplicated by idempotency key as a vendor would (`kept`). A test can make any call
wait, fail or take time (see `Scripted`). Each fake is its own place for side
effects (`once_scope`), so no two tests share Prefect's once-only records.

They pass the adapter contract kit's checks that need no vendor (tests/unit/
test_fakes.py), so a flow test on fakes exercises the same port a real adapter fills.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from leadflow.integrations.base import CRM, EventSink, LeadEvent, Notifier, RunAlert, Scorer
from leadflow.integrations.errors import PermanentError
from leadflow.models import CrmMatch, Decision, Lead, Score
from leadflow.rules import ScoringRules, score_lead
from tests.support.paths import EXAMPLES


class Journal:
    """What several fakes were asked, in one order: "look_up", "update_crm", ..."""

    def __init__(self) -> None:
        self.calls: list[str] = []


class Scripted:
    """Shared behaviour, per call name ("look_up", "update_crm", "notify_team",
    "log_event", "score", "alert"): `gates` make a call wait for an asyncio.Barrier or
    Event, `failures` raise the listed exceptions on its next calls in turn (before the
    effect, or `after` it: a reply lost on the way back), `delay` slows every call."""

    def __init__(
        self,
        *,
        journal: Journal | None = None,
        gates: Mapping[str, asyncio.Barrier | asyncio.Event] | None = None,
        failures: Mapping[str, Sequence[BaseException]] | None = None,
        after: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.journal = journal or Journal()
        self.gates = dict(gates or {})
        self.failures = {call: list(errors) for call, errors in (failures or {}).items()}
        self.after = after
        self.delay = delay
        # a fresh fake is a new place for side effects, as a fresh database is
        self._scope = uuid.uuid4().hex[:8]

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self._scope}"

    @property
    def calls(self) -> list[str]:
        return self.journal.calls

    async def _enter(self, call: str) -> None:
        self.journal.calls.append(call)
        if call in self.gates:
            await asyncio.wait_for(self.gates[call].wait(), timeout=10)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures.get(call) and not self.after:
            raise self.failures[call].pop(0)

    def _leave(self, call: str) -> None:
        if self.failures.get(call) and self.after:
            raise self.failures[call].pop(0)


class MemoryCRM(Scripted, CRM):
    """Contacts and accounts in dicts, seeded like the local CRM's sample data."""

    name = "memory"

    def __init__(
        self,
        seed: Path | None = EXAMPLES / "crm_seed.json",
        *,
        refuse: Collection[str] = (),
        **script,
    ) -> None:
        super().__init__(**script)
        data = json.loads(seed.read_text()) if seed else {}
        self.accounts = {a["domain"]: a for a in data.get("accounts", [])}
        self.contacts = {c["email"]: c for c in data.get("contacts", [])}
        self.kept: dict[str, tuple[str, Decision]] = {}  # email -> (key, last decision)
        self.look_ups: Counter[str] = Counter()  # per email
        self.upserts: Counter[str] = Counter()  # per email
        self.written: list[tuple[str, str]] = []  # (email, idempotency key), each upsert
        self.refuse = set(refuse)  # emails whose upsert the CRM refuses, every time

    async def look_up(self, lead: Lead) -> CrmMatch:
        await self._enter("look_up")
        self.look_ups[lead.email] += 1
        contact, account = self.contacts.get(lead.email), self.accounts.get(lead.domain)
        self._leave("look_up")
        return CrmMatch(
            contact_id=contact["id"] if contact else None,
            contact_owner=contact.get("owner") if contact else None,
            account_id=account["id"] if account else None,
            account_owner=account.get("owner") if account else None,
            enrichment={
                k: account[f]
                for k, f in (
                    ("company", "name"),
                    ("employee_count", "employee_count"),
                    ("country", "country"),
                )
                if account and account.get(f) is not None
            },
        )

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        await self._enter("update_crm")
        if lead.email in self.refuse:
            raise PermanentError(f"memory crm: upsert of {lead.email} refused (test)")
        self.upserts[lead.email] += 1
        self.written.append((lead.email, idempotency_key))
        self.kept[lead.email] = (idempotency_key, decision)
        self.contacts.setdefault(lead.email, {"id": f"mem_{lead.id}", "email": lead.email})
        self._leave("update_crm")
        return self.contacts[lead.email]["id"]


class MemoryNotifier(Scripted, Notifier):
    """`sent` is every notification (lead, key); `kept` the messages a vendor that
    drops a repeated key would keep (key -> lead); `alerts` the run alerts. A lead
    whose email is in `refuse` is refused with a 400, and so is a bulk call holding one
    (nothing of that call is sent), until the test clears `refuse`."""

    name = "memory"

    def __init__(self, *, refuse: Collection[str] = (), **script) -> None:
        super().__init__(**script)
        self.sent: list[tuple[Lead, str]] = []
        self.alerts: list[tuple[RunAlert, str]] = []
        self.refuse = set(refuse)

    @property
    def kept(self) -> dict[str, Lead]:
        return {key: lead for lead, key in self.sent}

    def _refused(self, leads: Sequence[Lead]) -> None:
        for lead in leads:
            if lead.email in self.refuse:
                raise PermanentError(f"memory notifier: HTTP 400, {lead.email} refused (test)")

    async def notify(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> None:
        await self._enter("notify_team")
        self._refused([lead])
        self.sent.append((lead, idempotency_key))
        self._leave("notify_team")

    async def notify_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> None:
        self._refused([lead for lead, _, _ in items])
        await super().notify_many(items)

    async def alert(self, alert: RunAlert, *, idempotency_key: str) -> None:
        await self._enter("alert")
        self.alerts.append((alert, idempotency_key))
        self._leave("alert")


class MemoryEventSink(Scripted, EventSink):
    """`events` by event_id: a repeated event_id is ignored, as the port requires."""

    name = "memory"

    def __init__(self, **script) -> None:
        super().__init__(**script)
        self.events: dict[str, LeadEvent] = {}

    async def record(self, event: LeadEvent) -> None:
        await self._enter("log_event")
        self.events.setdefault(event.event_id, event)
        self._leave("log_event")


class MemoryScorer(Scripted, Scorer):
    """The rules score, with the fakes' journal, gate and failures."""

    name = "memory"

    def __init__(self, rules: ScoringRules, **script) -> None:
        super().__init__(**script)
        self.rules = rules

    async def score(self, lead: Lead, match: CrmMatch | None) -> Score:
        await self._enter("score")
        self._leave("score")
        return score_lead(lead, self.rules)


def memory_adapters(journal: Journal | None = None) -> dict[str, object]:
    """A CRM, notifier and event sink in memory, for `make_runtime(**memory_adapters())`."""
    journal = journal or Journal()
    return {
        "crm": MemoryCRM(journal=journal),
        "notifier": MemoryNotifier(journal=journal),
        "event_sink": MemoryEventSink(journal=journal),
    }
