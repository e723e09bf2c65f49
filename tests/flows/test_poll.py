"""`poll_leads` on a temporary drop folder: each file content is processed once.

Processing a lead twice would be invisible in the CRM (its side effects have their own
once-only keys), so the tests count what only a processing does: the CRM look-up,
which is never cached. One look-up per lead means the file went through once.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from leadflow.app.runtime import current_runtime, use_runtime
from leadflow.flows.poll import PollSummary, poll_leads
from leadflow.ledger import FileLedger, FileStatus
from tests.support.fakes import MemoryCRM

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,email,first_name,last_name,company,title,country,source,employee_count\n"


def lead_row(name: str) -> str:
    return f",{name}@pollco.test,{name.title()},Poll,Pollco,VP Sales,US,website,120\n"


def lead_line(name: str) -> str:
    return json.dumps({"email": f"{name}@pollco.test", "first_name": name.title(), "title": "CTO"})


def drop(folder: Path, file_name: str, *people: str) -> Path:
    """Write a lead file (CSV or JSONL by its suffix) as a finished drop: modified a
    minute ago, so it is past the settle time."""
    path = folder / file_name
    if path.suffix == ".jsonl":
        path.write_text("".join(lead_line(p) + "\n" for p in people), encoding="utf-8")
    else:
        path.write_text(HEADER + "".join(lead_row(p) for p in people), encoding="utf-8")
    settled(path)
    return path


def settled(path: Path) -> None:
    a_minute_ago = time.time() - 60
    os.utime(path, (a_minute_ago, a_minute_ago))


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder.resolve()


@pytest.fixture
async def crm(prefect_api, make_runtime, tmp_path):
    """The `runtime` fixture's embedded runtime (same builder), with an in-memory
    CRM (tests/support/fakes.py) in place for the test; yields the CRM."""
    memory = MemoryCRM()
    built = make_runtime(crm=memory)
    with use_runtime(built):
        yield memory
    await built.aclose()


def crm_rows(crm: MemoryCRM) -> dict[str, tuple]:
    """email -> (idempotency key, upserts) of the pollco.test contacts written."""
    return {
        email: (key, crm.upserts[email])
        for email, (key, _) in crm.kept.items()
        if email.endswith("@pollco.test")
    }


def file_ledger() -> FileLedger:
    """The file ledger of the runtime in place (the `crm` fixture's)."""
    return FileLedger(current_runtime().settings.database_url)


async def test_each_file_once_new_files_later_copies_never(crm: MemoryCRM, inbox: Path):
    drop(inbox, "a.csv", "ann", "abe")
    drop(inbox, "b.jsonl", "bob")
    (inbox / "notes.md").write_text("not leads")  # not a format leads come in

    first = await poll_leads(str(inbox))

    assert first == PollSummary(folder=str(inbox), processed=["a.csv", "b.jsonl"])
    assert crm.look_ups == {"ann@pollco.test": 1, "abe@pollco.test": 1, "bob@pollco.test": 1}
    after_first = crm_rows(crm)
    assert set(after_first) == {"ann@pollco.test", "abe@pollco.test", "bob@pollco.test"}

    again = await poll_leads(str(inbox))

    assert again.processed == [] and again.failed == []
    assert again.skipped == ["a.csv", "b.jsonl"]
    assert sum(crm.look_ups.values()) == 3

    drop(inbox, "c.csv", "cat")
    (inbox / "a-renamed.csv").write_bytes((inbox / "a.csv").read_bytes())
    settled(inbox / "a-renamed.csv")

    third = await poll_leads(str(inbox))

    assert third.processed == ["c.csv"]
    assert third.skipped == ["a-renamed.csv", "a.csv", "b.jsonl"]
    assert crm.look_ups["cat@pollco.test"] == 1
    assert crm.look_ups["ann@pollco.test"] == 1  # the renamed copy did not run
    after_third = crm_rows(crm)
    assert set(after_third) == set(after_first) | {"cat@pollco.test"}
    # The contacts written by the first poll were not touched again.
    assert {email: after_third[email] for email in after_first} == after_first

    ledger = await file_ledger().entries()
    assert sorted(e.name for e in ledger) == ["a.csv", "b.jsonl", "c.csv"]
    assert {e.status for e in ledger} == {FileStatus.DONE}
    assert all(e.run_id and e.finished_at for e in ledger)


async def test_the_default_folder_is_the_setting_created_if_missing(crm: MemoryCRM, tmp_path: Path):
    settings = current_runtime().settings
    settings.drop_folder = tmp_path / "drop" / "here"

    empty = await poll_leads()

    assert settings.drop_folder.is_dir()
    assert empty == PollSummary(folder=str(settings.drop_folder.resolve()))

    drop(settings.drop_folder, "first.csv", "dora")

    assert (await poll_leads()).processed == ["first.csv"]
    assert crm.look_ups == {"dora@pollco.test": 1}


async def test_a_fresh_file_waits_for_the_next_poll(crm: MemoryCRM, inbox: Path):
    (inbox / "copying.csv").write_text(HEADER + lead_row("dee"))  # modified just now

    early = await poll_leads(str(inbox), settle_seconds=3600)

    assert early.waiting == ["copying.csv"] and early.processed == []
    assert crm.look_ups == {}
    assert await file_ledger().entries() == []

    later = await poll_leads(str(inbox), settle_seconds=0)

    assert later.processed == ["copying.csv"]
    assert crm.look_ups == {"dee@pollco.test": 1}


async def test_a_failed_file_does_not_stop_the_others_and_is_not_retried(
    make_runtime, prefect_api, tmp_path: Path, inbox: Path
):
    crm = MemoryCRM(refuse={"fay@pollco.test"})
    built = make_runtime(crm=crm)
    drop(inbox, "1-bad.csv", "fay", "fox")
    drop(inbox, "2-good.csv", "gus")
    try:
        with use_runtime(built):
            state = await poll_leads(str(inbox), return_state=True)
            second = await poll_leads(str(inbox))
    finally:
        await built.aclose()

    assert state.is_failed()  # the schedule's history shows the poll that had a failure
    first = (await state.aresult(raise_on_failure=False)).summary
    assert first.failed == ["1-bad.csv"] and first.processed == ["2-good.csv"]
    assert second.skipped == ["1-bad.csv", "2-good.csv"]
    assert crm.look_ups == {"fay@pollco.test": 1, "fox@pollco.test": 1, "gus@pollco.test": 1}
    statuses = {
        e.name: (e.status, e.detail)
        for e in await FileLedger(built.settings.database_url).entries()
    }
    assert statuses["2-good.csv"] == (FileStatus.DONE, None)
    assert statuses["1-bad.csv"][0] is FileStatus.FAILED
    assert "LeadsFailedError" in statuses["1-bad.csv"][1]
    assert "update_crm" in statuses["1-bad.csv"][1]
    assert set(crm_rows(crm)) == {"fox@pollco.test", "gus@pollco.test"}


async def test_two_pollers_racing_process_each_file_once(crm: MemoryCRM, inbox: Path):
    drop(inbox, "r1.csv", "ray")
    drop(inbox, "r2.csv", "rex")
    drop(inbox, "r3.csv", "roy")

    one, two = await asyncio.gather(poll_leads(str(inbox)), poll_leads(str(inbox)))

    assert sorted(one.processed + two.processed) == ["r1.csv", "r2.csv", "r3.csv"]
    assert sorted(one.skipped + two.skipped) == ["r1.csv", "r2.csv", "r3.csv"]
    assert crm.look_ups == {"ray@pollco.test": 1, "rex@pollco.test": 1, "roy@pollco.test": 1}


async def test_an_interrupted_poll_is_resumed_without_repeating_a_lead(
    crm: MemoryCRM, inbox: Path, tmp_path: Path
):
    """A poll took big.csv and was killed after its first lead: the next poll resumes
    the file; the lead done before is not done again, the others are done once."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from leadflow.flows.files import process_file
    from leadflow.ledger import content_digest

    big = drop(inbox, "big.csv", "ann", "abe", "amy")
    partial = drop(tmp_path, "first-lead-of-big.csv", "ann")
    await process_file(path=str(partial))  # what the interrupted poll got done
    ann_after_interruption = (crm_rows(crm))["ann@pollco.test"]
    async with get_client() as client:
        interrupted = await client.create_flow_run(poll_leads, state=Crashed())
    ledger = file_ledger()
    assert await ledger.claim(content_digest(big), "big.csv", claimant=str(interrupted.id)) is None

    resumed = await poll_leads(str(inbox))

    assert resumed.processed == ["big.csv"]
    # Ann is answered from leadflow's record of done leads: not even looked up again.
    assert crm.look_ups == {"ann@pollco.test": 1, "abe@pollco.test": 1, "amy@pollco.test": 1}
    rows = crm_rows(crm)
    assert set(rows) == {"ann@pollco.test", "abe@pollco.test", "amy@pollco.test"}
    assert rows["ann@pollco.test"] == ann_after_interruption  # not written again
    outbox = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert Counter(m["email"] for m in outbox) == dict.fromkeys(rows, 1)
    (entry,) = await ledger.entries()
    assert entry.status is FileStatus.DONE and entry.run_id != str(interrupted.id)


async def test_a_file_claimed_by_a_poll_still_running_is_left_to_it(crm: MemoryCRM, inbox: Path):
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from leadflow.ledger import content_digest

    busy = drop(inbox, "busy.csv", "bea")
    async with get_client() as client:
        running = await client.create_flow_run(poll_leads, state=Running())
    ledger = file_ledger()
    await ledger.claim(content_digest(busy), "busy.csv", claimant=str(running.id))

    polled = await poll_leads(str(inbox))

    assert polled.skipped == ["busy.csv"] and polled.processed == []
    assert crm.look_ups == {}
    (entry,) = await ledger.entries()
    assert (entry.status, entry.run_id) == (FileStatus.CLAIMED, str(running.id))
