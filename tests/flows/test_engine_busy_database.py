"""A busy leadflow database (another process holding SQLite's write lock past the
busy timeout: "database is locked") is waited for by the engine, up to
LEADFLOW_PIPELINE__RECORD_TIMEOUT_SECONDS, and is no lead's failure: each store the
engine writes or reads on a lead's way refuses twice here, and every lead is still
decided once, sent once and done. Before, the decision's store and the reads failed
the lead ("the decision could not be stored"), though a rerun would have done it.
tests/reliability/test_orchestrator_faults.py locks a real database for 45 s."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.exc import OperationalError

from leadflow.app.runtime import use_runtime
from leadflow.flows.files import process_file
from tests.support.builders import lead_rows as leads
from tests.support.builders import write_csv

pytestmark = pytest.mark.usefixtures("prefect_api")


class LockedAtFirst:
    """An async method that answers as SQLite does while another process holds the
    write lock, the first `times` calls; then the real method."""

    def __init__(self, method: Callable[..., Awaitable], times: int = 2) -> None:
        self.method, self.left, self.refused = method, times, 0

    async def __call__(self, *args, **kwargs):
        if self.left:
            self.left -= 1
            self.refused += 1
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            )
        return await self.method(*args, **kwargs)


async def test_a_locked_database_delays_the_engine_and_fails_no_lead(make_runtime, tmp_path):
    runtime = make_runtime(pipeline={"record_timeout_seconds": 20})
    locked = {}
    for name, store, method in [
        ("read decisions", runtime.decisions, "find"),
        ("assign reps", runtime.assigner, "assign_many"),
        ("store decisions", runtime.decisions, "add"),
        ("record side effects", runtime.once, "finish"),
        ("mark leads done", runtime.decisions, "mark_done"),
    ]:
        locked[name] = LockedAtFirst(getattr(store, method))
        setattr(store, method, locked[name])
    path = write_csv(tmp_path / "leads.csv", leads(6, "l"))
    with use_runtime(runtime):
        await runtime.prepare_stores()
        summary = await process_file(path=path, batch_size=3)
    await runtime.aclose()

    assert summary.failed == [] and summary.processed == 6, summary.failed
    assert {name: wrapper.refused for name, wrapper in locked.items()} == dict.fromkeys(locked, 2)
    sent = Counter(json.loads(line)["email"] for line in (tmp_path / "outbox.jsonl").open())
    assert sent == {f"l{i}@co{i}.test": 1 for i in range(6)}
    rerun = make_runtime()
    with use_runtime(rerun):
        again = await process_file(path=path, batch_size=3)
    await rerun.aclose()
    assert again.already_done == 6  # every lead was marked done
