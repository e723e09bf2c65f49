"""The in-memory fakes (tests/support/fakes.py) keep the ports' promises: the contract kit's
checks that need no installed entry point and no remote vendor, run over each."""

from __future__ import annotations

import pytest

from leadflow.testing import CRMContract, EventSinkContract, LocalStore, NotifierContract
from tests.support.fakes import MemoryCRM, MemoryEventSink, MemoryNotifier


class FakeContract:
    """Fakes are no installed plug-ins: no entry point to check, no remote to fail."""

    test_registered_under_its_entry_point = None

    @pytest.fixture
    def entry_point(self, adapter) -> str:
        return f"{adapter.kind}.{adapter.name}"

    @pytest.fixture
    def adapter_class(self, adapter):
        return type(adapter)


class TestMemoryCRM(FakeContract, CRMContract):
    @pytest.fixture
    def adapter(self):
        return MemoryCRM()

    @pytest.fixture
    def vendor(self, adapter):
        return LocalStore(lambda: list(adapter.kept))


class TestMemoryNotifier(FakeContract, NotifierContract):
    @pytest.fixture
    def adapter(self):
        return MemoryNotifier()

    @pytest.fixture
    def vendor(self, adapter):
        return LocalStore(lambda: [lead.id for lead in adapter.kept.values()])


class TestMemoryEventSink(FakeContract, EventSinkContract):
    @pytest.fixture
    def adapter(self):
        return MemoryEventSink()

    @pytest.fixture
    def vendor(self, adapter):
        return LocalStore(lambda: [e.lead_id for e in adapter.events.values()])
