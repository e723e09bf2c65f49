"""The batch path's once-only store on a real SQLite file (the rate limiter's own
tests are in tests/unit/test_ratelimit.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadflow.once import OnceStore


@pytest.fixture
def store(tmp_path) -> OnceStore:
    return OnceStore(f"sqlite+aiosqlite:///{tmp_path / 'once.db'}")


async def test_a_claim_is_taken_once_and_done_rows_are_never_taken_again(store):
    token, taken = await store.claim("crm", "scope", ["a", "b", "c"])
    assert taken == {"a", "b", "c"}
    _other, none = await store.claim("crm", "scope", ["a", "b"])  # live claim: not taken
    assert none == set()
    await store.finish("crm", "scope", token, done=["a", "b"], failed={"c": "HTTP 400"})
    assert await store.status("crm", "scope", "c") == "failed"
    _t, again = await store.claim("crm", "scope", ["a", "b", "c", "d"])
    assert again == {"c", "d"}  # the failed one and the new one
    _t, elsewhere = await store.claim("crm", "other-scope", ["a"])
    assert elsewhere == {"a"}  # another CRM: another side effect


async def test_a_stale_claim_is_taken_over(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'once.db'}"
    await OnceStore(url).claim("notify", "s", ["x"])
    _t, taken = await OnceStore(url, stale_after=timedelta(0)).claim("notify", "s", ["x"])
    assert taken == {"x"}
