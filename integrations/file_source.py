"""Leads from a CSV or JSONL file.

Every record keeps its position (CSV row counting the header as row 1, JSONL line),
so a set-aside record can be found in the file. A row that cannot be parsed into
fields (a ragged CSV row, a line that is not a JSON object) is still yielded, with
`error` set, so nothing is lost silently.

Files are read as their tools export them: the encoding and the delimiter are
detected (`leadflow.textfiles`) and headers are mapped to lead fields
(`leadflow.columns`); `FileContents.report()` says what was detected and mapped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leadflow.columns import ColumnMap, map_columns
from leadflow.integrations.base import LeadSource, RawRecord
from leadflow.textfiles import decode_file, delimiter_note, sniff_delimiter

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


@dataclass
class FileContents:
    """A file's records (keys already mapped to lead fields) and how it was read."""

    records: list[RawRecord]
    columns: ColumnMap
    notes: list[str] = field(default_factory=list)  # encoding, delimiter: when not default

    def report(self) -> str:
        """What to tell the user once per run: the columns, and how the file was read."""
        read_as = f"read as {', '.join(self.notes)}\n" if self.notes else ""
        return read_as + self.columns.report()


def read_records(path: Path) -> list[RawRecord]:
    """All records of a CSV or JSONL file, in order (see `read_file`)."""
    return read_file(path).records


def read_file(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    rule_attributes: Iterable[str] = (),
) -> FileContents:
    """All records of a CSV or JSONL file, in order, with their keys mapped to lead
    fields. Raises ValueError naming the file for one leadflow cannot read at all
    (unknown suffix, not text, no header, no email column)."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: expected a .csv or .jsonl file")
    decoded = decode_file(path)
    notes = [decoded.note] if decoded.note else []
    origin = str(path)
    if kind == "csv":
        delimiter = sniff_delimiter(decoded.text)
        notes += [delimiter_note(delimiter)] if delimiter_note(delimiter) else []
        records, headers = _read_csv(io.StringIO(decoded.text, newline=""), origin, delimiter)
    else:
        records, headers = _read_jsonl(io.StringIO(decoded.text), origin)
    if not headers:  # every line malformed: each is set aside with its reason
        return FileContents(records, ColumnMap(), notes)
    mapping = map_columns(headers, custom=columns, rule_attributes=rule_attributes, origin=origin)
    for record in records:
        if record.error is None:
            record.data = mapping.apply(record.data)
    return FileContents(records, mapping, notes)


def _read_csv(handle, origin: str, delimiter: str) -> tuple[list[RawRecord], list[str]]:
    reader = csv.reader(handle, delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise ValueError(f"{origin}: the CSV file has no header row")
    header = [name.strip() for name in header]
    records = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a field past csv's size limit: this row only
            records.append(
                RawRecord(position=reader.line_num, error=f"malformed row: {exc}", origin=origin)
            )
            continue
        position = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not records
        if len(row) != len(header):
            records.append(
                RawRecord(
                    position=position,
                    data={f"column_{i + 1}": cell for i, cell in enumerate(row)},
                    error=f"malformed row: {len(row)} fields, the header has {len(header)}",
                    origin=origin,
                )
            )
            continue
        records.append(
            RawRecord(position=position, data=dict(zip(header, row, strict=True)), origin=origin)
        )
    return records, header


def _read_jsonl(handle, origin: str) -> tuple[list[RawRecord], list[str]]:
    records = []
    keys: dict[str, None] = {}
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
            records.append(
                RawRecord(
                    position=number, data=kept, error=f"malformed line: {error}", origin=origin
                )
            )
        else:
            keys.update(dict.fromkeys(data))
            records.append(RawRecord(position=number, data=data, origin=origin))
    return records, list(keys)


def count_records(path: Path) -> int:
    """Non-blank lines after the CSV header (or in the JSONL file), read in blocks
    without decoding: the number of records unless CSV cells hold line breaks (then
    an upper bound). Cheap enough to choose between the per-lead and batch paths."""
    blank = lines = 0
    with path.open("rb") as handle:
        for line in handle:
            lines += 1
            blank += not line.strip()
    header = 1 if SUFFIXES.get(path.suffix.lower()) == "csv" and lines else 0
    return max(0, lines - blank - header)
