"""Shadow mode performs no side effect: with a real webhook notifier on loopback, a
shadow run sends it nothing and writes nothing to the CRM, the outbox or the events,
while the same file through `process_file` does all three."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from leadflow.db import ensure_tables
from leadflow.flows.files import process_file
from leadflow.flows.shadow import shadow_file
from leadflow.integrations.local_crm import contacts
from leadflow.integrations.sql_events import lead_events
from leadflow.once import side_effect_claims
from leadflow.stores.decisions import lead_decisions
from tests.support.paths import EXAMPLES

SEEDED_CONTACTS = 3
table_rows = {lead_decisions: 12, side_effect_claims: 3 * 12}  # a decision, three claims each


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
    assert webhook_server.received == []
    assert await _count(url, contacts) == SEEDED_CONTACTS  # the seed only: no upsert
    assert await _count(url, lead_events) == 0
    assert not (tmp_path / "outbox.jsonl").exists()
    # leadflow's own records of the shadow run (its decisions, its once-only claims)
    # are the shadow database's: the live one holds none, not even under another scope
    shadow = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    for table in (lead_decisions, side_effect_claims):
        assert (await _count(url, table), await _count(shadow, table)) == (0, table_rows[table])

    # The same leads for real reach all three, so the counts above could have moved.
    await process_file(path=leads)
    assert len(webhook_server.received) == 12
    assert await _count(url, contacts) == SEEDED_CONTACTS + 12
    assert await _count(url, lead_events) == 12


async def test_in_shadow_mode_every_entry_point_sends_nothing(
    webhook_runtime, webhook_server, tmp_path, monkeypatch
):
    """The mode switched to shadow (the Prefect Variable), not the shadow command: a
    file run (in groups of 100 and of 2), a poll of the drop folder and a webhook lead
    all compare and send nothing to the loopback notifier; switched back to live, they
    send."""
    import asyncio

    import httpx
    from asgi_lifespan import LifespanManager
    from prefect.variables import Variable

    import leadflow.flows.mode
    from leadflow.flows.mode import MODE_VARIABLE, set_mode
    from leadflow.flows.poll import poll_leads
    from leadflow.flows.webhook_app import create_app
    from leadflow.shadow_settings import ShadowSettings
    from leadflow.shadow_store import ComparisonStore

    monkeypatch.setenv("LEADFLOW_SHADOW__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/s.db")
    monkeypatch.setenv("LEADFLOW_SHADOW__LEGACY", "python:examples.legacy.process:decide")
    monkeypatch.setenv("LEADFLOW_SHADOW__TIMEOUT_SECONDS", "120")
    monkeypatch.setattr(leadflow.flows.mode, "MODE_TTL_SECONDS", 0)
    url = webhook_runtime.settings.database_url
    leads = tmp_path / "leads.csv"
    leads.write_text("".join(EXAMPLES.joinpath("leads.csv").read_text().splitlines(True)[:5]))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "drop.csv").write_text(leads.read_text())
    await webhook_runtime.prepare_stores()
    app = create_app(webhook_runtime)
    try:
        await set_mode("shadow")
        assert (await process_file(path=leads)).routes == {"shadow": 4}
        assert (await process_file(path=leads, batch_size=2)).routes == {"shadow": 4}
        assert (await poll_leads(folder=str(inbox), settle_seconds=0)).processed == ["drop.csv"]
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://receiver"
            ) as http,
        ):
            response = await http.post("/leads", json={"email": "hook@bigco.test"})
            assert response.status_code == 202
            for _ in range(2400):  # the lead-stream run takes it: at most two minutes
                if not (await webhook_runtime.inbox.counts()).get("accepted"):
                    break
                await asyncio.sleep(0.05)
        assert await webhook_runtime.inbox.counts() == {"left": 1}

        assert webhook_server.received == []
        assert await _count(url, contacts) <= SEEDED_CONTACTS
        assert await _count(url, lead_events) == 0
        stored = await ComparisonStore(ShadowSettings().database_url).in_window(
            datetime.now(UTC) - timedelta(hours=1)
        )
        assert len([r for r in stored if r.kind == "shadow"]) == 3 * 4 + 1

        await set_mode("live")
        await process_file(path=leads)
        assert len(webhook_server.received) == 4
    finally:
        await Variable.aunset(MODE_VARIABLE)
