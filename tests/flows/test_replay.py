"""Quarantined records can be replayed: fixed ones are processed and leave the queue."""

from __future__ import annotations

import json

import pytest

from leadflow.flows.files import process_file
from leadflow.flows.replay import KEY_FIELD, REASON_FIELD, replay_quarantine

pytestmark = pytest.mark.usefixtures("prefect_api")


async def test_corrected_records_are_processed_and_leave_the_quarantine(runtime, tmp_path):
    leads = tmp_path / "leads.jsonl"
    leads.write_text(
        "\n".join(
            json.dumps(record)
            for record in (
                {"email": "good@acme.test", "title": "VP Sales", "country": "US"},
                {"email": "bad-address", "title": "CTO", "country": "US"},
                {"email": "count-at-acme.test", "employee_count": "lots"},
                {"email": "stays-at-acme.test", "employee_count": "many"},
            )
        )
        + "\n"
    )
    first = await process_file(path=leads)
    assert first.processed == 1 and len(first.set_aside) == 3
    pending = {r.data["email"]: r for r in await runtime.quarantine.pending()}
    assert set(pending) == {"bad-address", "count-at-acme.test", "stays-at-acme.test"}

    # What `leadflow quarantine export` writes, corrected by hand: one fixed, one
    # changed but still wrong, one untouched.
    corrections = tmp_path / "fix.jsonl"
    rows = [
        {
            KEY_FIELD: pending["bad-address"].key,
            REASON_FIELD: "x",
            "email": "fixed@acme.test",
            "title": "CTO",
            "country": "US",
        },
        {
            KEY_FIELD: pending["count-at-acme.test"].key,
            "email": "count-at-acme",
            "employee_count": "still lots",
        },
        {KEY_FIELD: pending["stays-at-acme.test"].key, **pending["stays-at-acme.test"].data},
    ]
    corrections.write_text("\n".join(json.dumps(row) for row in rows) + "\n")

    summary = await replay_quarantine(corrected=str(corrections))

    assert summary.replayed == 1 and summary.failed == []
    assert {item.lead_ref for item in summary.still_set_aside} == {
        "count-at-acme",
        "stays-at-acme.test",
    }
    now_pending = await runtime.quarantine.pending()
    by_email = {r.data["email"]: r for r in now_pending}
    assert set(by_email) == {"count-at-acme", "stays-at-acme.test"}
    assert by_email["count-at-acme"].data["employee_count"] == "still lots"  # the new version
    assert by_email["stays-at-acme.test"].key == pending["stays-at-acme.test"].key  # kept
    outbox = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert {m["email"] for m in outbox} == {"good@acme.test", "fixed@acme.test"}


async def test_replay_as_stored_processes_what_now_passes(make_runtime, tmp_path):
    from leadflow.app.runtime import use_runtime

    runtime = make_runtime()
    with use_runtime(runtime):
        leads = tmp_path / "one.csv"
        leads.write_text("email,title,country\nlate-at-acme.test,CTO\n")  # short, no email
        state = await process_file(path=leads, return_state=True)
        assert state.is_failed()  # its one record was set aside: nothing was processed
        (stored,) = await runtime.quarantine.pending()
        summary = await replay_quarantine()
    # Nothing changed, so it is still bad and still pending, with its reason.
    assert summary.replayed == 0
    assert [item.reason for item in summary.still_set_aside] == [stored.reason]
    assert stored.reason.endswith("(the row lacks country)")  # not rewritten by the replay
    assert [r.key for r in await runtime.quarantine.pending()] == [stored.key]
