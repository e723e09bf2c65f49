"""Leads from a file as the usual tools export them, for `leadflow run`, `process_file`
and the poller.

Read: CSV, TSV and "Unicode Text" (`.csv`, `.tsv`, `.tab`, `.txt`: the encoding and the
delimiter detected, leadflow.textfiles), workbooks (`.xlsx`, `.xlsm`, `.xls`, `.ods`:
the first sheet unless LEADFLOW_SHEET names one, read with python-calamine), JSON Lines
(`.jsonl`, `.ndjson`) and a JSON array of objects (`.json`, or a `.jsonl` that holds
one). A sheet's header is found below any title and filter rows, and totals and
footer lines below the data are skipped (leadflow.tables); headers are mapped to
lead fields by position (leadflow.columns), so a duplicated header stays two
columns. `FileStream.report()` says what was detected, skipped and mapped, once.

Every record keeps its position (the row number a spreadsheet shows, the JSON line
or item), so a set-aside record can be found in the file. A row that cannot be read
into fields (more cells than the header, a line that is not a JSON object) is still
yielded, with `error` set, so nothing is lost silently; a short row (a spreadsheet
trims trailing empty cells) is read with the cells it lacks empty, and says so.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from leadflow.columns import ColumnMap, map_columns, names_email
from leadflow.integrations.base import RawRecord
from leadflow.tables import (
    HEADER_SEARCH_ROWS,
    Layout,
    find_header,
    has_email_sign,
    header_text,
    is_blank,
    is_blank_row,
    opens_footer,
)
from leadflow.textfiles import (
    DEFAULT_DELIMITER,
    delimiter_note,
    detect_encoding,
    encoding_note,
    sniff_delimiter,
)

SUFFIXES = {
    ".csv": "text",
    ".tsv": "text",
    ".tab": "text",
    ".txt": "text",
    ".xlsx": "workbook",
    ".xlsm": "workbook",
    ".xls": "workbook",
    ".ods": "workbook",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
READ = ".csv, .tsv, .txt, .xlsx, .xls, .ods, .json and .jsonl"
HEAD_CHARS = 64 * 1024  # text the CSV delimiter is sniffed from (its first 20 lines)
# An object whose leads are under one of these keys: {"data": [...]} and the like.
_WRAPPERS = ("leads", "contacts", "records", "data", "results", "items", "rows")


class UnreadableFileError(ValueError):
    """A file leadflow cannot read at all: the message says what it is and what to do."""


@dataclass
class FileContents:
    """A file's records (keys already mapped to lead fields) and how it was read."""

    records: list[RawRecord]
    columns: ColumnMap
    notes: list[str] = field(default_factory=list)  # how it was read: when not the default
    skipped: list[str] = field(default_factory=list)  # rows its layout made leadflow skip

    def report(self) -> str:
        """What to tell the user once per run: the columns, and how the file was read."""
        return _report(self.notes, self.skipped, self.columns)


def _report(notes: list[str], skipped: list[str], columns: ColumnMap) -> str:
    read_as = f"read as {', '.join(notes)}\n" if notes else ""
    skips = f"skipped: {'; '.join(skipped)}\n" if skipped else ""
    return read_as + skips + columns.report()


@dataclass
class FileStream:
    """A lead file whose format, layout and columns are known, read a record at a time:
    `records()` reads the file anew on each call and holds one row at once (a
    workbook's sheet and a JSON array are held whole: their readers load them so), so
    a text file of any length can be read, twice, in flat memory."""

    path: Path
    kind: str  # text, workbook, jsonl, json
    encoding: str = "utf-8"
    delimiter: str = DEFAULT_DELIMITER
    columns: ColumnMap | None = None  # None: no header could be found (every line malformed)
    notes: list[str] = field(default_factory=list)
    sheet: str | None = None
    header_row: int = 0  # the header's row number, for sheets (text and workbook)
    layout: Layout = field(default_factory=Layout)

    def report(self) -> str:
        return _report(self.notes, self.layout.notes(), self.columns or ColumnMap())

    def records(self) -> Iterator[RawRecord]:
        """The records, in order, keys mapped to lead fields."""
        if self.kind in ("text", "workbook"):
            yield from self._sheet_records()
            return
        for record in self._objects(None):
            if record.error is None and self.columns is not None:
                record.data = self.columns.apply(record.data)
            yield record

    def rows(self) -> Iterator[tuple[int, Sequence[Any] | csv.Error]]:
        """The sheet's rows as the spreadsheet numbers them, blank ones included; a
        row the CSV reader refused is its error."""
        if self.kind == "workbook":
            yield from enumerate(_workbook_rows(self.path, self.sheet)[1], start=1)
            return
        with self.path.open(encoding=self.encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            number = 0
            while True:
                number += 1
                try:
                    yield number, next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # a field past csv's size limit: this row only
                    yield number, exc

    def _sheet_records(self) -> Iterator[RawRecord]:
        origin = str(self.path)
        columns = self.columns or ColumnMap()
        width = len(columns.keys)
        headers = [_header_of(columns, i) for i in range(width)]
        self.layout.footer, self.layout.footer_first = 0, None
        in_footer = False
        for number, row in self.rows():
            if number <= self.header_row:
                continue
            if isinstance(row, csv.Error):
                yield RawRecord(position=number, error=f"malformed row: {row}", origin=origin)
                continue
            if is_blank_row(row):
                continue
            if (in_footer and not has_email_sign(row)) or opens_footer(row):
                in_footer = True
                self.layout.footer += 1
                self.layout.footer_first = self.layout.footer_first or number
                continue
            in_footer = False
            cells = _trimmed(row, width)
            if len(cells) > width:
                yield RawRecord(
                    position=number,
                    data={f"column_{i + 1}": _text(cell) for i, cell in enumerate(cells)},
                    error=f"malformed row: {len(cells)} fields, the header has {width}",
                    origin=origin,
                )
                continue
            missing = [name for name in headers[len(cells) :] if name]
            cells = [*cells, *[""] * (width - len(cells))]
            yield RawRecord(
                position=number, data=columns.apply_row(cells), missing=missing, origin=origin
            )

    def _objects(self, keys: dict[str, None] | None) -> Iterator[RawRecord]:
        keys = {} if keys is None else keys
        if self.kind == "json":
            yield from _json_array_records(self.path, self.encoding, keys)
            return
        with self.path.open(encoding=self.encoding, newline="\n") as handle:
            yield from _jsonl_records(handle, str(self.path), keys)


def _header_of(columns: ColumnMap, index: int) -> str:
    """The header a column was read under (for a short row's warning)."""
    names = [header for header, key in columns.renames.items() if key == columns.keys[index]]
    return names[0] if names else ""


def _trimmed(row: Sequence[Any], width: int) -> list[Any]:
    """The row without the empty cells past the header's width (trailing delimiters)."""
    cells = list(row)
    while len(cells) > width and is_blank(cells[-1]):
        cells.pop()
    return cells


def read_records(path: Path) -> list[RawRecord]:
    """All records of a lead file, in order (see `read_file`)."""
    return read_file(path).records


def read_file(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    rule_attributes: Iterable[str] = (),
    sheet: str | None = None,
) -> FileContents:
    """All records of a lead file, in order, with their keys mapped to lead fields.
    Raises ValueError naming the file for one leadflow cannot read at all."""
    stream = open_file(path, columns=columns, rule_attributes=rule_attributes, sheet=sheet)
    records = list(stream.records())
    columns_found = stream.columns or ColumnMap()
    return FileContents(records, columns_found, stream.notes, stream.layout.notes())


def open_file(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    rule_attributes: Iterable[str] = (),
    sheet: str | None = None,
) -> FileStream:
    """The file ready to stream: its format from the suffix (and, for JSON, its first
    character), a text file's encoding checked over the whole file (in blocks) and its
    delimiter sniffed from its first lines, a sheet's header found among its first
    rows, its columns mapped. Raises ValueError naming the file when it cannot be read
    (a suffix leadflow does not read, not text, no header, no email column)."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UnreadableFileError(
            f"{path}: a {path.suffix or 'suffix-less'} file; leadflow reads {READ} files. "
            "Export the list from its tool as CSV (UTF-8) or as an Excel workbook."
        )
    origin = str(path)
    stream = FileStream(path, kind, sheet=sheet)
    if kind != "workbook":
        stream.encoding = detect_encoding(path)
        stream.notes += [note] if (note := encoding_note(stream.encoding)) else []
    if kind == "jsonl" and _starts_with_bracket(path, stream.encoding):
        stream.kind = kind = "json"  # a JSON array saved as .jsonl
    if kind in ("jsonl", "json"):
        if kind == "json":
            stream.notes.append("a JSON array")
        keys: dict[str, None] = {}
        for _record in stream._objects(keys):
            pass
        if keys:  # none: every line malformed, each is set aside with its reason
            stream.columns = map_columns(
                list(keys), custom=columns, rule_attributes=rule_attributes, origin=origin
            )
        return stream
    if kind == "text":
        with path.open(encoding=stream.encoding, newline="") as handle:
            stream.delimiter = sniff_delimiter(_from_header(handle.read(HEAD_CHARS), columns))
        stream.notes += [note] if (note := delimiter_note(stream.delimiter)) else []
    else:
        stream.sheet, note = _sheet_note(path, sheet)
        stream.notes.append(note)
    head = [(n, row) for n, row in _first_rows(stream) if not isinstance(row, csv.Error)]
    found = find_header(head, lambda headers: names_email(headers, columns))
    if found is None:  # the first row with anything in it: map_columns says what is wrong
        found = next((i for i, (_, row) in enumerate(head) if not is_blank_row(row)), None)
        if found is None:
            raise UnreadableFileError(f"{origin}: the file has no header row (it is empty)")
    stream.header_row = head[found][0]
    stream.layout.above = sum(not is_blank_row(row) for _, row in head[:found])
    headers = [header_text(cell) for cell in head[found][1]]
    while headers and not headers[-1]:
        headers.pop()  # trailing empty header cells are trailing delimiters
    stream.columns = map_columns(
        headers, custom=columns, rule_attributes=rule_attributes, origin=origin
    )
    return stream


def _first_rows(stream: FileStream) -> list[tuple[int, Sequence[Any] | csv.Error]]:
    rows = []
    for number, row in stream.rows():
        rows.append((number, row))
        if number >= HEADER_SEARCH_ROWS:
            break
    return rows


def _from_header(text: str, columns: Mapping[str, str] | None) -> str:
    """The text from the header line on, so that a title above it (one cell, no
    delimiter) does not decide the delimiter."""
    lines = text.splitlines()
    for index, line in enumerate(lines[:HEADER_SEARCH_ROWS]):
        for delimiter in (",", ";", "\t"):
            cells = next(csv.reader([line], delimiter=delimiter), [])
            if len(cells) >= 2 and names_email(cells, columns):
                return "\n".join(lines[index:])
    return text


def _starts_with_bracket(path: Path, encoding: str) -> bool:
    with path.open(encoding=encoding) as handle:
        head = handle.read(4096).lstrip("\ufeff \t\r\n")
    return head.startswith("[")


# --- workbooks -----------------------------------------------------------------------


def _workbook(path: Path) -> Any:
    from python_calamine import CalamineWorkbook

    try:
        return CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine's errors are plain exceptions with a message
        raise UnreadableFileError(
            f"{path}: not a workbook leadflow can open ({exc}). Open it in its spreadsheet "
            "program and save it again as .xlsx, or export the sheet as CSV (UTF-8)."
        ) from None


def _sheet_note(path: Path, sheet: str | None) -> tuple[str, str]:
    names = list(_workbook(path).sheet_names)
    if not names:
        raise UnreadableFileError(f"{path}: the workbook has no sheets")
    if sheet is None:
        more = f" of {len(names)}; LEADFLOW_SHEET names another" if len(names) > 1 else ""
        return names[0], f"sheet {names[0]!r}{more}"
    if sheet not in names:
        raise UnreadableFileError(
            f"{path}: no sheet {sheet!r}; its sheets are {', '.join(map(repr, names))}. "
            "Set LEADFLOW_SHEET to one of them."
        )
    return sheet, f"sheet {sheet!r}"


def _workbook_rows(path: Path, sheet: str | None) -> tuple[str, list[list[str]]]:
    book = _workbook(path)
    name = sheet or book.sheet_names[0]
    rows = book.get_sheet_by_name(name).to_python(skip_empty_area=False)
    return name, [[_cell(value) for value in row] for row in rows]


def _cell(value: Any) -> str:
    """A workbook cell as a text export writes it, so a workbook and its CSV read the
    same: a whole number without `.0` (an id, a count), a date or a time in ISO 8601
    (leadflow.values reads it), a yes/no cell as TRUE or FALSE."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


# --- JSON ----------------------------------------------------------------------------


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


def _json_array_records(path: Path, encoding: str, keys: dict[str, None]) -> Iterator[RawRecord]:
    """The objects of a JSON array (or of the array under `leads`, `data`, ... of an
    object), numbered from 1; an item that is not an object is set aside."""
    origin = str(path)
    try:
        document = json.loads(path.read_text(encoding=encoding))
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(
            f"{origin}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). Save it "
            "as a JSON array of objects, or as JSON Lines (.jsonl): one object per line."
        ) from None
    if isinstance(document, dict):
        found = [document[key] for key in _WRAPPERS if isinstance(document.get(key), list)]
        document = found[0] if found else [document]
    if not isinstance(document, list):
        raise UnreadableFileError(
            f"{origin}: a JSON {type(document).__name__}, not an array of objects. Save it "
            "as a JSON array of objects, or as JSON Lines (.jsonl)."
        )
    for number, item in enumerate(document, start=1):
        if isinstance(item, dict):
            keys.update(dict.fromkeys(item))
            yield RawRecord(position=number, data=item, origin=origin)
        else:
            yield RawRecord(
                position=number,
                data={"item": json.dumps(item)[:200]},
                error=f"malformed item: a JSON {type(item).__name__}, not an object",
                origin=origin,
            )
