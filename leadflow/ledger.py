"""The drop-folder ledger: which file contents have been taken for processing.

The `poll-leads` flow watches a folder; this module decides which files in it are
new. A file is known by the sha256 of its content, not its name, so a file copied in
again under another name (or renamed) is recognised and left alone, and a file whose
content changed is new.

Taking a file is one INSERT that does nothing when the row exists (`claim`): the
database, not the poller, decides who wins, so two pollers racing on the same folder,
an overlapping scheduled run or a rerun never process the same content twice. The row
is written before processing starts and marked done or failed after, so a crash in
between leaves it `claimed`. The claim names its claimant (the poll's flow run id, in
`run_id` until the file is finished), and a claim is resumed by a later poll in one
of two ways: at once through `take_over` when the caller knows the claimant has
stopped (flows/poll.py asks Prefect whether that run is in a final state), or by
`claim` itself once the claim is older than `stale_after` (a claimant nobody can ask
about, e.g. on a machine that went away). Reprocessing after a takeover is safe
because each lead's side effects have their own once-only keys (flows/lead.py): the
leads done before the interruption are skipped, the rest are done, none twice.

A failed file is not retried by the poller (its leads may fail the same way every
minute); rerun it with the `process-file` deployment once the cause is fixed.

No Prefect here: the flow in flows/poll.py is the thin layer that calls this.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Column, DateTime, String, Table, select, update
from sqlalchemy.engine import RowMapping

from leadflow.db import get_engine, insert_ignoring_duplicates
from leadflow.schema import metadata


class FileStatus(StrEnum):
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"


processed_files = Table(
    "processed_files",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("run_id", String),
    Column("detail", String),
)


@dataclass(frozen=True)
class LedgerEntry:
    """A row of the ledger: what happened to one file content."""

    sha256: str
    name: str
    status: FileStatus
    claimed_at: datetime
    finished_at: datetime | None = None
    run_id: str | None = None
    detail: str | None = None


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks (a drop file can be large)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def ready_files(
    folder: Path, suffixes: Iterable[str], *, settle_seconds: float, now: float | None = None
) -> tuple[list[Path], list[Path]]:
    """Lead files in `folder` that are ready, and those that are too fresh.

    A file modified less than `settle_seconds` ago may still be being copied in; its
    half-written content would hash differently from the finished file and both would
    be processed. Hidden files (`.name`) are left alone: that is where writers put a
    file before renaming it into place. Sorted by name, so a poll is repeatable.
    """
    wanted = {suffix.lower() for suffix in suffixes}
    now = time.time() if now is None else now
    ready: list[Path] = []
    fresh: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in wanted or not path.is_file():
            continue
        (fresh if now - path.stat().st_mtime < settle_seconds else ready).append(path)
    return ready, fresh


class FileLedger:
    """The `processed_files` table in the leadflow database."""

    def __init__(self, database_url: str, *, stale_after: timedelta = timedelta(hours=1)) -> None:
        self.database_url = database_url
        self.stale_after = stale_after

    async def claim(
        self, sha256: str, name: str, *, claimant: str | None = None
    ) -> LedgerEntry | None:
        """Take this content for processing. None when taken: the caller processes it.
        Otherwise the existing entry, whose content must not be processed now (unless
        `take_over` says its claim was abandoned). `claimant` is recorded in `run_id`.

        One transaction (BEGIN IMMEDIATE on SQLite, row locks on PostgreSQL): the
        insert, or else the take-over of a stale claim, or else the read of the
        winner's row."""
        engine = get_engine(self.database_url)
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            inserted = await connection.execute(
                insert_ignoring_duplicates(engine, processed_files, ["sha256"]),
                {
                    "sha256": sha256,
                    "name": name,
                    "status": FileStatus.CLAIMED.value,
                    "claimed_at": now,
                    "run_id": claimant,
                },
            )
            if inserted.rowcount == 1:
                return None
            taken_over = await connection.execute(
                update(processed_files)
                .where(
                    processed_files.c.sha256 == sha256,
                    processed_files.c.status == FileStatus.CLAIMED.value,
                    processed_files.c.claimed_at < now - self.stale_after,
                )
                .values(name=name, claimed_at=now, run_id=claimant, detail="stale claim taken over")
            )
            if taken_over.rowcount == 1:
                return None
            row = (
                await connection.execute(
                    select(processed_files).where(processed_files.c.sha256 == sha256)
                )
            ).one()
        return _entry(row._mapping)

    async def take_over(
        self, sha256: str, name: str, *, claimant: str | None, previous: str | None
    ) -> bool:
        """Take over a claim whose claimant `previous` is known to have stopped without
        finishing it. True when this caller now holds the claim; False when the entry is
        no longer that claim (finished meanwhile, or taken over by someone else)."""
        engine = get_engine(self.database_url)
        async with engine.begin() as connection:
            taken = await connection.execute(
                update(processed_files)
                .where(
                    processed_files.c.sha256 == sha256,
                    processed_files.c.status == FileStatus.CLAIMED.value,
                    processed_files.c.run_id == previous,
                )
                .values(
                    name=name,
                    claimed_at=datetime.now(UTC),
                    run_id=claimant,
                    detail=f"claim of stopped run {previous} resumed",
                )
            )
        return taken.rowcount == 1

    async def finish(
        self, sha256: str, *, ok: bool, run_id: str | None = None, detail: str | None = None
    ) -> None:
        """Record how processing a claimed content ended. Only a claim is finished:
        when a stale claim was taken over, the first of the two to finish is kept."""
        engine = get_engine(self.database_url)
        status = FileStatus.DONE if ok else FileStatus.FAILED
        async with engine.begin() as connection:
            await connection.execute(
                update(processed_files)
                .where(
                    processed_files.c.sha256 == sha256,
                    processed_files.c.status == FileStatus.CLAIMED.value,
                )
                .values(
                    status=status.value,
                    finished_at=datetime.now(UTC),
                    run_id=run_id,
                    detail=detail,
                )
            )

    async def entries(self) -> list[LedgerEntry]:
        """Every entry, oldest claim first."""
        engine = get_engine(self.database_url)
        query = select(processed_files).order_by(
            processed_files.c.claimed_at, processed_files.c.name
        )
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_entry(row) for row in rows]


def _entry(row: RowMapping) -> LedgerEntry:
    return LedgerEntry(
        sha256=row["sha256"],
        name=row["name"],
        status=FileStatus(row["status"]),
        claimed_at=_utc(row["claimed_at"]),
        finished_at=_utc(row["finished_at"]) if row["finished_at"] else None,
        run_id=row["run_id"],
        detail=row["detail"],
    )


def _utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
