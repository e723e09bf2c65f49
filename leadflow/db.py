"""One place that turns a database URL into a ready SQLAlchemy async engine.

SQLite is the default (a file under .leadflow/); PostgreSQL works with a
`postgresql+asyncpg://` URL (install the `postgres` extra). Two SQLite details are
settled here so nothing else has to think about them:

- every transaction starts with BEGIN IMMEDIATE, which takes the write lock up
  front; read-then-write sequences (round robin, once-only ledgers) are then
  serialised across tasks and processes instead of failing with "database is locked"
  half-way; on PostgreSQL `serialise()` takes an advisory lock for the same effect;
- WAL journaling and a busy timeout, so readers do not block the writer.

Engines are cached per event loop: an asyncio connection pool belongs to the loop
that made it, and tests, the CLI and Prefect workers each run their own loop.

The tables themselves come from leadflow.schema (Alembic migrations), prepared once
per process and database before the first engine is handed out (`_schema_hook`).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, Table, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:  # the dialect modules load when a statement needs them
    from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncEngine]] = (
    weakref.WeakKeyDictionary()
)
_created: set[tuple[int, str, int]] = set()
_schema_locks: dict[tuple[int, str, int], asyncio.Lock] = {}


_schema_ready: set[str] = set()


def get_engine(url: str) -> AsyncEngine:
    """The engine for `url` on the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    per_loop = _engines.setdefault(loop, {})
    if url not in per_loop:
        _schema_hook(url)
        per_loop[url] = create_engine(url)
    return per_loop[url]


def mark_schema_ready(url: str) -> None:
    """Record that leadflow's schema in `url` is at head for this process."""
    _schema_ready.add(url)


def _schema_hook(url: str) -> None:
    """The one place the schema is prepared when nothing did it before: the first
    engine for `url` in this process runs `leadflow.schema.prepare_schema` (SQLite
    upgraded, PostgreSQL checked). Whoever opens the runtime and calls
    `prepare_schema` first (the command line, a test fixture) makes this a set
    look-up; once every entry point does, this hook can go."""
    if url in _schema_ready:
        return
    from leadflow.schema import prepare_schema_blocking

    prepare_schema_blocking(url)


def create_engine(url: str) -> AsyncEngine:
    """A new engine for `url` with leadflow's connection settings (not cached)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:  # pragma: no cover
        # (a driver hook; the connection is sqlite3's or aiosqlite's adapter of it)
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _use_wal(cursor)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:  # pragma: no cover - driver hook
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _use_wal(cursor: DBAPICursor) -> None:
    """Switch the file to WAL once. The switch needs the file to itself and SQLite
    does not wait for that, so when another connection (another worker) holds it we
    try again briefly; the file stays WAL once any connection has switched it."""
    for attempt in range(50):
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
        if row is not None and row[0].lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # sqlite3's, or the async driver's wrapper of it
            if "locked" not in str(exc):
                raise
            time.sleep(0.01 * (attempt + 1))
    # Still not WAL: the default journal works too, only with less concurrency.


async def ensure_tables(url: str, metadata: MetaData) -> AsyncEngine:
    """The engine for `url`, with `metadata`'s tables created once per engine: for
    tables an adapter owns (leadflow's own come from leadflow.schema's migrations).

    The first uses often arrive together (a burst of leads): a lock per engine makes
    them wait for one CREATE, and `serialise` does the same across processes."""
    engine = get_engine(url)
    key = (id(engine), url, id(metadata))
    if key in _created:
        return engine
    async with _schema_locks.setdefault(key, asyncio.Lock()):
        if key not in _created:
            async with engine.begin() as connection:
                await serialise(connection, "leadflow-schema")
                await connection.run_sync(metadata.create_all)
            _created.add(key)
    return engine


async def dispose_engines() -> None:
    """Close the running loop's engines (end of a CLI command or a test session)."""
    loop = asyncio.get_running_loop()
    for engine in _engines.pop(loop, {}).values():
        await engine.dispose()


def dialect_insert(engine: AsyncEngine, table: Table) -> PostgresqlInsert | SqliteInsert:
    """INSERT with the dialect's ON CONFLICT clauses (SQLite and PostgreSQL share them)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def insert_ignoring_duplicates(
    engine: AsyncEngine, table: Table, index: list[str]
) -> PostgresqlInsert | SqliteInsert:
    """INSERT that does nothing when a row with the same `index` columns exists:
    the building block of every once-only write."""
    return dialect_insert(engine, table).on_conflict_do_nothing(index_elements=index)


async def serialise(connection: AsyncConnection, name: str) -> None:
    """Make the current transaction the only one holding `name` until it ends.

    SQLite needs nothing more: BEGIN IMMEDIATE already admits one writer at a time.
    PostgreSQL takes a transaction-scoped advisory lock, so read-then-write sequences
    on rows that may not exist yet (a first round-robin pick) cannot interleave.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name}
        )
