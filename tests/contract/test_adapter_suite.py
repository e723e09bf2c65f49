"""The contract kit (leadflow.testing) over every built-in adapter.

Each class runs one kind's contract over every entry point of leadflow's own
`leadflow.adapters` group of that kind, built by its harness (tests/support/harnesses.py); an
entry point without a harness fails `test_every_built_in_adapter_has_a_harness`.
Local adapters have no remote that can fail: their failure cases skip, saying so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.testing import (
    CRMContract,
    EventSinkContract,
    LeadSourceContract,
    LegacyContract,
    NotifierContract,
    ScorerContract,
)
from tests.support.harnesses import HARNESSES, OURS


def built_in(kind: str) -> list[str]:
    return sorted(name for name in HARNESSES if name.startswith(f"{kind}."))


def test_every_built_in_adapter_has_a_harness() -> None:
    assert len(OURS) >= 20, "leadflow's own entry points were not found: is it installed?"
    assert set(HARNESSES) == OURS, f"entry points without a harness: {OURS - set(HARNESSES)}"


class Harnessed:
    """The kit's fixtures, from the harness of the entry point under test."""

    @pytest.fixture
    def harness(self, entry_point: str):
        return HARNESSES[entry_point]

    @pytest.fixture
    def settings_env(self, harness) -> dict[str, str]:
        return harness.env

    @pytest.fixture
    def vendor(self, harness, tmp_path: Path):
        vendor = harness.vendor(tmp_path)
        yield vendor
        if hasattr(vendor, "close"):
            vendor.close()

    @pytest.fixture
    def adapter(self, harness, tmp_path: Path, vendor):
        return harness.build(tmp_path, vendor)

    @pytest.fixture
    def expected(self, harness) -> list[str]:
        return harness.extra["expected"]

    @pytest.fixture
    def target(self, harness) -> str:
        return harness.extra["target"]

    @pytest.fixture
    def record(self, harness) -> dict:
        return harness.extra["record"]


def every(kind: str):
    """The `entry_point` fixture: each built-in adapter of this kind in turn."""

    @pytest.fixture(params=built_in(kind))
    def entry_point(self, request) -> str:
        return request.param

    return entry_point


class TestCRMs(Harnessed, CRMContract):
    entry_point = every("crm")


class TestNotifiers(Harnessed, NotifierContract):
    entry_point = every("notifier")


class TestEventSinks(Harnessed, EventSinkContract):
    entry_point = every("event_sink")


class TestScorers(Harnessed, ScorerContract):
    entry_point = every("scorer")


class TestSources(Harnessed, LeadSourceContract):
    entry_point = every("source")


class TestLegacyProcesses(Harnessed, LegacyContract):
    entry_point = every("legacy")
