"""process_file under a real Prefect API: bad records set aside, summary, race-free
round robin, failures named."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import sqlalchemy as sa

from leadflow.app.runtime import use_runtime
from leadflow.db import get_engine
from leadflow.flows.files import LeadsFailedError, process_file
from leadflow.intake import quarantine
from tests.support.builders import write_csv
from tests.support.fakes import MemoryNotifier

pytestmark = pytest.mark.usefixtures("prefect_api")


async def test_bad_records_are_set_aside_and_the_rest_go_on(runtime, tmp_path):
    path = write_csv(
        tmp_path / "leads.csv",
        [
            ["ok.one@acme.test", "VP Sales", "US", "40", "webinar"],
            ["", "Engineer", "US", "40", "webinar"],  # row 3: no email
            ["ok.two@acme.test", "Analyst", "DE", "many", "website"],  # row 4: bad count
            ["ok.three@acme.test", "Director", "GB", "300", "referral"],
            ["ok.one@acme.test", "VP Sales", "US", "40", "webinar"],  # row 6: duplicate of 2
        ],
    )
    with path.open("a") as handle:
        handle.write("just,three,fields,and,two,more\n")  # row 7: more cells than the header

    summary = await process_file(path=path)

    assert summary.records == 6
    assert summary.processed == 3  # row 4 goes on without its count
    aside = {item.position: item.reason for item in summary.set_aside}
    assert set(aside) == {3, 7}
    assert "email" in aside[3]
    assert [(w.position, w.field, w.value) for w in summary.warnings] == [
        (4, "employee_count", "'many'")
    ]
    assert summary.warnings_total == 1
    assert [(m.position, m.into_row) for m in summary.merged] == [(6, 2)]  # same email
    assert aside[7] == "malformed row: 6 fields, the header has 5"
    assert sum(summary.by_tier.values()) == 3 and sum(summary.by_rep.values()) == 3
    assert summary.failed == []
    async with get_engine(runtime.settings.database_url).connect() as connection:
        rows = (await connection.execute(sa.select(quarantine))).mappings().all()
    assert sorted(row["position"] for row in rows) == [3, 7]  # duplicates are not bad
    assert all(row["origin"] == str(path) for row in rows)
    assert "1 fields left out of a lead that went on" in summary.as_markdown()


async def test_two_hundred_leads_at_once_split_exactly_by_weight(runtime, tmp_path):
    # US, small, unknown to the CRM: all route to the NA team, weights 3:2:1 and an
    # unavailable rep.
    rows = [[f"rr{i}@smallco{i}.test", "Analyst", "US", "20", "website"] for i in range(200)]
    path = write_csv(tmp_path / "burst.csv", rows)

    summary = await process_file(path=path, concurrency=200)

    assert summary.processed == 200
    expected = {
        "alice@example.com": 100,
        "bob@example.com": 200 * 2 / 6,
        "carol@example.com": 200 / 6,
    }
    assert set(summary.by_rep) == set(expected)
    for rep, share in expected.items():
        assert abs(summary.by_rep[rep] - share) <= 1, (rep, summary.by_rep[rep], share)


async def test_a_failed_branch_fails_the_file_run_and_is_named(make_runtime, tmp_path):
    notifier = MemoryNotifier(refuse={"refused@acme.test"})
    runtime = make_runtime(notifier=notifier)
    path = write_csv(
        tmp_path / "mixed.csv",
        [
            ["fine@acme.test", "VP Sales", "US", "40", "webinar"],
            ["refused@acme.test", "VP Sales", "US", "40", "webinar"],
        ],
    )
    with use_runtime(runtime):
        state = await process_file(path=path, return_state=True)
    assert state.is_failed()
    error = await state.aresult(raise_on_failure=False)
    assert isinstance(error, LeadsFailedError)
    (failed,) = error.summary.failed
    assert failed.branch == "notify_team" and "400" in failed.reason
    assert error.summary.processed == 2
    assert [lead.email for lead, _key in notifier.sent] == ["fine@acme.test"]


async def test_rerunning_the_file_repeats_nothing(runtime, tmp_path):
    path = write_csv(
        tmp_path / "again.csv",
        [[f"again{i}@acme.test", "Director", "CA", "500", "referral"] for i in range(5)],
    )
    first = await process_file(path=path)
    second = await process_file(path=path)
    assert first.already_done == 0 and second.already_done == 5
    assert first.by_rep == second.by_rep
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert Counter(json.loads(line)["email"] for line in lines) == {
        f"again{i}@acme.test": 1 for i in range(5)
    }
