"""The database code on a real PostgreSQL server, where the races are real: many
connections, no single writer lock.

Runs when LEADFLOW_TEST_POSTGRES_URL points at an empty database the tests may
write to (`.ci/run` starts one when it can install PostgreSQL), for example
postgresql+asyncpg://leadflow:leadflow@127.0.0.1/leadflow_test; skipped otherwise.
Each test works in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from leadflow.assignment import Assigner
from leadflow.db import get_engine
from leadflow.intake import Quarantine, RawRecord, validate_record
from leadflow.integrations.base import LeadEvent
from leadflow.integrations.local_crm import LocalCRM, contacts
from leadflow.integrations.sql_events import SqlEventSink, lead_events
from leadflow.models import Decision, FollowUpType, Lead
from leadflow.rules import load_rules
from tests.support.paths import EXAMPLES
from tests.support.postgres import needs_postgres

pytestmark = needs_postgres


def na_lead(i: int) -> Lead:
    return Lead.from_record(
        {"email": f"pg{i}@small{i}.test", "country": "US", "employee_count": 20}
    )


def decision_for(lead: Lead, rep: str = "alice@example.com") -> Decision:
    return Decision(
        lead_id=lead.id,
        score=50,
        score_reasons=[],
        tier="warm",
        follow_up=FollowUpType.EMAIL_SEQUENCE,
        sla_minutes=1440,
        due_at=None,
        rep=rep,
        assignment_rule="test",
        rules_version="t",
    )


async def count(url: str, table: sa.Table) -> int:
    async with get_engine(url).connect() as connection:
        return (
            await connection.execute(sa.select(sa.func.count()).select_from(table))
        ).scalar_one()


async def test_round_robin_is_race_free_across_two_workers(pg_url):
    rules = load_rules(EXAMPLES / "rules.toml")
    # Two Assigners with their own engines stand for two worker processes.
    first = Assigner(rules.assignment, pg_url)
    other_spelling = make_url(pg_url).update_query_dict({"prepared_statement_cache_size": "99"})
    second = Assigner(rules.assignment, other_spelling.render_as_string(hide_password=False))
    assert get_engine(second.database_url) is not get_engine(first.database_url)
    results = await asyncio.gather(
        *((first if i % 2 else second).assign(na_lead(i), None) for i in range(200))
    )
    split = Counter(result.rep for result in results)
    expected = {"alice@example.com": 100, "bob@example.com": 200 / 3, "carol@example.com": 200 / 6}
    assert set(split) == set(expected)
    for rep, share in expected.items():
        assert abs(split[rep] - share) <= 1, (rep, split[rep])
    again = await asyncio.gather(*(first.assign(na_lead(i), None) for i in range(200)))
    assert [a.rep for a in again] == [r.rep for r in results]


async def test_caps_hold_across_two_workers(pg_url):
    """Daily caps counted in the assignment's transaction under the advisory lock:
    two workers never give a rep more than their cap, and the facts are kept."""
    from tests.support.routing import ANNA, BEN, MONDAY_TEN, WES, Clock, de_lead, make_rules

    rules = make_rules(reps={ANNA: {"max_per_day": 10}, BEN: {"max_per_day": 7}})
    clock = Clock(MONDAY_TEN)
    first = Assigner(rules.assignment, pg_url, clock=clock)
    other_spelling = make_url(pg_url).update_query_dict({"prepared_statement_cache_size": "99"})
    second = Assigner(
        rules.assignment, other_spelling.render_as_string(hide_password=False), clock=clock
    )
    results = await asyncio.gather(
        *((first if i % 2 else second).assign(de_lead(i), None) for i in range(60))
    )
    assert Counter(r.rep for r in results) == {ANNA: 10, BEN: 7, WES: 43}
    again = await first.assign(de_lead(59), None)
    assert again == results[59] and again.facts is not None and again.facts.skipped


async def test_local_crm_upserts_one_contact_under_concurrency(pg_url):
    crm = LocalCRM(pg_url, EXAMPLES / "crm_seed.json")
    lead = na_lead(1)
    ids = await asyncio.gather(
        *(crm.upsert(lead, decision_for(lead), idempotency_key="crm:x") for _ in range(20))
    )
    assert len(set(ids)) == 1
    match = await crm.look_up(Lead.from_record({"email": "hank.scorpio@globex.test"}))
    assert match.contact_owner == "frank@example.com"
    async with get_engine(pg_url).connect() as connection:
        rows = await connection.execute(sa.select(contacts).where(contacts.c.email == lead.email))
        assert len(rows.all()) == 1


async def test_events_and_quarantine_are_stored_once(pg_url):
    sink = SqlEventSink(pg_url)
    lead = na_lead(2)
    event = LeadEvent(
        event_id=f"event:{lead.id}",
        lead_id=lead.id,
        occurred_at=datetime.now(UTC),
        decision=decision_for(lead),
    )
    await asyncio.gather(*(sink.record(event) for _ in range(10)))
    assert await count(pg_url, lead_events) == 1

    rejection = validate_record(RawRecord(origin="f.csv", position=3, data={"email": "nope"}))
    quarantine = Quarantine(pg_url)
    await asyncio.gather(*(quarantine.put([rejection]) for _ in range(5)))
    (stored,) = await quarantine.pending()
    assert stored.key == rejection.key and "email" in stored.reason
