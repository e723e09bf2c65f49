"""leadflow's own tables: one MetaData, and the Alembic migrations that build it.

Every core table (quarantine, processed_files, lead_decisions, lead_inbox,
side_effect_claims, assignments, round_robin_credit, shadow_comparisons,
failed_side_effects, sla_cases, sla_steps, sla_scans) is declared on `metadata`, in
the module that uses it; `core_metadata()` imports those modules so the collection
is complete. The schema changes only through the revisions in
leadflow/migrations/versions/, and the database records its revision in
`leadflow_alembic_version`.

- SQLite: `prepare_schema` upgrades to the newest revision when the runtime opens.
  It is one transaction under the write lock (BEGIN IMMEDIATE), so two processes
  starting at once take turns and the second finds nothing to do.
- PostgreSQL: `prepare_schema` only checks, and raises SchemaOutOfDate naming
  `leadflow db upgrade` when the database is behind (or ahead of) this leadflow.
  Several workers on several machines share such a database and may run different
  releases for a while, so a schema change there is a deploy step someone runs once,
  not a side effect of whichever worker starts first.

The first revision creates each table and index only when it is missing, so a
database made by a leadflow from before migrations (tables created on first use)
is adopted as it is, rows and all.

Tables that belong to an adapter (the local CRM's, the SQL event sink's) are not
here: the adapter creates them itself, once per instance (see leadflow.db.ensure_tables).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:  # alembic loads only when migrations run
    from alembic.config import Config

metadata = MetaData()

VERSION_TABLE = "leadflow_alembic_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "leadflow db upgrade"

# The modules that declare core tables on `metadata`.
_TABLE_MODULES = (
    "leadflow.intake",
    "leadflow.ledger",
    "leadflow.once",
    "leadflow.stores.decisions",
    "leadflow.stores.inbox",
    "leadflow.assignment",
    "leadflow.shadow_store",
    "leadflow.failed_effects",
    "leadflow.sla",
)


class SchemaOutOfDate(RuntimeError):
    """The database's schema is not the one this leadflow needs; the message says
    which command fixes it."""


def core_metadata() -> MetaData:
    """`metadata` with every core table on it (importing the modules that declare them)."""
    import importlib

    for name in _TABLE_MODULES:
        importlib.import_module(name)
    return metadata


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for leadflow's migrations; `connection` is the one env.py uses."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


_heads: tuple[str, ...] | None = None


def head_revisions() -> tuple[str, ...]:
    """The newest revision(s) shipped with this leadflow (read once per process)."""
    global _heads
    if _heads is None:
        from alembic.script import ScriptDirectory

        _heads = tuple(ScriptDirectory.from_config(alembic_config()).get_heads())
    return _heads


def _current(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return tuple(context.get_current_heads())


def _known(revisions: tuple[str, ...]) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return all(script.get_revision(rev) is not None for rev in revisions)


def _upgrade(connection: Connection) -> tuple[str, ...]:
    """Upgrade on `connection` (its transaction is the caller's) unless already at head."""
    current = _current(connection)
    if current == head_revisions():
        return current
    _refuse_unknown(connection, current)
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
    return _current(connection)


def _refuse_unknown(connection: Connection, current: tuple[str, ...]) -> None:
    from alembic.util import CommandError

    try:
        known = _known(current)
    except CommandError:
        known = False
    if not known:
        raise SchemaOutOfDate(
            f"{_where(connection)} is at schema revision {', '.join(current)}, which this "
            "leadflow does not know: a newer leadflow upgraded it. Run that leadflow, "
            "or upgrade this one."
        )


def _where(connection: Connection) -> str:
    url = connection.engine.url
    return f"the database {url.render_as_string(hide_password=True)}"


@asynccontextmanager
async def _connection(database_url: str, *, locked: bool) -> AsyncIterator[AsyncConnection]:
    """A connection of a short-lived engine (not the cached one, so it works from any
    event loop). `locked`: in a transaction holding the schema lock (BEGIN IMMEDIATE on
    SQLite, an advisory lock on PostgreSQL), committed at the end; otherwise a plain
    read that waits for no writer."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from leadflow.db import create_engine, serialise

    if locked:
        engine = create_engine(database_url)
    elif upgrades_itself(database_url):
        engine = create_async_engine(database_url, connect_args={"timeout": 30})
    else:
        engine = create_async_engine(database_url)
    try:
        if locked:
            async with engine.begin() as connection:
                await serialise(connection, "leadflow-schema")
                yield connection
        else:
            async with engine.connect() as connection:
                yield connection
    finally:
        await engine.dispose()


async def upgrade_schema(database_url: str) -> str | None:
    """Bring leadflow's tables in `database_url` to the newest revision; return it.

    Idempotent and cheap at head (one read of the version table, no lock taken).
    Otherwise one transaction holding the schema lock: a second process waits for the
    first and then finds nothing to do.
    """
    from leadflow.db import mark_schema_ready

    revisions = await _read(database_url)
    if revisions != head_revisions():
        async with _connection(database_url, locked=True) as connection:
            revisions = await connection.run_sync(_upgrade)
    mark_schema_ready(database_url)
    return ",".join(revisions) or None


async def _read(database_url: str) -> tuple[str, ...]:
    if upgrades_itself(database_url):
        path = make_url(database_url).database
        if path and path != ":memory:" and not await asyncio.to_thread(Path(path).exists):
            return ()  # a new file: nothing to read, and no empty file left behind
    async with _connection(database_url, locked=False) as connection:
        return await connection.run_sync(_current)


async def schema_revision(database_url: str) -> str | None:
    """The revision `database_url` is at; None before the first upgrade."""
    return ",".join(await _read(database_url)) or None


async def check_schema(database_url: str) -> None:
    """Raise SchemaOutOfDate, naming the command to run, unless the database is at head."""
    from leadflow.db import mark_schema_ready

    async with _connection(database_url, locked=False) as connection:
        await connection.run_sync(_check)
    mark_schema_ready(database_url)


def _check(connection: Connection) -> None:
    current = _current(connection)
    if current == head_revisions():
        return
    _refuse_unknown(connection, current)
    state = f"at revision {', '.join(current)}" if current else "not set up yet"
    raise SchemaOutOfDate(
        f"{_where(connection)} is {state}; this leadflow needs revision "
        f"{', '.join(head_revisions())}. Run `{UPGRADE_COMMAND}` once (another database than "
        f"LEADFLOW_DATABASE_URL: `{UPGRADE_COMMAND} --database-url URL`), then start again."
    )


def upgrades_itself(database_url: str) -> bool:
    """SQLite databases are upgraded when the runtime opens; others need the command."""
    return make_url(database_url).get_backend_name() == "sqlite"


async def prepare_schema(database_url: str) -> None:
    """What the runtime does with the schema when it opens: upgrade SQLite, check
    anything else (raising SchemaOutOfDate with the command to run)."""
    if upgrades_itself(database_url):
        await upgrade_schema(database_url)
    else:
        await check_schema(database_url)


def prepare_schema_blocking(database_url: str) -> None:
    """`prepare_schema` from synchronous code, on a thread with its own event loop (so
    it also works while the caller's loop is running, which it blocks meanwhile)."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(prepare_schema(database_url))
        except BaseException as exc:
            failure.append(exc)

    import threading

    thread = threading.Thread(target=work, name="leadflow-schema")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
