"""Fixtures of the reliability suite: each side-effecting HTTP adapter in turn
(`vendor`), and a loopback stub vendor for it that misbehaves on request (`server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leadflow.loopback_vendor import FaultServer
from tests.support.vendors import VENDORS, Vendor


@pytest.fixture(params=VENDORS, ids=lambda v: v.id)
def vendor(request) -> Vendor:
    return request.param


@pytest.fixture
def server(vendor: Vendor) -> Iterator[FaultServer]:
    with FaultServer(vendor.ok(), is_write=vendor.is_write) as server:
        yield server
