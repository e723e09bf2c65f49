"""What a database error means to the person who set LEADFLOW_DATABASE_URL, in one line.

A driver's own words are for its developers: `socket.gaierror: [Errno -2] Name or
service not known` at the end of 45 lines of traceback, or SQLite's `database or disk
is full` with no path. `describe_database_error` names the database (its URL with the
password hidden), says what is wrong and what to do; anything it does not recognise
keeps the driver's message after the URL.
"""

from __future__ import annotations

import errno
import shutil
import socket
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def shown_url(url: str) -> str:
    """The URL with its password hidden (it goes into error messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "LEADFLOW_DATABASE_URL"


def describe_database_error(url: str, exc: BaseException) -> str:
    """One line: which database, what went wrong, what to do."""
    where = shown_url(url)
    parsed = make_url(url)
    host = f"{parsed.host}:{parsed.port or 5432}" if parsed.host else "the server"
    for cause in _causes(exc):
        text = str(cause)
        if isinstance(cause, socket.gaierror):
            return (
                f"{where}: the host {parsed.host!r} does not resolve (a typo in "
                "LEADFLOW_DATABASE_URL, or no network or VPN): check the host name"
            )
        if isinstance(cause, ConnectionRefusedError):
            return (
                f"{where}: nothing accepts connections at {host}: start PostgreSQL, or "
                "fix the host and port in LEADFLOW_DATABASE_URL"
            )
        if isinstance(cause, TimeoutError):
            return f"{where}: {host} did not answer in time: check the host, port and firewall"
        if "password authentication failed" in text or type(cause).__name__ in (
            "InvalidPasswordError",
            "InvalidAuthorizationSpecificationError",
        ):
            return (
                f"{where}: the server refused the user name or password: fix them in "
                "LEADFLOW_DATABASE_URL"
            )
        if type(cause).__name__ == "InvalidCatalogNameError" or "does not exist" in text:
            return f"{where}: {text.strip()}: create it (createdb) or fix the name"
        if "disk is full" in text or (isinstance(cause, OSError) and cause.errno == errno.ENOSPC):
            return f"{where}: the disk is full{_free(parsed.database)}: free space there, or " + (
                "point LEADFLOW_DATABASE_URL at a disk with room; nothing accepted was lost"
            )
        if "disk I/O error" in text:
            return (
                f"{where}: a disk I/O error writing the database{_free(parsed.database)}: "
                "a full or failing disk; free space or move LEADFLOW_DATABASE_URL elsewhere"
            )
        if "unable to open database file" in text or "readonly database" in text:
            folder = Path(parsed.database or ".").parent
            return (
                f"{where}: cannot write the database file: check that {folder} exists "
                "and is writable, or point LEADFLOW_DATABASE_URL elsewhere"
            )
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{where}: {message}"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (SQLAlchemy's `.orig`, `__cause__`, ...)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return seen


def _free(database: str | None) -> str:
    if not database:
        return ""
    try:
        usage = shutil.disk_usage(Path(database).resolve().parent)
    except OSError:
        return ""
    return f" ({usage.free // 1024 // 1024} MB free on its disk)"
