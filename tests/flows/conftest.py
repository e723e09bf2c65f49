"""Fixtures of the flow tests on a real Prefect API.

`mode_variable`: a clean mode Variable before and after the test, the shadow store in
tmp_path, the mode re-read before every lead (no cache)."""

from __future__ import annotations

import pytest
from prefect.variables import Variable

import leadflow.flows.mode
from leadflow.flows.cutover import MODE_VARIABLE


@pytest.fixture
async def mode_variable(prefect_api, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_SHADOW__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/s.db")
    monkeypatch.setenv("LEADFLOW_SHADOW__TIMEOUT_SECONDS", "120")
    monkeypatch.setattr(leadflow.flows.mode, "MODE_TTL_SECONDS", 0)
    await Variable.aunset(MODE_VARIABLE)
    yield
    await Variable.aunset(MODE_VARIABLE)
