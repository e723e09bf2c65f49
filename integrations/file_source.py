"""Leads from a CSV or JSONL file, as `leadflow run`, `process_file` and the poller read them.

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
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leadflow.columns import ColumnMap, map_columns
from leadflow.integrations.base import RawRecord
from leadflow.textfiles import (
    DEFAULT_DELIMITER,
    delimiter_note,
    detect_encoding,
    encoding_note,
    sniff_delimiter,
)

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
HEAD_CHARS = 64 * 1024  # text the CSV delimiter is sniffed from (its first 20 lines)


@dataclass
class FileContents:
    """A file's records (keys already mapped to lead fields) and how it was read."""

    records: list[RawRecord]
    columns: ColumnMap
    notes: list[str] = field(default_factory=list)  # encoding, delimiter: when not default

    def report(self) -> str:
        """What to tell the user once per run: the columns, and how the file was read."""
        return _report(self.notes, self.columns)


def _report(notes: list[str], columns: ColumnMap) -> str:
    read_as = f"read as {', '.join(notes)}\n" if notes else ""
    return read_as + columns.report()


@dataclass
class FileStream:
    """A lead file whose encoding, delimiter and columns are known, read a record at
    a time: `records()` opens the file anew on each call and holds one row at once,
    so a file of any length can be read (and read twice) in flat memory."""

    path: Path
    kind: str
    encoding: str
    delimiter: str
    columns: ColumnMap | None  # None: no header could be found (every line malformed)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        return _report(self.notes, self.columns or ColumnMap())

    def records(self) -> Iterator[RawRecord]:
        """The records, in order, keys mapped to lead fields."""
        for record in self._raw(None):
            if record.error is None and self.columns is not None:
                record.data = self.columns.apply(record.data)
            yield record

    def _raw(self, keys: dict[str, None] | None) -> Iterator[RawRecord]:
        origin = str(self.path)
        if self.kind == "csv":
            with self.path.open(encoding=self.encoding, newline="") as handle:
                reader = csv.reader(handle, delimiter=self.delimiter)
                yield from _csv_records(reader, _csv_header(reader, origin), origin)
        else:
            with self.path.open(encoding=self.encoding, newline="\n") as handle:
                yield from _jsonl_records(handle, origin, {} if keys is None else keys)


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
    stream = open_file(path, columns=columns, rule_attributes=rule_attributes)
    return FileContents(list(stream.records()), stream.columns or ColumnMap(), stream.notes)


def open_file(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    rule_attributes: Iterable[str] = (),
) -> FileStream:
    """The file ready to stream: its encoding checked over the whole file (in
    blocks), the CSV delimiter sniffed from its first lines, its columns mapped from
    the CSV header or the keys of every JSONL line. Raises ValueError as `read_file`."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: expected a .csv or .jsonl file")
    origin = str(path)
    encoding = detect_encoding(path)
    notes = [note] if (note := encoding_note(encoding)) else []
    delimiter = DEFAULT_DELIMITER
    if kind == "csv":
        with path.open(encoding=encoding, newline="") as handle:
            delimiter = sniff_delimiter(handle.read(HEAD_CHARS))
        notes += [note] if (note := delimiter_note(delimiter)) else []
        with path.open(encoding=encoding, newline="") as handle:
            headers = _csv_header(csv.reader(handle, delimiter=delimiter), origin)
    stream = FileStream(path, kind, encoding, delimiter, None, notes)
    if kind == "jsonl":
        keys: dict[str, None] = {}
        for _record in stream._raw(keys):
            pass
        headers = list(keys)
    if headers:  # none: every line malformed, each is set aside with its reason
        stream.columns = map_columns(
            headers, custom=columns, rule_attributes=rule_attributes, origin=origin
        )
    return stream


def _csv_header(reader, origin: str) -> list[str]:
    header = next(reader, None)
    if not header:
        raise ValueError(f"{origin}: the CSV file has no header row")
    return [name.strip() for name in header]


def _csv_records(reader, header: list[str], origin: str) -> Iterator[RawRecord]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field past csv's size limit: this row only
            yield RawRecord(position=reader.line_num, error=f"malformed row: {exc}", origin=origin)
            continue
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


def _jsonl_records(handle, origin: str, keys: dict[str, None]) -> Iterator[RawRecord]:
    """The lines as records; the keys of the objects are added to `keys`."""
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
            keys.update(dict.fromkeys(data))
            yield RawRecord(position=number, data=data, origin=origin)


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
