"""A real PostgreSQL server for tests: LEADFLOW_TEST_POSTGRES_URL points at a database
the tests may write to (`.ci/run` starts one when it can install PostgreSQL). Tests
marked `needs_postgres` are skipped without it, except in CI, where they must run;
`new_database()` is a brand-new database on that server, dropped at the end."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow.db import dispose_engines

BASE_URL = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")


# In CI these tests must run: there a missing server fails them instead of skipping.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


needs_postgres = pytest.mark.skipif(
    not BASE_URL and not IN_CI, reason="LEADFLOW_TEST_POSTGRES_URL is not set"
)


@asynccontextmanager
async def new_database() -> AsyncIterator[str]:
    """A URL for a brand-new, empty database on the server, dropped at the end."""
    if not BASE_URL:
        pytest.fail("CI: LEADFLOW_TEST_POSTGRES_URL is not set (did .ci/postgres fail?)")
    name = f"leadflow_t_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(BASE_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(BASE_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        await dispose_engines()
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()
