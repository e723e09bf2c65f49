"""The comparison store on a real PostgreSQL (skipped without LEADFLOW_TEST_POSTGRES_URL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadflow.compare import compare
from leadflow.shadow_store import ComparisonRecord, ComparisonStore
from tests.support.postgres import needs_postgres
from tests.support.shadow import compared_decision as decision

pytestmark = needs_postgres


async def test_comparisons_accumulate_and_read_back(pg_url):
    store = ComparisonStore(pg_url)
    now = datetime.now(UTC)
    rows = [
        ComparisonRecord(
            run_id=f"run{day}",
            lead_id=f"l{day}",
            compared_at=now - timedelta(days=day),
            comparison=compare(decision(score=60 + day), decision()),
            control=decision(score=60 + day),
            candidate=decision(),
            control_ms=1.0,
            candidate_ms=2.0,
            intended={"notify": {"to": "alice@x"}},
        )
        for day in range(3)
    ]
    await store.add_many(rows[:2])
    await store.add_many(rows[2:])
    found = await store.in_window(now - timedelta(days=1, hours=1))
    assert [r.lead_id for r in found] == ["l0", "l1"]
    assert found[1].comparison.mismatched_fields == ["score"]
    assert found[1].control.score == 61 and found[1].intended == {"notify": {"to": "alice@x"}}
