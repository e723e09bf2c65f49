"""leadflow's schema on a real PostgreSQL (skipped without LEADFLOW_TEST_POSTGRES_URL):
leadflow refuses a database that is behind and names the command; the command
upgrades it, adopts tables made before migrations, and can run from several
processes at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow.intake import Quarantine, quarantine
from leadflow.schema import (
    VERSION_TABLE,
    SchemaOutOfDate,
    alembic_config,
    check_schema,
    core_metadata,
    head_revisions,
    prepare_schema,
    schema_revision,
    upgrade_schema,
)
from tests.support.postgres import needs_postgres

pytestmark = needs_postgres

HEAD = ",".join(head_revisions())


async def tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    await engine.dispose()
    return set(names)


async def test_leadflow_refuses_a_database_that_is_behind_and_names_the_command(pg_empty_url):
    with pytest.raises(SchemaOutOfDate, match=r"not set up yet.*`leadflow db upgrade`"):
        await prepare_schema(pg_empty_url)
    # a store reached before anyone prepared the schema refuses the same way
    with pytest.raises(SchemaOutOfDate, match="leadflow db upgrade"):
        await Quarantine(pg_empty_url).pending()
    assert await tables(pg_empty_url) == set()  # nothing was created behind the operator's back


async def test_the_upgrade_builds_the_schema_once_however_many_run_it(pg_empty_url):
    results = await asyncio.gather(*(upgrade_schema(pg_empty_url) for _ in range(3)))

    assert results == [HEAD] * 3
    assert await tables(pg_empty_url) == {t.name for t in core_metadata().sorted_tables} | {
        VERSION_TABLE
    }
    await check_schema(pg_empty_url)
    assert await upgrade_schema(pg_empty_url) == HEAD
    assert await schema_revision(pg_empty_url) == HEAD


async def test_tables_made_before_migrations_are_adopted_with_their_rows(pg_empty_url):
    engine = create_async_engine(pg_empty_url)
    async with engine.begin() as connection:
        await connection.run_sync(core_metadata().create_all)
        await connection.execute(
            sa.insert(quarantine),
            {
                "key": "k1",
                "origin": "old.csv",
                "position": 2,
                "lead_ref": "x@old.test",
                "reason": "email: required, missing",
                "data": {"name": "x"},
                "status": "pending",
                "quarantined_at": datetime.now(UTC),
            },
        )
    await engine.dispose()

    assert await upgrade_schema(pg_empty_url) == HEAD

    assert [r.key for r in await Quarantine(pg_empty_url).pending()] == ["k1"]


async def test_the_migrations_match_the_models_on_postgresql(pg_empty_url):
    from alembic import command

    await upgrade_schema(pg_empty_url)
    engine = create_async_engine(pg_empty_url)
    async with engine.connect() as connection:
        await connection.run_sync(lambda sync: command.check(alembic_config(sync)))
    await engine.dispose()
