"""leadflow's schema on SQLite: migrations build today's tables, adopt databases made
before migrations, repeat harmlessly, survive two processes starting at once, and
match the models (no autogenerate drift)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from leadflow.assignment import assignments, round_robin_credit
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
from leadflow.shadow_store import ComparisonStore

CORE_TABLES = {
    "quarantine",
    "processed_files",
    "lead_decisions",
    "lead_inbox",
    "side_effect_claims",
    "round_robin_credit",
    "assignments",
    "shadow_comparisons",
    "failed_side_effects",
    "sla_cases",
    "sla_steps",
    "sla_scans",
}
HEAD = ",".join(head_revisions())


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def schema_sql(path: Path) -> dict[str, str]:
    """{name: CREATE statement} of every table and index, leadflow's version table aside.
    A table a migration rebuilt (SQLite's way of adding a column in place) is renamed
    into place, which SQLite records with the name quoted: the same table."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "select name, sql from sqlite_master where sql is not null and name != ?",
            (VERSION_TABLE,),
        ).fetchall()
    return {name: re.sub(r'^CREATE TABLE "(\w+)"', r"CREATE TABLE \1", sql) for name, sql in rows}


def versions(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute(f"select * from {VERSION_TABLE}")]


def made_before_migrations(path: Path, tables: set[str]) -> None:
    """A database as leadflow made it before migrations: `create_all` of the tables
    it had used, on first use (what `ensure_tables` did), with a row in some."""
    engine = create_engine(f"sqlite:///{path}")
    chosen = [t for t in core_metadata().sorted_tables if t.name in tables]
    core_metadata().create_all(engine, tables=chosen)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        if "quarantine" in tables:
            connection.execute(
                insert(quarantine),
                {
                    "key": "k1",
                    "origin": "old.csv",
                    "position": 2,
                    "lead_ref": "x@old.test",
                    "reason": "email: required, missing",
                    "data": {"name": "x"},
                    "status": "pending",
                    "quarantined_at": now,
                },
            )
        if "assignments" in tables:
            connection.execute(
                insert(assignments),
                {"lead_id": "l1", "rep": "alice", "rule": "fallback", "assigned_at": now},
            )
            connection.execute(insert(round_robin_credit), {"team": "t", "rep": "a", "credit": 3})
    engine.dispose()


async def test_a_fresh_database_gets_every_core_table_exactly_as_the_models_say(tmp_path):
    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    assert await upgrade_schema(url_of(migrated)) == HEAD
    made_before_migrations(created, CORE_TABLES)

    assert set(schema_sql(migrated)) >= CORE_TABLES
    # same tables, columns, keys and indexes, statement for statement
    assert schema_sql(migrated) == schema_sql(created)
    assert versions(migrated) == [HEAD]


async def test_a_database_from_before_migrations_is_adopted_with_its_rows(tmp_path):
    path = tmp_path / "old.db"
    made_before_migrations(path, CORE_TABLES)
    before = schema_sql(path)

    assert await upgrade_schema(url_of(path)) == HEAD

    assert schema_sql(path) == before
    assert versions(path) == [HEAD]
    pending = await Quarantine(url_of(path)).pending()
    assert [(r.key, r.where, r.reason) for r in pending] == [
        ("k1", "old.csv row 2", "email: required, missing")
    ]


async def test_a_shadow_database_with_a_few_tables_gets_the_rest(tmp_path):
    """A shadow database from before migrations had only the tables its run used."""
    path = tmp_path / "shadow.db"
    made_before_migrations(path, {"assignments", "round_robin_credit", "shadow_comparisons"})

    await upgrade_schema(url_of(path))

    assert set(schema_sql(path)) >= CORE_TABLES
    with sqlite3.connect(path) as connection:
        assert connection.execute("select lead_id, rep from assignments").fetchall() == [
            ("l1", "alice")
        ]
        assert connection.execute("select credit from round_robin_credit").fetchall() == [(3,)]
    assert await ComparisonStore(url_of(path)).in_window(datetime(2000, 1, 1, tzinfo=UTC)) == []


async def test_upgrading_again_changes_nothing(tmp_path):
    path = tmp_path / "again.db"
    made_before_migrations(path, CORE_TABLES)
    await upgrade_schema(url_of(path))
    first = schema_sql(path)

    assert await upgrade_schema(url_of(path)) == HEAD
    await prepare_schema(url_of(path))

    assert schema_sql(path) == first
    assert versions(path) == [HEAD]
    assert len(await Quarantine(url_of(path)).pending()) == 1


async def test_concurrent_upgrades_in_one_process_take_turns(tmp_path):
    url = url_of(tmp_path / "together.db")
    results = await asyncio.gather(*(upgrade_schema(url) for _ in range(4)))
    assert results == [HEAD] * 4
    assert versions(tmp_path / "together.db") == [HEAD]


def test_two_processes_starting_at_once_both_get_the_schema(tmp_path):
    """Two interpreters upgrade the same new file at the same moment: the write lock
    makes one wait for the other, and neither fails."""
    path = tmp_path / "race.db"
    start = tmp_path / "go"
    program = (
        "import asyncio, os, sys, time\n"
        "from leadflow.schema import upgrade_schema\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.005)\n"
        "print(asyncio.run(upgrade_schema('sqlite+aiosqlite:///' + sys.argv[1])))\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", program, str(path), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    # both interpreters have imported leadflow by now, or will within the wait
    start.write_text("go")
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert stdout.strip() == HEAD
    assert versions(path) == [HEAD]
    assert set(schema_sql(path)) >= CORE_TABLES


async def test_check_refuses_a_database_that_is_behind_and_names_the_command(tmp_path):
    url = url_of(tmp_path / "behind.db")
    assert await schema_revision(url) is None
    with pytest.raises(SchemaOutOfDate, match=r"not set up yet.*`leadflow db upgrade`"):
        await check_schema(url)

    await upgrade_schema(url)
    await check_schema(url)
    assert await schema_revision(url) == HEAD


async def test_a_database_from_a_newer_leadflow_is_refused_not_downgraded(tmp_path):
    path = tmp_path / "newer.db"
    await upgrade_schema(url_of(path))
    with sqlite3.connect(path) as connection:
        connection.execute(f"update {VERSION_TABLE} set version_num = 'f00dfeed'")

    for attempt in (upgrade_schema, check_schema):
        with pytest.raises(SchemaOutOfDate, match=r"f00dfeed.*newer leadflow"):
            await attempt(url_of(path))


def test_the_migrations_match_the_models(tmp_path):
    """`alembic check`: autogenerate compares the migrated database with the tables
    the code declares and finds nothing to add, drop or alter."""
    from alembic import command

    path = tmp_path / "drift.db"
    asyncio.run(upgrade_schema(url_of(path)))
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        command.check(alembic_config(connection))  # raises AutogenerateDiffsDetected
    engine.dispose()


def test_revision_0003_carries_claims_over_and_a_claim_in_flight_is_sent_again(tmp_path):
    """A database at 0002 (the batch path's once-only table): done stays done; a claim
    whose holder may have died becomes failed, so the next run sends it again under the
    same key instead of counting it as done."""
    from alembic import command

    path = tmp_path / "0002.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0002")
        connection.exec_driver_sql(
            "insert into side_effects_done (effect, scope, lead_id, status, claim, updated_at)"
            " values ('notify', 's', 'notify:p1', 'done', 't1', '2026-11-30 10:00:00'),"
            " ('notify', 's', 'notify:p2', 'claimed', 't2', '2026-11-30 10:00:00')"
        )
    engine.dispose()

    assert asyncio.run(upgrade_schema(url_of(path))) == HEAD
    with sqlite3.connect(path) as connection:
        rows = connection.execute("select key, status from side_effect_claims order by key")
        assert rows.fetchall() == [("notify:p1", "done"), ("notify:p2", "failed")]
        tables = {r[0] for r in connection.execute("select name from sqlite_master")}
    assert not {"side_effects_done", "done_leads"} & tables
