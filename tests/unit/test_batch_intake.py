"""A file streamed in pieces gives the same leads whatever the piece size: one per
person with later rows merged in, the same rows set aside and merged, whatever the
encoding, delimiter or format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadflow.flows import batch_intake
from leadflow.flows.batch_intake import StreamedIntake
from leadflow.integrations.file_source import open_file, read_file

CSV = (
    "E-mail;First Name;Company;Employees\n"
    "ann@example.org;Ann;Acme;10\n"
    "bob@example.org;Bob;Bobco;20\n"
    "not-an-email;Nobody;X;1\n"
    "ANN@Example.org;;Acme Corp;\n"
    "cid@example.org;Cid;Cidco;30\n"
    "ragged;row\n"
    "dee@example.org;Dée;Deeco;40\n"
    "ann@example.org;Annie;;12\n"
    "bob@example.org;Robert;Bobco;21\n"
)


def _jsonl() -> str:
    rows = [
        {"email": "ann@example.org", "first_name": "Ann"},
        {"email": "bob@example.org", "company": "Bobco"},
        "not an object",
        {"email": "ann@example.org", "company": "Acme", "Job Title": "CTO"},
    ]
    return "\n".join(json.dumps(row) for row in rows) + "\n{broken\n"


def _both(path: Path, size: int, *, collisions: bool = False) -> tuple:
    whole = StreamedIntake(open_file(path)).whole()
    intake = StreamedIntake(open_file(path))
    total = intake.count()
    pieces = list(intake.pieces(size))
    streamed = [lead for piece in pieces for lead in piece.leads]
    assert len(streamed) == len(whole.leads)
    assert collisions or total == len(streamed)  # the count is of distinct hashes
    assert all(len(piece.leads) <= size for piece in pieces)
    by_id = {lead.id: lead.model_dump() for lead in streamed}
    assert by_id == {lead.id: lead.model_dump() for lead in whole.leads}
    bad = [(r.position, r.reason) for piece in pieces for r in piece.bad]
    assert bad == [(r.position, r.reason) for r in whole.bad]
    assert [m for piece in pieces for m in piece.merged] == whole.merged
    return whole, streamed


@pytest.mark.parametrize("size", [1, 2, 100])
def test_a_cp1252_semicolon_csv_streams_to_the_same_leads(tmp_path, size) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(CSV.encode("cp1252"))
    whole, streamed = _both(path, size)
    ann = next(lead for lead in streamed if lead.email == "ann@example.org")
    assert (ann.first_name, ann.company, ann.employee_count) == ("Annie", "Acme Corp", 12)
    assert len(whole.merged) == 3 and len(whole.bad) == 2
    assert open_file(path).report() == read_file(path).report()
    assert "cp1252" in open_file(path).report() and "semicolons" in open_file(path).report()


def test_a_jsonl_file_streams_to_the_same_leads_with_keys_from_any_line(tmp_path) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text(_jsonl())
    _whole, streamed = _both(path, 1)
    ann = next(lead for lead in streamed if lead.email == "ann@example.org")
    assert ann.title == "CTO"  # "Job Title" appears only on the fourth line


def test_a_hash_collision_holds_leads_until_every_row_is_read_but_loses_none(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(batch_intake, "_key", lambda email: 7)  # every email collides
    path = tmp_path / "export.csv"
    path.write_bytes(CSV.encode("cp1252"))
    _both(path, 2, collisions=True)


def test_an_undecodable_file_is_refused_before_any_row_as_the_per_lead_reader_does(
    tmp_path,
) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ValueError) as streamed:
        open_file(path)
    with pytest.raises(ValueError) as whole:
        read_file(path)
    assert str(streamed.value) == str(whole.value)
