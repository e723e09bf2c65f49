"""Shadow mode performs no side effect: with a real webhook notifier on loopback, a
shadow run sends it nothing and writes nothing to the CRM, the outbox or the events,
while the same file through `process_file` does all three."""

from __future__ import annotations

import sqlalchemy as sa

from leadflow.db import ensure_tables
from leadflow.flows.files import process_file
from leadflow.flows.shadow import shadow_file
from leadflow.integrations.local_crm import contacts
from leadflow.integrations.sql_events import lead_events
from tests.conftest import EXAMPLES

SEEDED_CONTACTS = 3


async def _count(url: str, table: sa.Table) -> int:
    engine = await ensure_tables(url, table.metadata)
    async with engine.connect() as connection:
        return (await connection.execute(sa.select(sa.func.count()).select_from(table))).scalar()


async def test_a_shadow_run_sends_nothing_and_writes_nothing(
    webhook_runtime, webhook_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("LEADFLOW_SHADOW__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/s.db")
    leads = tmp_path / "leads.csv"
    leads.write_text("".join(EXAMPLES.joinpath("leads.csv").read_text().splitlines(True)[:13]))
    url = webhook_runtime.settings.database_url

    summary = await shadow_file(path=leads, legacy="python:examples.legacy.process:decide")

    assert summary.compared == 12 and not summary.candidate_errors
    assert webhook_server.requests == []
    assert await _count(url, contacts) == SEEDED_CONTACTS  # the seed only: no upsert
    assert await _count(url, lead_events) == 0
    assert not (tmp_path / "outbox.jsonl").exists()

    # The same leads for real reach all three, so the counts above could have moved.
    await process_file(path=leads)
    assert len(webhook_server.requests) == 12
    assert await _count(url, contacts) == SEEDED_CONTACTS + 12
    assert await _count(url, lead_events) == 12
