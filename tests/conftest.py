"""Shared fixtures.

One Prefect API for the whole session (`prefect_test_harness` starts a temporary
server on a temporary database: about 8 s, so once). Prefect's home, and with it the
result storage that holds the once-only cache, lives in a temporary folder so tests
never read or write the developer's ~/.prefect.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

_home = tempfile.mkdtemp(prefix="leadflow-prefect-")
os.environ["PREFECT_HOME"] = _home
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(Path(_home) / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from leadflow.app.runtime import Runtime, build_runtime, use_runtime  # noqa: E402
from leadflow.integrations.local_crm import LocalCRM  # noqa: E402
from leadflow.integrations.rules_scorer import RulesScorer  # noqa: E402
from leadflow.integrations.sql_events import SqlEventSink  # noqa: E402
from leadflow.integrations.terminal_notifier import TerminalNotifier  # noqa: E402
from leadflow.rules import load_rules  # noqa: E402
from tests.support.builders import make_settings  # noqa: E402
from tests.support.paths import EXAMPLES  # noqa: E402


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API for the session; flow tests depend on it."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def make_runtime(tmp_path: Path) -> Callable[..., Runtime]:
    """Build a Runtime on the embedded adapters in tmp_path; pass `crm=`,
    `notifier=`, `event_sink=` or `scorer=` to swap one, `pipeline=` for settings."""

    def make(*, pipeline: dict | None = None, **adapters) -> Runtime:
        settings = make_settings(tmp_path, **(pipeline or {}))
        rules = load_rules(settings.rules_path)
        adapters.setdefault("crm", LocalCRM(settings.database_url, EXAMPLES / "crm_seed.json"))
        adapters.setdefault("notifier", TerminalNotifier(tmp_path / "outbox.jsonl", echo=False))
        adapters.setdefault("event_sink", SqlEventSink(settings.database_url))
        adapters.setdefault("scorer", RulesScorer(rules.scoring))
        return build_runtime(settings, rules=rules, **adapters)

    return make


@pytest.fixture
async def runtime(prefect_api, make_runtime) -> AsyncIterator[Runtime]:
    """The embedded-adapter runtime, in place for flows run by the test."""
    built = make_runtime()
    with use_runtime(built):
        yield built
    await built.aclose()


TIERS = {"e2e": pytest.mark.e2e, "reliability": pytest.mark.slow}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The test tiers by folder (pyproject.toml's markers): every test in tests/e2e is
    `e2e`, every one in tests/reliability `slow`, so `-m "not e2e and not slow"` is
    the fast loop without marking hundreds of tests by hand."""
    for item in items:
        for folder, mark in TIERS.items():
            if folder in item.path.parts:
                item.add_marker(mark)
