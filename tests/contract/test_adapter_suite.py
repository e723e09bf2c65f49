"""The same contract for every registered side-effecting adapter of a kind.

For each CRM, notifier and event sink registered under `leadflow.adapters` (a new
one without a harness fails `test_every_registered_adapter_has_a_harness`):

- a transient vendor failure (503, 429) raises TransientError, a permanent one (400)
  PermanentError, so the pipeline retries exactly what may succeed;
- writing the same lead twice with the same once-only key leaves one effect;
- a bulk call with the same lead twice inside leaves one effect per lead, and no
  single request carries a lead twice.

Local adapters have no remote that can fail: their failure cases are skipped, with
that reason; their effects are read from their own store.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadflow.integrations.base import CRM, EventSink, LeadEvent, Notifier
from leadflow.integrations.errors import PermanentError, RateLimited, TransientError
from leadflow.integrations.registry import list_adapters
from tests.contract.conftest import SmtpServer, make_decision, make_lead, start_smtp
from tests.contract.harnesses import HARNESSES, FakeVendor, Harness

KINDS = ("crm", "notifier", "event_sink")
IDS = sorted(f"{kind}.{name}" for kind, name in HARNESSES)


def test_every_registered_adapter_has_a_harness() -> None:
    registered = {f"{i.kind}.{i.name}" for i in list_adapters() if i.kind in KINDS}
    assert registered <= set(IDS), f"adapters without a contract harness: {registered - set(IDS)}"


class Subject:
    """An adapter under test with its vendor stand-in."""

    def __init__(self, h: Harness, tmp_path: Path, smtp: SmtpServer | None) -> None:
        self.h = h
        self.tmp = tmp_path
        ok = h.ok() if isinstance(h.ok, type) else h.ok
        self.vendor = FakeVendor(ok) if h.http else None
        self.smtp = smtp
        target = self.vendor.transport if self.vendor else smtp
        self.adapter = h.build(tmp_path, target)

    def fail_with(self, status: int) -> None:
        if self.vendor is not None:
            self.vendor.fail_status = status
        elif self.smtp is not None:
            self.smtp.sink.fail_code = {503: 451, 429: 421, 400: 550}[status]
        else:
            pytest.skip(f"{self.h.kind}.{self.h.name} is local: no remote to fail")

    async def write(self, i: int, key: str | None = None):
        lead = make_lead(i)
        key = key or f"{self.h.kind}:{lead.id}"
        a = self.adapter
        if isinstance(a, CRM):
            return await a.upsert(lead, make_decision(lead), idempotency_key=key)
        if isinstance(a, Notifier):
            return await a.notify(lead, make_decision(lead), idempotency_key=key)
        assert isinstance(a, EventSink)
        return await a.record(event(lead, key))

    async def write_many(self, numbers: list[int]):
        leads = [make_lead(i) for i in numbers]
        items = [(lead, make_decision(lead), f"{self.h.kind}:{lead.id}") for lead in leads]
        a = self.adapter
        if isinstance(a, CRM):
            return await a.upsert_many(items)
        if isinstance(a, Notifier):
            return await a.notify_many(items)
        return await a.record_many([event(lead, key) for lead, _, key in items])

    async def effects(self, numbers: list[int]) -> Counter[str]:
        """Per lead email, the side effects the vendor keeps."""
        leads = [make_lead(i) for i in numbers]
        emails = {lead.email for lead in leads}
        by_id = {lead.id: lead.email for lead in leads}
        if self.vendor is not None:
            kept: dict[str, str] = {}
            for request in self.vendor.requests:
                for key, who in self.h.effects(request, emails):
                    kept[key] = who
            found = list(kept.values())
        elif self.smtp is not None:
            found = [
                e
                for m in self.smtp.sink.messages
                for e in sorted(emails)
                if e in m.get_body(("plain",)).get_content()
            ]
        else:
            found = await self.h.stored(self.adapter, self.tmp, emails)
        return Counter(by_id.get(who, who) for who in found)

    def requests_carry_a_lead_twice(self, numbers: list[int]) -> list[str]:
        emails = {make_lead(i).email for i in numbers}
        doubled = []
        for request in self.vendor.requests if self.vendor else []:
            leads = [who for _, who in self.h.effects(request, emails)]
            doubled += [who for who, n in Counter(leads).items() if n > 1]
        return doubled


def event(lead, key: str) -> LeadEvent:
    return LeadEvent(
        event_id=key,
        lead_id=lead.id,
        occurred_at=datetime(2026, 11, 22, 8, tzinfo=UTC),
        decision=make_decision(lead),
    )


@pytest.fixture(params=IDS)
async def subject(request, tmp_path: Path):
    kind, name = request.param.split(".")
    h = HARNESSES[(kind, name)]
    controller, smtp = start_smtp() if h.smtp else (None, None)
    s = Subject(h, tmp_path, smtp)
    try:
        yield s
    finally:
        await s.adapter.aclose()
        if controller is not None:
            controller.stop()


@pytest.mark.parametrize("status", [503, 429])
async def test_a_transient_failure_is_retryable(subject: Subject, status: int) -> None:
    subject.fail_with(status)
    with pytest.raises(TransientError) as caught:
        await subject.write(1)
    if status == 429 and subject.vendor is not None:
        assert isinstance(caught.value, RateLimited)


async def test_a_permanent_failure_is_not_retried(subject: Subject) -> None:
    subject.fail_with(400)
    with pytest.raises(PermanentError):
        await subject.write(1)


async def test_a_repeated_write_leaves_one_effect(subject: Subject) -> None:
    first = await subject.write(1, key="once:1")
    again = await subject.write(1, key="once:1")
    assert first == again  # the same record id from a CRM; None from the others
    assert await subject.effects([1]) == Counter({make_lead(1).email: 1})


async def test_a_bulk_call_with_a_duplicate_inside(subject: Subject) -> None:
    result = await subject.write_many([1, 2, 1, 3])
    if isinstance(subject.adapter, CRM):
        assert len(result) == 4 and result[0] == result[2]
    assert await subject.effects([1, 2, 3]) == Counter({make_lead(i).email: 1 for i in (1, 2, 3)})
    assert subject.requests_carry_a_lead_twice([1, 2, 3]) == []
