"""The one once-only store: every side effect leadflow does goes through it.

A side effect (update one CRM contact, notify about one person, log one event) is a
row keyed by (effect, scope, key): the effect's name, a short hash of where it lands
(`effect_scope`: another CRM is another side effect) and its idempotency key
(`once_key`). The row moves through three states:

    claimed --the vendor answered--> done
       |  \\--the call failed-------> failed --claimed again by a retry, a rerun or replay
       \\--the holder is gone: its lease runs out, and the next claim takes it

- `claim` takes the rows before the vendor is called, in one transaction. A row
  nobody holds, a failed row, or a claim whose lease ran out is taken; a done row,
  or a row a live holder has claimed, is not: it is reported `busy`, and the caller
  waits for it (`settle_busy`) instead of counting it as done.
- The holder renews its lease while it works (`holding`, one renewal per lease third
  for all of a process's claims). A holder that was killed stops renewing, so its
  claims expire after `lease` and the next run sends them again, under the same
  idempotency key: a crash can cause a repeat under one key, which the vendor's
  idempotency absorbs, but never a loss.
- `finish` marks a claim's rows done after the vendor answered, or failed (with the
  reason) for a retry to claim again; `release` hands them back at once when the
  holder is cancelled.

The idempotency key is the same on every attempt: the adapters pass it on to the
vendor (Idempotency-Key header, upsert key, message id) or enforce it themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    and_,
    case,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.db import get_engine, insert_ignoring_duplicates, serialise
from leadflow.models import Lead, lead_version, person_id
from leadflow.schema import metadata
from leadflow.stores.leases import LeaseKeeper

CLAIMED, DONE, FAILED = "claimed", "done", "failed"
DETAIL_LIMIT = 500  # characters of a failure's reason kept on the row

side_effect_claims = Table(
    "side_effect_claims",
    metadata,
    Column("effect", String, primary_key=True),
    Column("scope", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("token", String, nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("detail", Text),
)

# SQLite allows 32,766 bound parameters per statement; keep well under it.
_CHUNK = 500


def once_key(effect: str, lead: Lead) -> str:
    """The idempotency key of one side effect for one lead: `notify:` and `event:` are
    per person (`person_<hash of the email>`), so two rows or two sources with the
    same email never notify twice; `crm:` is per lead and version of its data, so a
    later row with new data updates the contact."""
    if effect == "crm":
        return f"crm:{lead.id}:{lead_version(lead)}"
    return f"{effect}:{person_id(lead.email)}"


def scope_hash(scope: str) -> str:
    """Where a side effect lands, as a short hash: an adapter's scope may hold a
    database URL or a webhook URL, credentials included, which must not be stored."""
    return hashlib.sha256(scope.encode()).hexdigest()[:12]


@dataclass(frozen=True, order=True)
class EffectKey:
    """One side effect: what, where (a `scope_hash`), and its idempotency key."""

    effect: str
    scope: str
    key: str


@dataclass
class Claim:
    """What one `claim` call got. Call the vendor for `taken` only."""

    token: str
    taken: set[EffectKey] = field(default_factory=set)
    done: set[EffectKey] = field(default_factory=set)
    busy: set[EffectKey] = field(default_factory=set)
    # taken again after an earlier attempt failed or its holder disappeared: the
    # call is repeated under the same key (a run's summary counts these)
    resumed: set[EffectKey] = field(default_factory=set)


def _by_place(keys: Iterable[EffectKey]) -> dict[tuple[str, str], list[str]]:
    places: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in keys:
        places[(item.effect, item.scope)].append(item.key)
    return places


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class OnceStore:
    """The `side_effect_claims` table in the leadflow database."""

    def __init__(self, database_url: str, *, lease: timedelta = timedelta(seconds=20)):
        self.database_url = database_url
        self.lease = lease
        self._leases = LeaseKeeper(self.renew, lease.total_seconds())

    # --- claiming -------------------------------------------------------------------

    async def claim(
        self,
        keys: Iterable[EffectKey],
        *,
        token: str | None = None,
        connection: AsyncConnection | None = None,
    ) -> Claim:
        """Take the rows of `keys` that nobody live holds and that are not done.
        `connection`: inside the caller's transaction (the decision is stored in the
        same one); otherwise in a transaction of its own."""
        wanted = sorted(set(keys))
        claim = Claim(token or uuid.uuid4().hex)
        if not wanted:
            return claim
        if connection is not None:
            await self._claim(connection, wanted, claim)
            return claim
        async with get_engine(self.database_url).begin() as own:
            await self._claim(own, wanted, claim)
        return claim

    async def _claim(
        self, connection: AsyncConnection, wanted: list[EffectKey], claim: Claim
    ) -> None:
        await serialise(connection, "leadflow-once")
        now = datetime.now(UTC)
        table = side_effect_claims
        fresh = {
            "status": CLAIMED,
            "token": claim.token,
            "lease_until": now + self.lease,
            "updated_at": now,
        }
        # The rows this INSERT creates are ours: only the others (done, failed, held
        # by another run) are read back, so a group of new leads takes one statement.
        created = await connection.execute(
            insert_ignoring_duplicates(
                connection.engine, table, ["effect", "scope", "key"]
            ).returning(table.c.effect, table.c.scope, table.c.key),
            [
                {"effect": k.effect, "scope": k.scope, "key": k.key, "attempts": 1, **fresh}
                for k in wanted
            ],
        )
        claim.taken |= {EffectKey(*row) for row in created}
        existing = [item for item in wanted if item not in claim.taken]
        for (effect, scope), names in _by_place(existing).items():
            for chunk in _chunks(names):
                mine = and_(
                    table.c.effect == effect, table.c.scope == scope, table.c.key.in_(chunk)
                )
                takeable = or_(
                    table.c.status == FAILED,
                    and_(table.c.status == CLAIMED, table.c.lease_until < now),
                )
                rows = await connection.execute(
                    select(
                        table.c.key,
                        table.c.status,
                        table.c.token,
                        case((takeable, True), else_=False),
                    ).where(mine)
                )
                resume = []
                for key, status, token, free in rows:
                    item = EffectKey(effect, scope, key)
                    if status == DONE:
                        claim.done.add(item)
                    elif status == CLAIMED and token == claim.token:
                        claim.taken.add(item)
                    elif free:
                        resume.append(key)
                        claim.taken.add(item)
                        claim.resumed.add(item)
                    else:
                        claim.busy.add(item)
                if resume:
                    await connection.execute(
                        update(table)
                        .where(
                            table.c.effect == effect,
                            table.c.scope == scope,
                            table.c.key.in_(resume),
                        )
                        .values(**fresh, attempts=table.c.attempts + 1)
                    )

    async def settle_busy(self, claim: Claim, *, poll: float = 0.25) -> None:
        """Wait for the rows another holder has: each ends done (moved to
        `claim.done`), or its holder fails or disappears and it is taken (moved to
        `claim.taken`). Waits at most one lease and a bit; what is still busy then
        stays in `claim.busy` (its holder is alive and still working)."""
        deadline = asyncio.get_running_loop().time() + self.lease.total_seconds() + 2
        while claim.busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(poll)
            poll = min(poll * 2, 1.0)
            again = await self.claim(claim.busy, token=claim.token)
            claim.busy = again.busy
            claim.done |= again.done
            claim.taken |= again.taken
            claim.resumed |= again.resumed

    # --- holding --------------------------------------------------------------------

    def holding(self, token: str) -> AbstractAsyncContextManager[None]:
        """Renew `token`'s leases while the block runs, so a live holder's claims never
        expire (leadflow.stores.leases)."""
        return self._leases.holding(token)

    async def renew(self, tokens: Sequence[str]) -> None:
        if not tokens:
            return
        table = side_effect_claims
        now = datetime.now(UTC)
        async with get_engine(self.database_url).begin() as connection:
            for chunk in _chunks(list(tokens)):
                await connection.execute(
                    update(table)
                    .where(table.c.token.in_(chunk), table.c.status == CLAIMED)
                    .values(lease_until=now + self.lease)
                )

    # --- finishing ------------------------------------------------------------------

    async def finish(
        self,
        token: str,
        *,
        done: Iterable[EffectKey] = (),
        failed: dict[EffectKey, str] | None = None,
    ) -> None:
        """Mark this claim's rows done (the vendor answered) or failed, with a reason
        (a later claim takes them again)."""
        done, failed = list(done), failed or {}
        if not done and not failed:
            return
        table = side_effect_claims
        now = datetime.now(UTC)
        async with get_engine(self.database_url).begin() as connection:
            for (effect, scope), names in _by_place(done).items():
                for chunk in _chunks(names):
                    await connection.execute(
                        update(table)
                        .where(
                            table.c.effect == effect,
                            table.c.scope == scope,
                            table.c.key.in_(chunk),
                            table.c.token == token,
                        )
                        .values(status=DONE, updated_at=now, detail=None)
                    )
            for item, reason in failed.items():
                await connection.execute(
                    update(table)
                    .where(
                        table.c.effect == item.effect,
                        table.c.scope == item.scope,
                        table.c.key == item.key,
                        table.c.token == token,
                        table.c.status == CLAIMED,
                    )
                    .values(status=FAILED, updated_at=now, detail=reason[:DETAIL_LIMIT])
                )

    async def release(self, token: str, keys: Iterable[EffectKey], reason: str) -> None:
        """Hand claims back at once (the holder was cancelled before the vendor
        answered): failed with `reason`, so the next claim takes them."""
        await self.finish(token, failed=dict.fromkeys(keys, reason))

    # --- reading --------------------------------------------------------------------

    async def status(self, item: EffectKey) -> str | None:
        table = side_effect_claims
        async with get_engine(self.database_url).connect() as connection:
            return (
                await connection.execute(
                    select(table.c.status).where(
                        table.c.effect == item.effect,
                        table.c.scope == item.scope,
                        table.c.key == item.key,
                    )
                )
            ).scalar_one_or_none()

    async def counts(self) -> dict[tuple[str, str], int]:
        """{(effect, status): rows}, for `leadflow check` and the tests."""
        from sqlalchemy import func

        table = side_effect_claims
        async with get_engine(self.database_url).connect() as connection:
            rows = await connection.execute(
                select(table.c.effect, table.c.status, func.count()).group_by(
                    table.c.effect, table.c.status
                )
            )
            return {(effect, status): count for effect, status, count in rows}
