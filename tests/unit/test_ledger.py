"""The drop-folder ledger on its own: one winner per content, stale claims, readiness."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

from leadflow.ledger import FileLedger, FileStatus, content_digest, ready_files


def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"


async def test_one_claim_wins_however_many_race(tmp_path: Path):
    ledger = FileLedger(url(tmp_path))

    results = await asyncio.gather(*(ledger.claim("c0ffee", f"copy-{i}.csv") for i in range(8)))

    winners = [r for r in results if r is None]
    assert len(winners) == 1
    (entry,) = await ledger.entries()
    assert entry.status is FileStatus.CLAIMED
    assert all(r.name == entry.name for r in results if r is not None)


async def test_finished_content_is_never_claimed_again(tmp_path: Path):
    ledger = FileLedger(url(tmp_path), stale_after=timedelta(0))
    assert await ledger.claim("abc", "a.csv") is None
    await ledger.finish("abc", ok=False, run_id="run-1", detail="1 side effect failed")

    holder = await ledger.claim("abc", "renamed.csv")

    assert holder is not None
    assert (holder.name, holder.status, holder.run_id) == ("a.csv", FileStatus.FAILED, "run-1")
    assert holder.finished_at is not None and holder.finished_at.tzinfo is not None


async def test_a_stale_claim_is_taken_over_a_fresh_one_is_not(tmp_path: Path):
    assert await FileLedger(url(tmp_path)).claim("abc", "a.csv") is None

    fresh = await FileLedger(url(tmp_path), stale_after=timedelta(hours=1)).claim("abc", "b.csv")
    stale = await FileLedger(url(tmp_path), stale_after=timedelta(0)).claim("abc", "b.csv")

    assert fresh is not None and fresh.status is FileStatus.CLAIMED
    assert stale is None
    (entry,) = await FileLedger(url(tmp_path)).entries()
    assert (entry.name, entry.detail) == ("b.csv", "stale claim taken over")


def test_ready_files_by_suffix_age_and_name(tmp_path: Path):
    old = time.time() - 60
    for name in ("b.csv", "a.JSONL", ".hidden.csv", "notes.txt", "new.csv"):
        (tmp_path / name).write_text("x")
        if name != "new.csv":
            os.utime(tmp_path / name, (old, old))
    (tmp_path / "folder.csv").mkdir()

    ready, fresh = ready_files(tmp_path, {".csv", ".jsonl"}, settle_seconds=5)

    assert [p.name for p in ready] == ["a.JSONL", "b.csv"]
    assert [p.name for p in fresh] == ["new.csv"]


def test_digest_is_of_content_not_name(tmp_path: Path):
    (tmp_path / "one.csv").write_bytes(b"id,email\n")
    (tmp_path / "two.csv").write_bytes(b"id,email\n")
    (tmp_path / "three.csv").write_bytes(b"id,email\n\n")

    assert content_digest(tmp_path / "one.csv") == content_digest(tmp_path / "two.csv")
    assert content_digest(tmp_path / "one.csv") != content_digest(tmp_path / "three.csv")


async def test_take_over_only_the_claim_of_the_named_claimant(tmp_path: Path):
    ledger = FileLedger(url(tmp_path))
    assert await ledger.claim("abc", "a.csv", claimant="run-1") is None
    (entry,) = await ledger.entries()
    assert entry.run_id == "run-1"

    assert not await ledger.take_over("abc", "a.csv", claimant="run-3", previous="run-2")
    assert await ledger.take_over("abc", "a.csv", claimant="run-3", previous="run-1")
    assert not await ledger.take_over("abc", "a.csv", claimant="run-4", previous="run-1")
    (entry,) = await ledger.entries()
    assert (entry.status, entry.run_id) == (FileStatus.CLAIMED, "run-3")

    await ledger.finish("abc", ok=True, run_id="child-run")
    assert not await ledger.take_over("abc", "a.csv", claimant="run-5", previous="child-run")
    (entry,) = await ledger.entries()
    assert (entry.status, entry.run_id) == (FileStatus.DONE, "child-run")


def test_the_key_set_answers_like_a_set_across_merges(monkeypatch) -> None:
    from leadflow.integrations.jsonl_ledger import KeySet

    monkeypatch.setattr(KeySet, "RECENT", 7)  # merge often
    keys = KeySet()
    added = [f"notify:person_{n:05d}" for n in range(0, 300, 3)]
    for key in added:
        keys.add(key)
    assert len(keys) == len(added)
    assert all(key in keys for key in added)
    assert not any(f"notify:person_{n:05d}" in keys for n in range(1, 300, 3))
