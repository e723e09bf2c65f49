"""An append-only JSONL file that holds each key once, across processes.

The file is locked while the new lines since the last read are scanned for keys and
the rows not yet present are appended; so two processes writing the same key write
it once. The terminal notifier's outbox and the JSONL event sink are both this.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any


class JsonlLedger:
    def __init__(self, path: Path, key: str) -> None:
        self.path = Path(path)
        self.key = key
        self._seen: set[str] = set()
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
