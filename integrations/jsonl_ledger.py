"""An append-only JSONL file that holds each key once, across processes.

The file is locked while the new lines since the last read are scanned for keys and
the rows not yet present are appended; so two processes writing the same key write
it once. The terminal notifier's outbox and the JSONL event sink are both this.

The keys already in the file are remembered as 8-byte digests in sorted arrays
(`KeySet`), not as strings in a set: a backlog of 200,000 leads writes 200,000 keys,
and a set of strings held about 100 bytes for each (1.6 MB, not 20 MB).
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import heapq
import json
from array import array
from pathlib import Path
from typing import Any


class KeySet:
    """A set of strings kept as 64-bit BLAKE2b digests: new keys in a small set,
    merged into one sorted array when it fills. Two keys with the same digest (odds
    about n^2 / 2^65: 1 in 10^9 at 200,000 keys) would count as one."""

    RECENT = 4096

    def __init__(self) -> None:
        self._sorted = array("Q")
        self._recent: set[int] = set()

    @staticmethod
    def _digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")

    def __contains__(self, key: str) -> bool:
        digest = self._digest(key)
        if digest in self._recent:
            return True
        i = bisect.bisect_left(self._sorted, digest)
        return i < len(self._sorted) and self._sorted[i] == digest

    def add(self, key: str) -> None:
        self._recent.add(self._digest(key))
        if len(self._recent) >= self.RECENT:
            self._sorted = array("Q", heapq.merge(self._sorted, sorted(self._recent)))
            self._recent.clear()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)


class JsonlLedger:
    def __init__(self, path: Path, key: str) -> None:
        self.path = Path(path)
        self.key = key
        self._seen = KeySet()
        self._read_up_to = 0

    def append_new(self, rows: list[dict[str, Any]]) -> list[bool]:
        """Append the rows whose key is not in the file yet; one flag per row, True
        when that row was written. Blocking: call it in a thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        written = []
        with self.path.open("a+", encoding="utf-8") as ledger:
            fcntl.flock(ledger, fcntl.LOCK_EX)
            try:
                ledger.seek(self._read_up_to)
                for line in ledger:
                    if line.strip():
                        self._seen.add(json.loads(line)[self.key])
                for row in rows:
                    new = row[self.key] not in self._seen
                    if new:
                        ledger.write(json.dumps(row) + "\n")
                        self._seen.add(row[self.key])
                    written.append(new)
                ledger.flush()
                self._read_up_to = ledger.tell()
            finally:
                fcntl.flock(ledger, fcntl.LOCK_UN)
        return written
