"""The once-only store on a real SQLite file: claimed before the call, done only
after it, a live holder's claim never taken, a dead holder's claim taken again (and
counted as resumed), renewal keeping a live holder's claim (the rate limiter's own
tests are in tests/unit/test_ratelimit.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from leadflow.once import EffectKey, OnceStore


def keys(*names: str, effect: str = "crm", scope: str = "scope") -> list[EffectKey]:
    return [EffectKey(effect, scope, name) for name in names]


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'once.db'}"


async def test_a_claim_is_taken_once_and_done_rows_are_never_taken_again(url):
    store = OnceStore(url)
    a, b, c, d = keys("a", "b", "c", "d")
    first = await store.claim([a, b, c])
    assert first.taken == {a, b, c} and not first.busy and not first.resumed
    other = await store.claim([a, b])  # a live claim: busy, not taken, not done
    assert other.taken == set() and other.busy == {a, b} and other.done == set()
    await store.finish(first.token, done=[a, b], failed={c: "HTTP 400"})
    assert await store.status(c) == "failed"
    again = await store.claim([a, b, c, d])
    assert again.done == {a, b}
    assert again.taken == {c, d} and again.resumed == {c}  # the failed one goes again
    (elsewhere,) = keys("a", scope="other-scope")
    assert (await store.claim([elsewhere])).taken == {elsewhere}  # another CRM


async def test_a_dead_holders_claim_is_taken_again_after_its_lease(url):
    x = EffectKey("notify", "s", "x")
    dead = OnceStore(url, lease=timedelta(seconds=0.3))
    await dead.claim([x])  # and it never renews: its process was killed
    alive = OnceStore(url, lease=timedelta(seconds=0.3))
    assert (await alive.claim([x])).busy == {x}
    await asyncio.sleep(0.4)
    later = await alive.claim([x])
    assert later.taken == {x} and later.resumed == {x}


async def test_a_live_holder_keeps_its_claim_and_a_waiter_sees_it_done(url):
    x = EffectKey("event", "s", "x")
    holder = OnceStore(url, lease=timedelta(seconds=0.3))
    claim = await holder.claim([x])
    waiter = OnceStore(url, lease=timedelta(seconds=0.3))

    async def work() -> None:
        async with holder.holding(claim.token):
            await asyncio.sleep(0.8)  # longer than two leases: renewed meanwhile
        await holder.finish(claim.token, done=[x])

    working = asyncio.create_task(work())
    await asyncio.sleep(0.5)
    waiting = await waiter.claim([x])
    assert waiting.busy == {x}  # past its first lease, but renewed
    await waiter.settle_busy(waiting, poll=0.05)
    await working
    assert waiting.done == {x} and not waiting.taken and not waiting.busy


async def test_release_hands_a_claim_back_at_once(url):
    store = OnceStore(url)
    (x,) = keys("x")
    claim = await store.claim([x])
    await store.release(claim.token, [x], "interrupted")
    again = await store.claim([x])
    assert again.taken == {x} and again.resumed == {x}
