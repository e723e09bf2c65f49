"""Where a polled source stopped, kept between polls and processes.

A watermark is the highest `updated_at` (or `createdate`) a source has handed on,
plus the ids it handed on at or after `watermark - overlap`. The next poll asks from
`watermark - overlap`, so a record written late with a slightly older timestamp (a
clock skew, a slow transaction) is still seen, and the ids kept skip what was
already handed on: repeated polls never miss and never repeat a lead. A cursor API
keeps its opaque cursor instead.

The state is a small JSON file, replaced atomically (write, fsync, rename), and
saved only by the source's `commit()`, which its caller calls once the records
yielded so far are accepted into leadflow (the protocol of
`leadflow.integrations.base.LeadSource`): at worst a crash repeats what was read
since the last commit, which the pipeline's once-only keys make harmless, and a
page that failed is read again by the next poll.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path


@dataclass
class Watermark:
    path: Path
    overlap: timedelta = timedelta(minutes=5)
    since: datetime | None = None
    cursor: str | None = None
    recent: dict[str, str] = field(default_factory=dict)  # id -> its timestamp (ISO)

    @classmethod
    def load(cls, path: Path, overlap: timedelta) -> Watermark:
        mark = cls(Path(path), overlap)
        if mark.path.exists():
            data = json.loads(mark.path.read_text())
            mark.since = datetime.fromisoformat(data["since"]) if data.get("since") else None
            mark.cursor = data.get("cursor")
            mark.recent = dict(data.get("recent") or {})
        return mark

    @property
    def ask_from(self) -> datetime | None:
        """The time the next poll asks from: the watermark less the overlap (no
        earlier than year 1, for a record stamped there)."""
        if self.since is None:
            return None
        try:
            return self.since - self.overlap
        except OverflowError:
            return datetime.min.replace(tzinfo=self.since.tzinfo)

    def is_new(self, record_id: str) -> bool:
        return record_id not in self.recent

    def advance(self, record_id: str, at: datetime) -> None:
        """Note a record handed on; move the watermark to it if it is later."""
        self.recent[record_id] = at.isoformat()
        if self.since is None or at > self.since:
            self.since = at

    def save(self) -> None:
        if (floor := self.ask_from) is not None:  # keep only ids the next poll can see again
            self.recent = {
                k: v for k, v in self.recent.items() if datetime.fromisoformat(v) >= floor
            }
        state = {
            "since": self.since.isoformat() if self.since else None,
            "cursor": self.cursor,
            "recent": self.recent,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)


class WatermarkCommit:
    """`commit()` for a source whose `records()` keeps its Watermark in `self._mark`:
    the mark in memory reflects exactly the records yielded so far (each record
    advances it before it is yielded), so saving it commits those."""

    _mark: Watermark | None = None

    async def commit(self) -> None:
        if self._mark is not None:
            self._mark.save()
