"""`leadflow db upgrade` and `leadflow db current`: leadflow's schema (leadflow.schema).

SQLite databases upgrade themselves when leadflow starts; a PostgreSQL database is
upgraded by running `leadflow db upgrade` once per release, and leadflow refuses to
start against one that is behind. Registered on the main `leadflow` app
(leadflow.app.cli adds `db_app`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from leadflow.app.console import fail, out
from leadflow.db_errors import describe_database_error, shown_url
from leadflow.settings import SettingsError, check_database_url, load_settings

db_app = typer.Typer(
    help="leadflow's database schema: Alembic migrations shipped with leadflow.",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Another database than LEADFLOW_DATABASE_URL (e.g. the shadow database).",
        show_default=False,
    ),
]


def _url(database_url: str | None) -> str:
    try:
        url = database_url or load_settings().database_url
        check_database_url(url)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    return url


@db_app.command()
def upgrade(database_url: UrlOption = None) -> None:
    """Bring the database's leadflow tables to this leadflow's schema (safe to repeat)."""
    from leadflow.schema import upgrade_schema

    url = _url(database_url)
    try:
        revision = asyncio.run(upgrade_schema(url))
    except Exception as exc:  # the schema error, or the driver's (server down, no rights)
        raise fail(describe_database_error(url, exc)) from None
    out.print(f"{shown_url(url)}: at revision {revision} (head)", highlight=False)


@db_app.command()
def current(database_url: UrlOption = None) -> None:
    """Show the database's schema revision and the one this leadflow needs."""
    from leadflow.schema import head_revisions, schema_revision

    url = _url(database_url)
    try:
        revision = asyncio.run(schema_revision(url))
    except Exception as exc:
        raise fail(describe_database_error(url, exc)) from None
    head = ", ".join(head_revisions())
    if revision == head:
        state = "up to date"
    elif revision is None:
        state = "not set up: run `leadflow db upgrade`"
    else:
        state = "behind or unknown: run `leadflow db upgrade`"
    out.print(
        f"{shown_url(url)}\n  revision: {revision or '-'}\n  needed:   {head}\n  {state}",
        highlight=False,
    )
    if revision != head:
        raise typer.Exit(1)


def prepare_database(url: str) -> None:
    """Before a command starts work: upgrade a SQLite database, check any other; a
    database that is behind stops the command with the message naming the command."""
    from leadflow.schema import SchemaOutOfDate, prepare_schema

    try:
        asyncio.run(prepare_schema(url))
    except SchemaOutOfDate as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # a database that cannot be reached or written: one line
        raise fail(describe_database_error(url, exc)) from None
