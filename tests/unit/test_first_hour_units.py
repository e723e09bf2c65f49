"""Settings checks, due dates and markdown escaping (issue 6, items 4 and 6)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta

import pytest

from leadflow.app.console import settings_classes
from leadflow.markdown import escape
from leadflow.settings import SettingsError, check_database_url, unknown_variables
from leadflow.when import due_text

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("mysql://u:p@localhost/db", ["LEADFLOW_DATABASE_URL", "mysql:// is not supported"]),
        ("sqlite:///x.db", ["write sqlite+aiosqlite://... instead"]),
        ("not a url", ["LEADFLOW_DATABASE_URL: not a database URL"]),
        (
            "sqlite+aiosqlite:////proc/leadflow/x.db",
            ["cannot open the SQLite database /proc/leadflow/x.db", "writable"],
        ),
    ],
)
def test_database_urls_leadflow_cannot_use_are_named(url, fragments) -> None:
    with pytest.raises(SettingsError) as caught:
        check_database_url(url)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_a_missing_driver_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "asyncpg" else real(name)
    )
    with pytest.raises(SettingsError, match=r"pip install 'leadflow\[postgres\]'"):
        check_database_url("postgresql+asyncpg://u:p@localhost/db")


def test_a_writable_sqlite_file_passes(tmp_path) -> None:
    check_database_url(f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'leadflow.db'}")
    assert (tmp_path / "sub" / "leadflow.db").exists()


def test_unknown_variables_get_the_closest_name_and_adapter_variables_pass() -> None:
    warnings = unknown_variables(
        {
            "LEADFLOW_PIPELINE__CONCURENCY": "2",
            "LEADFLOW_SHADOW__LEGACY": "python:examples.legacy.process:decide",  # shadow's
            "LEADFLOW_SHADOW__GATES__MIN_SAMPLE": "30",
            "LEADFLOW_MODE": "shadow",  # an alias, read without the prefix
            "LEADFLOW_WEBHOOK_URL": "http://x",  # an adapter's own setting
            "LEADFLOW_TERMINAL_ECHO": "false",
            "LEADFLOW_COLUMNS__MAIL": "email",  # a key of a dict setting
            "LEADFLOW_TEST_POSTGRES_URL": "x",  # read by the tests
            "PATH": "/bin",
        },
        settings_classes(),  # what the CLI checks against
    )
    assert warnings == [
        "LEADFLOW_PIPELINE__CONCURENCY is not a leadflow setting and is ignored; "
        "did you mean LEADFLOW_PIPELINE__CONCURRENCY?"
    ]


@pytest.mark.parametrize(
    ("due", "text"),
    [
        (NOW + timedelta(minutes=35), "due today 16:35 UTC (in 35 min)"),
        (NOW + timedelta(hours=17), "due tomorrow 09:00 UTC"),
        (NOW + timedelta(days=2, hours=-7), "due Thu 26 Nov 09:00 UTC"),
        (NOW - timedelta(hours=2), "overdue by 2 h (due today 14:00 UTC)"),
        (
            NOW - timedelta(days=2, hours=7, minutes=45),
            "overdue by 2 d 7 h (due Sun 22 Nov 08:15 UTC)",
        ),
    ],
)
def test_due_dates_say_the_day_and_how_far(due, text) -> None:
    assert due_text(due, NOW) == text


def test_escape_makes_lead_text_literal() -> None:
    assert escape("<img src=x onerror=alert(1)>|x") == "\\<img src=x onerror=alert\\(1\\)\\>\\|x"
    assert escape("a\nb | *c*") == "a b \\| \\*c\\*"


def test_prefect_console_lines_lose_their_traceback_but_other_handlers_keep_it() -> None:
    import logging

    from leadflow.app.console import WithoutTraceback

    try:
        raise TimeoutError("vendor timed out")
    except TimeoutError:
        import sys

        record = logging.LogRecord(
            "prefect.task_runs", logging.ERROR, __file__, 1, "Task run failed", None, sys.exc_info()
        )
    console = WithoutTraceback(logging.Formatter("%(levelname)s %(message)s"))
    assert console.format(record) == "ERROR Task run failed"
    assert "Traceback" in logging.Formatter().format(record)  # e.g. the API handler's
