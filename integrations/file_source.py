"""Leads from a CSV or JSONL file.

Every record keeps its position (CSV row counting the header as row 1, JSONL line),
so a set-aside record can be found in the file. A row that cannot be parsed into
fields (a ragged CSV row, a line that is not a JSON object) is still yielded, with
`error` set, so nothing is lost silently.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from integrations.base import LeadSource, RawRecord

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class FileLeadSource(LeadSource):
    name = "file"

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None

    async def records(self) -> AsyncIterator[RawRecord]:
        if self.path is None:
            raise ValueError("the file source needs a path")
        for record in read_records(self.path):
            yield record


def read_records(path: Path) -> list[RawRecord]:
    """All records of a CSV or JSONL file, in order. Raises ValueError for a file
    leadflow cannot read at all (unknown suffix, no header)."""
    return list(stream_records(path))


def stream_records(path: Path) -> Iterator[RawRecord]:
    """The records one at a time, holding one line: for files too big to load (the
    micro-batch path). Raises ValueError as `read_records` does."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: expected a .csv or .jsonl file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        read = _read_csv if kind == "csv" else _read_jsonl
        yield from read(handle, str(path))


def count_records(path: Path) -> int:
    """Non-blank lines after the CSV header (or in the JSONL file), read in blocks:
    the number of records unless CSV cells hold line breaks (then an upper bound)."""
    blank = lines = 0
    with path.open("rb") as handle:
        for line in handle:
            lines += 1
            blank += not line.strip()
    header = 1 if SUFFIXES.get(path.suffix.lower()) == "csv" and lines else 0
    return max(0, lines - blank - header)


def _read_csv(handle, origin: str) -> Iterator[RawRecord]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if not header:
        raise ValueError(f"{origin}: the CSV file has no header row")
    header = [name.strip() for name in header]
    for row in reader:
        position = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not records
        if len(row) != len(header):
            yield RawRecord(
                position=position,
                data={f"column_{i + 1}": cell for i, cell in enumerate(row)},
                error=f"malformed row: {len(row)} fields, the header has {len(header)}",
                origin=origin,
            )
            continue
        yield RawRecord(position=position, data=dict(zip(header, row, strict=True)), origin=origin)


def _read_jsonl(handle, origin: str) -> Iterator[RawRecord]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            error = (
                None if isinstance(data, dict) else f"a JSON {type(data).__name__}, not an object"
            )
        except json.JSONDecodeError as exc:
            error = f"not JSON ({exc.msg})"
        if error:
            kept = {"line": line.rstrip("\n")}
            yield RawRecord(
                position=number, data=kept, error=f"malformed line: {error}", origin=origin
            )
        else:
            yield RawRecord(position=number, data=data, origin=origin)
