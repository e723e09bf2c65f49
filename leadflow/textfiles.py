"""Reading a text export whatever tool wrote it: its encoding and its delimiter.

Spreadsheets save CSV as UTF-8 with or without a byte-order mark, as UTF-16 (Excel's
"Unicode text"), or in the Windows code page (cp1252, Latin-1) in much of Europe;
European locales separate with `;`, "text" exports with a tab. Decoding tries, in
order: a byte-order mark, UTF-16 without one (every other byte zero), strict UTF-8,
then cp1252 and Latin-1, unless the bytes hold control characters no text export
has, in which case the file is not text and `UndecodableFileError` names the file
and the byte offset. The stdlib does all of it (codecs, csv.Sniffer): no new
dependency.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENCODING = "utf-8"
DEFAULT_DELIMITER = ","
DELIMITERS = ",;\t"

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Bytes that never appear in a text export (NUL and C0 controls other than tab,
# newline, carriage return, form feed).
_BINARY_RE = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
BLOCK = 1 << 20  # bytes read at a time when a file is checked without loading it


class UndecodableFileError(ValueError):
    """The file is not text in any encoding an export uses."""


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str

    @property
    def note(self) -> str | None:
        return encoding_note(self.encoding)


def encoding_note(encoding: str) -> str | None:
    """What to tell the user, when the encoding is not plain UTF-8."""
    if encoding in ("utf-8", "utf-8-sig"):
        return None
    return f"encoding {encoding}"


def decode_file(path: Path) -> Decoded:
    """The file's text and the encoding it was read with."""
    return decode_bytes(path.read_bytes(), str(path))


def decode_bytes(data: bytes, origin: str) -> Decoded:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return Decoded(_strict(data, encoding, origin), encoding)
    utf16 = _utf16_without_bom(data)
    if utf16:
        return Decoded(_strict(data, utf16, origin), utf16)
    try:
        return Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as exc:
        first_bad = (exc.start, data[exc.start])
    found = _BINARY_RE.search(data)
    if found is not None:
        raise _not_text(origin, (found.start(), data[found.start()]), first_bad)
    for encoding in ("cp1252", "latin-1"):
        try:
            return Decoded(data.decode(encoding), encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def detect_encoding(path: Path) -> str:
    """The encoding `decode_file` chooses for the file, with the same errors, found
    by reading it in blocks: memory stays flat whatever the file's size (the batch
    path streams files of any length)."""
    origin = str(path)
    with path.open("rb") as handle:
        head = handle.read(4000)
    utf16 = _utf16_without_bom(head)
    chosen = next((encoding for bom, encoding in _BOMS if head.startswith(bom)), utf16)
    if chosen:
        bad = _first_undecodable(path, chosen)
        if bad is not None:
            raise _invalid(origin, bad, chosen)
        return chosen
    first_bad = _first_undecodable(path, "utf-8")
    if first_bad is None:
        return "utf-8"
    control = _first_control(path)
    if control is not None:
        raise _not_text(origin, control, first_bad)
    return "cp1252" if _first_undecodable(path, "cp1252") is None else "latin-1"


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            yield block


def _first_undecodable(path: Path, encoding: str) -> tuple[int, int] | None:
    """Offset and value of the first byte `encoding` cannot decode, or None."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    for block in [*_blocks(path), b""]:
        pending = len(decoder.getstate()[0])  # bytes of a character split across blocks
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            return offset - pending + exc.start, exc.object[exc.start]
        offset += len(block)
    return None


def _first_control(path: Path) -> tuple[int, int] | None:
    offset = 0
    for block in _blocks(path):
        found = _BINARY_RE.search(block)
        if found is not None:
            return offset + found.start(), block[found.start()]
        offset += len(block)
    return None


def _not_text(origin: str, control: tuple[int, int], first_bad: tuple[int, int]) -> ValueError:
    return UndecodableFileError(
        f"{origin}: not a text file: byte 0x{control[1]:02x} at offset {control[0]} is a "
        f"control character, and byte 0x{first_bad[1]:02x} at offset {first_bad[0]} is not "
        "UTF-8. Export the sheet again as CSV (UTF-8)."
    )


def _invalid(origin: str, bad: tuple[int, int], encoding: str) -> ValueError:
    return UndecodableFileError(
        f"{origin}: byte 0x{bad[1]:02x} at offset {bad[0]} is not valid "
        f"{encoding} (the file starts like {encoding}). Export it again as CSV (UTF-8)."
    )


def _utf16_without_bom(data: bytes) -> str | None:
    sample = data[:4000]
    if len(sample) < 4 or len(sample) % 2:
        return None
    even_zero = sample[0::2].count(0) / (len(sample) / 2)
    odd_zero = sample[1::2].count(0) / (len(sample) / 2)
    if odd_zero > 0.4 and even_zero < 0.05:
        return "utf-16-le"
    if even_zero > 0.4 and odd_zero < 0.05:
        return "utf-16-be"
    return None


def _strict(data: bytes, encoding: str, origin: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _invalid(origin, (exc.start, data[exc.start]), encoding) from None


def sniff_delimiter(text: str) -> str:
    """`,`, `;` or tab: what csv.Sniffer finds in the first lines, checked against the
    header (a delimiter the header does not contain cannot be right), else the one
    the header holds most of, else a comma."""
    lines = text.splitlines()
    header = lines[0] if lines else ""
    try:
        found = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = None
    if found and found in header:
        return found
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else DEFAULT_DELIMITER


def delimiter_note(delimiter: str) -> str | None:
    if delimiter == DEFAULT_DELIMITER:
        return None
    return "separated by " + {"\t": "tabs", ";": "semicolons"}.get(delimiter, repr(delimiter))
