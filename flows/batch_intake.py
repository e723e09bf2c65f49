"""A lead file read in flat memory, one lead per person: how every file run reads.

Rows with the same email are one person, merged into the first row's lead (later
non-empty values win, so the latest export counts). Holding the whole file to find
them would cost memory in proportion to the file; instead the file is read twice, a
row at a time:

1. `count()`: every valid row's email is kept as an 8-byte hash (in arrays, not
   Python objects), and the hashes seen more than once are found: usually few.
2. `pieces()`: each lead is yielded as its row is read, except a repeated person's
   rows, which are held and merged (later non-empty values win) until that
   person's last row, then yielded as one lead with the
   first row's id.

The first pass also sees every `created_at` value, so the order of the file's `d/m/y`
dates is decided from all of them (leadflow.values.DateColumn) before the second
pass reads any; fields that cannot be read are dropped with a warning there
(`Piece.warnings`), and the lead goes on.

Memory: 8 bytes per row during the first pass, the repeated people during the
second; the leads themselves only a piece at a time.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from leadflow.flows.summary import Merged
from leadflow.intake import FieldWarning, Reading, Rejection, validate_record
from leadflow.integrations.file_source import FileStream
from leadflow.models import Lead
from leadflow.values import DateColumn

_BUCKETS = 256  # the first pass's hashes are kept in this many arrays
_MASK = (1 << 64) - 1


def _key(email: str) -> int:
    """A 64-bit hash of a normalised email; stable within the process (both passes
    run in it). A collision only holds two people's leads until both are complete."""
    return hash(email) & _MASK


@dataclass
class Piece:
    """What the next rows of the file gave: up to `size` leads, and the rows set
    aside or merged on the way. `rows` holds each lead's first row as read (by lead
    id), for a shadow run, which hands the current process the record, not the lead."""

    leads: list[Lead] = field(default_factory=list)
    bad: list[Rejection] = field(default_factory=list)
    merged: list[Merged] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)  # lead id -> its first row
    warnings: list[FieldWarning] = field(default_factory=list)  # fields left out, leads kept

    def __len__(self) -> int:
        return len(self.leads) + len(self.bad) + len(self.merged)


class StreamedIntake:
    def __init__(self, stream: FileStream, reading: Reading | None = None) -> None:
        self.stream = stream
        self.reading = reading or Reading()
        self.repeated: dict[int, int] = {}  # hash -> rows with that email

    def count(self) -> int:
        """The first pass: the number of leads (people) in the file, for the progress
        bar (people whose emails' hashes collide count once)."""
        buckets = [array("Q") for _ in range(_BUCKETS)]
        rows = 0
        dates = DateColumn()
        for record in self.stream.records():
            dates.see(record.data.get("created_at"))
            checked = validate_record(record, [], self.reading)
            if isinstance(checked, Lead):
                key = _key(checked.email)
                buckets[key % _BUCKETS].append(key)
                rows += 1
        for bucket in buckets:
            self.repeated.update((k, n) for k, n in Counter(bucket).items() if n > 1)
        self._decide_dates(dates)
        return rows - sum(self.repeated.values()) + len(self.repeated)

    def _decide_dates(self, dates: DateColumn) -> None:
        """The order of the file's `d/m/y` dates, from all of them; said in the report
        when the file has such dates."""
        order, why = dates.decide(self.reading.date_order)
        self.reading = replace(self.reading, date_order=order)
        note = f"dates {why}"
        if dates.numeric and note not in self.stream.notes:
            self.stream.notes.append(note)

    def whole(self) -> Piece:
        """Every lead, bad row and merge of the file in one piece (a small file, or a
        test): both passes, then everything the second yields."""
        self.count()
        whole = Piece()
        for piece in self._pieces(1_000_000):
            whole.leads += piece.leads
            whole.bad += piece.bad
            whole.merged += piece.merged
            whole.rows.update(piece.rows)
            whole.positions.update(piece.positions)
            whole.warnings += piece.warnings
        return whole

    def pieces(self, size: int) -> Iterator[Piece]:
        """The second pass (after `count`), at most `size` leads at a time."""
        for piece in self._pieces(size):
            for start in range(0, max(len(piece.leads), 1), size):
                leads = piece.leads[start : start + size]
                rows = {lead.id: piece.rows[lead.id] for lead in leads}
                positions = {lead.id: piece.positions[lead.id] for lead in leads}
                first = start == 0
                yield Piece(
                    leads,
                    piece.bad if first else [],
                    piece.merged if first else [],
                    rows,
                    positions,
                    piece.warnings if first else [],
                )

    def _pieces(self, size: int) -> Iterator[Piece]:
        left = dict(self.repeated)
        held: dict[int, dict[str, tuple[Lead, int, dict[str, Any]]]] = {}
        piece = Piece()

        def add(lead: Lead, data: dict[str, Any], row: int) -> None:
            piece.leads.append(lead)
            piece.rows[lead.id] = data
            piece.positions[lead.id] = row

        for record in self.stream.records():
            checked = validate_record(record, piece.warnings, self.reading)
            if isinstance(checked, Rejection):
                piece.bad.append(checked)
            elif (key := _key(checked.email)) not in left:
                add(checked, record.data, record.position)
            else:
                people = held.setdefault(key, {})
                first = people.get(checked.email)
                if first is None:
                    people[checked.email] = (checked, record.position, record.data)
                else:
                    lead, row, data = first
                    people[checked.email] = (merge_rows(lead, checked), row, data)
                    piece.merged.append(
                        Merged(position=record.position, email=checked.email, into_row=row)
                    )
                left[key] -= 1
                if not left[key]:
                    del left[key]
                    for lead, row, data in held.pop(key).values():
                        add(lead, data, row)
            if len(piece.leads) >= size or len(piece) >= 10 * size:
                yield piece
                piece = Piece()
        for people in held.values():
            for lead, row, data in people.values():
                add(lead, data, row)
        if len(piece):
            yield piece


def merge_rows(first: Lead, later: Lead) -> Lead:
    """`first` with `later`'s non-empty values; the id stays the first row's."""
    values = {
        name: value
        for name, value in later
        if name not in ("id", "attributes") and value is not None and name in later.model_fields_set
    }
    return first.model_copy(
        update={**values, "attributes": {**first.attributes, **later.attributes}}
    )
