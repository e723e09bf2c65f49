"""`leadflow crm touch EMAIL`: an activity logged with a contact of the local CRM is
the first touch the SLA watcher reads back (LocalCRM.first_touch); an unknown contact
or another CRM is one clear line."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadflow.app.cli import app
from leadflow.db import dispose_engines
from leadflow.integrations.local_crm import LocalCRM
from leadflow.models import Lead
from tests.support.paths import EXAMPLES

runner = CliRunner()
HANK = "hank.scorpio@globex.test"  # a contact of examples/crm_seed.json


@pytest.fixture
def local_crm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/leadflow.db"
    monkeypatch.chdir(tmp_path)  # no developer's .env
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.setenv("LEADFLOW_ADAPTERS__CRM", "local")
    monkeypatch.setenv("LEADFLOW_LOCAL_CRM_SEED_PATH", str(EXAMPLES / "crm_seed.json"))
    monkeypatch.setenv("LEADFLOW_RULES_PATH", str(EXAMPLES / "rules.toml"))
    return url


def first_touch(url: str, email: str, since: datetime) -> datetime | None:
    async def read() -> datetime | None:
        try:
            crm = LocalCRM(url, None)
            return await crm.first_touch(Lead.from_record({"email": email}), None, since=since)
        finally:
            await dispose_engines()

    return asyncio.run(read())


def test_a_touch_is_the_first_touch_the_watcher_reads(local_crm: str) -> None:
    since = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    early = runner.invoke(app, ["crm", "touch", HANK, "--at", "2026-12-05T09:00:00Z"])
    assert early.exit_code == 0, early.output
    assert first_touch(local_crm, HANK, since) is None  # before the assignment: no touch
    result = runner.invoke(
        app, ["crm", "touch", HANK.upper(), "--at", "2026-12-05T11:30:00+01:00", "--kind", "email"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{HANK}: email logged at 2026-12-05 10:30:00 UTC"
    runner.invoke(app, ["crm", "touch", HANK, "--at", "2026-12-05T12:00:00Z"])
    assert first_touch(local_crm, HANK, since) == datetime(2026, 12, 5, 10, 30, tzinfo=UTC)


def test_an_unknown_contact_is_one_line_and_exit_1(local_crm: str) -> None:
    result = runner.invoke(app, ["crm", "touch", "nobody@nowhere.test"])
    assert result.exit_code == 1
    assert "the local CRM has no contact nobody@nowhere.test" in result.output


def test_a_time_without_a_zone_is_refused(local_crm: str) -> None:
    result = runner.invoke(app, ["crm", "touch", HANK, "--at", "2026-12-05T10:30"])
    assert result.exit_code == 2
    assert "give a zone" in result.output


def test_another_crm_is_told_where_to_log_the_call(
    local_crm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_ADAPTERS__CRM", "hubspot")
    result = runner.invoke(app, ["crm", "touch", HANK])
    assert result.exit_code == 2
    assert "log the call in hubspot itself" in result.output
