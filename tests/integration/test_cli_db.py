"""`leadflow db current` and `leadflow db upgrade`, in-process through typer's runner,
and a command refusing a PostgreSQL database that is behind (when one is available)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from leadflow.app.cli import app
from leadflow.schema import head_revisions

runner = CliRunner()
HEAD = ",".join(head_revisions())


def test_current_then_upgrade_then_current(env, tmp_path) -> None:
    before = runner.invoke(app, ["db", "current"])
    assert before.exit_code == 1, before.output
    assert "revision: -" in before.output and "run `leadflow db upgrade`" in before.output

    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"at revision {HEAD} (head)" in upgraded.output

    after = runner.invoke(app, ["db", "current"])
    assert after.exit_code == 0, after.output
    assert f"revision: {HEAD}" in after.output and "up to date" in after.output


def test_another_database_is_named_with_an_option(env, tmp_path) -> None:
    other = f"sqlite+aiosqlite:///{tmp_path / 'shadow.db'}"
    assert runner.invoke(app, ["db", "upgrade", "--database-url", other]).exit_code == 0
    assert runner.invoke(app, ["db", "current", "--database-url", other]).exit_code == 0
    assert runner.invoke(app, ["db", "current"]).exit_code == 1  # the main one is untouched


def test_a_bad_url_is_named(env) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database-url", "mysql://u:p@db/leads"])
    assert result.exit_code == 2
    assert "mysql:// is not supported" in result.output


def test_a_sqlite_database_upgrades_itself_when_a_command_starts(env, tmp_path) -> None:
    listed = runner.invoke(app, ["quarantine", "list"])
    assert listed.exit_code == 0, listed.output
    assert "up to date" in runner.invoke(app, ["db", "current"]).output


@pytest.mark.skipif(
    not os.environ.get("LEADFLOW_TEST_POSTGRES_URL"), reason="LEADFLOW_TEST_POSTGRES_URL is not set"
)
def test_a_command_refuses_a_postgresql_database_that_is_behind(env) -> None:
    import asyncio

    from tests.support.postgres import new_database

    async def scenario() -> None:
        async with new_database() as url:
            env.setenv("LEADFLOW_DATABASE_URL", url)
            refused = await asyncio.to_thread(runner.invoke, app, ["quarantine", "list"])
            assert refused.exit_code == 2
            said = " ".join(refused.output.split())
            assert "not set up yet" in said and "Run `leadflow db upgrade` once" in said
            parsed = make_url(url)  # the URL is shown, its password is not
            assert f"{parsed.username}:***@{parsed.host}" in said
            assert f":{parsed.password}@" not in said
            upgraded = await asyncio.to_thread(runner.invoke, app, ["db", "upgrade"])
            assert upgraded.exit_code == 0, upgraded.output
            listed = await asyncio.to_thread(runner.invoke, app, ["quarantine", "list"])
            assert listed.exit_code == 0, listed.output

    asyncio.run(scenario())
