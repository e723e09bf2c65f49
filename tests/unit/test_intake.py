"""Taking records in: Lead normalisation, rejections, the file reader, the quarantine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from leadflow.intake import (
    FieldWarning,
    Quarantine,
    RawRecord,
    Reading,
    Rejection,
    validate_record,
)
from leadflow.integrations.file_source import read_records
from leadflow.models import Lead, derive_lead_id, lead_id_of

# --- Lead.from_record ---------------------------------------------------------------


def test_email_trimmed_and_lowercased_domain_from_email() -> None:
    lead = Lead.from_record({"email": "  Jane.Doe@Example.COM \t"})
    assert lead.email == "jane.doe@example.com"
    assert lead.domain == "example.com"


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        pytest.param("www.Acme.test", "acme.test", id="www-stripped"),
        pytest.param("  WWW.acme.test ", "acme.test", id="www-upper-padded"),
        pytest.param("shop.acme.test", "shop.acme.test", id="other-subdomain-kept"),
        pytest.param("wwwacme.test", "wwwacme.test", id="www-without-dot-kept"),
    ],
)
def test_explicit_domain_normalised(domain: str, expected: str) -> None:
    lead = Lead.from_record({"email": "jo@mail.other.test", "domain": domain})
    assert lead.domain == expected


def test_www_stripped_from_email_derived_domain() -> None:
    assert Lead.from_record({"email": "jo@www.acme.test"}).domain == "acme.test"


@pytest.mark.parametrize(
    ("country", "expected"),
    [("us", "US"), (" de ", "DE"), ("Gb", "GB"), ("", None), (None, None)],
    ids=["lower", "padded", "mixed", "empty", "none"],
)
def test_country_uppercased(country: str | None, expected: str | None) -> None:
    assert Lead.from_record({"email": "jo@acme.test", "country": country}).country == expected


def test_id_derived_deterministically_and_stable() -> None:
    first = Lead.from_record({"email": "Jo@Acme.test", "source": " Webinar "})
    second = Lead.from_record({"email": "  jo@acme.TEST", "source": "webinar", "title": "CEO"})
    assert first.id == second.id == derive_lead_id("jo@acme.test", "webinar")
    assert first.id.startswith("lead_") and len(first.id) == len("lead_") + 16
    # the same person from another source is another lead
    assert Lead.from_record({"email": "jo@acme.test", "source": "referral"}).id != first.id
    assert Lead.from_record({"email": "jo@acme.test"}).id == derive_lead_id("jo@acme.test", None)


def test_lead_id_of_agrees_with_validation() -> None:
    raw = {"email": " Jo@Acme.test ", "source": "Webinar"}
    assert lead_id_of(raw) == Lead.from_record(raw).id
    assert lead_id_of({"id": " x-1 ", "email": "jo@acme.test"}) == "x-1"
    assert lead_id_of({"email": "not-an-email"}) is None


@pytest.mark.parametrize("raw_id", ["crm-42", "  crm-42 "], ids=["plain", "padded"])
def test_explicit_id_kept(raw_id: str) -> None:
    lead = Lead.from_record({"id": raw_id, "email": "jo@acme.test", "source": "webinar"})
    assert lead.id == "crm-42"


def test_empty_id_means_derived() -> None:
    lead = Lead.from_record({"id": "", "email": "jo@acme.test"})
    assert lead.id == derive_lead_id("jo@acme.test", None)


def test_unknown_columns_become_attributes() -> None:
    lead = Lead.from_record(
        {
            "email": "jo@acme.test",
            "demo_requested": "yes",
            " pricing_page_views ": "4",
            "blank": "",
            "attributes": {"nested": 1, "demo_requested": "no"},
        }
    )
    assert lead.attributes == {"demo_requested": "no", "pricing_page_views": "4", "nested": 1}


def test_empty_strings_are_absent() -> None:
    lead = Lead.from_record(
        {
            "email": "jo@acme.test",
            "first_name": "",
            "title": "",
            "employee_count": "",
            "created_at": "",
            "source": "",
            "company": None,
        }
    )
    assert (lead.first_name, lead.title, lead.employee_count, lead.created_at) == (
        None,
        None,
        None,
        None,
    )
    assert lead.source is None and lead.company is None
    assert lead.id == derive_lead_id("jo@acme.test", None)
    assert lead.attributes == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            "2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC), id="naive-is-utc"
        ),
        pytest.param("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC), id="zulu"),
        pytest.param(
            "2024-05-01T12:00:00+02:00",
            datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
            id="offset-kept",
        ),
        pytest.param(
            datetime(2024, 5, 1, 10), datetime(2024, 5, 1, 10, tzinfo=UTC), id="naive-datetime"
        ),
    ],
)
def test_created_at_timezone(raw: object, expected: datetime) -> None:
    created = Lead.from_record({"email": "jo@acme.test", "created_at": raw}).created_at
    assert created == expected
    assert created is not None and created.utcoffset() == expected.utcoffset()


def test_employee_count_parsed() -> None:
    assert (
        Lead.from_record({"email": "jo@acme.test", "employee_count": "250"}).employee_count == 250
    )


# --- validate_record ------------------------------------------------------------------


def reject(data: dict, *, error: str | None = None, position: int = 7) -> Rejection:
    result = validate_record(
        RawRecord(origin="leads.csv", position=position, data=data, error=error)
    )
    assert isinstance(result, Rejection), result
    return result


@pytest.mark.parametrize(
    ("data", "field", "fragments", "lead_ref"),
    [
        pytest.param({"first_name": "Jo"}, "email", ["required, missing"], "?", id="no-email"),
        pytest.param(
            {"email": "", "first_name": "Jo"}, "email", ["required, missing"], "?", id="empty"
        ),
        pytest.param(
            {"email": "not-an-email"},
            "email",
            ["'not-an-email' is not an email address"],
            "not-an-email",
            id="invalid-email",
        ),
        pytest.param(
            {"email": "jo@acme"},
            "email",
            ["is not an email address"],
            "jo@acme",
            id="email-without-dot",
        ),
    ],
)
def test_rejections_name_field_and_record(
    data: dict, field: str, fragments: list[str], lead_ref: str
) -> None:
    rejection = reject(data)
    assert rejection.reason.startswith(f"{field}: ")
    for fragment in fragments:
        assert fragment in rejection.reason
    assert rejection.where == "leads.csv row 7"
    assert rejection.lead_ref == lead_ref
    assert rejection.data == data
    # derived fields are not news when the email is the problem
    for derived in ("id:", "domain:"):
        assert derived not in rejection.reason


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        pytest.param({"employee_count": "lots"}, "employee_count", "not a number", id="lots"),
        pytest.param({"employee_count": "-5"}, "employee_count", "negative", id="negative"),
        pytest.param({"created_at": "yesterday"}, "created_at", "not a date", id="bad-date"),
        pytest.param({"company": "y" * 256}, "company", "at most 255", id="long-company"),
        pytest.param({"id": "i" * 300}, "id", "at most 255", id="long-id"),
    ],
)
def test_an_unreadable_optional_field_is_dropped_with_a_warning(
    data: dict, field: str, problem: str
) -> None:
    """Only a missing or unusable email sets a lead aside: any other field that cannot
    be read is dropped, with a warning naming the row, the field and the value."""
    warnings: list[FieldWarning] = []
    record = {"id": "crm-9", "email": "jo@acme.test", "title": "CTO", **data}
    lead = validate_record(RawRecord(origin="leads.csv", position=7, data=record), warnings)
    assert isinstance(lead, Lead) and lead.title == "CTO"
    assert getattr(lead, field) in (None, derive_lead_id("jo@acme.test", None))
    (warning,) = warnings
    assert (warning.field, warning.position, warning.lead_ref) == (field, 7, "jo@acme.test")
    assert problem in warning.problem
    assert warning.text.startswith(f"leads.csv row 7 (jo@acme.test): {field} '")
    assert warning.text.endswith("dropped, the lead goes on") or "its email gives" in warning.text


def test_values_as_exports_write_them_need_no_warning() -> None:
    warnings: list[FieldWarning] = []
    lead = validate_record(
        RawRecord(
            data={
                "email": "jo@acme.test",
                "employee_count": "10,001+",
                "created_at": "11/20/2026 9:14 AM",
                "country": "United States",
            }
        ),
        warnings,
    )
    assert isinstance(lead, Lead) and warnings == []
    assert (lead.employee_count, lead.country) == (10001, "US")
    assert lead.created_at == datetime(2026, 11, 20, 9, 14, tzinfo=UTC)


def test_an_unknown_country_is_kept_as_written_with_a_warning() -> None:
    warnings: list[FieldWarning] = []
    lead = validate_record(RawRecord(data={"email": "jo@acme.test", "country": "Narnia"}), warnings)
    assert isinstance(lead, Lead) and lead.country == "Narnia"
    (warning,) = warnings
    assert warning.outcome == "kept as written" and warning.field == "country"


def test_a_rule_column_that_is_not_yes_or_no_is_dropped() -> None:
    warnings: list[FieldWarning] = []
    reading = Reading(flags=frozenset({"demo_requested"}), numbers=frozenset({"views"}))
    data = {"email": "jo@acme.test", "demo_requested": "maybe", "views": "1,250", "x": "?"}
    lead = validate_record(RawRecord(data=data), warnings, reading)
    assert isinstance(lead, Lead)
    assert lead.attributes == {"views": "1,250", "x": "?"}
    assert [(w.field, w.value) for w in warnings] == [("demo_requested", "'maybe'")]


def test_warnings_are_logged_when_no_list_is_given() -> None:
    data = {"email": "jo@acme.test", "employee_count": "x"}
    with capture_logs() as logged:
        lead = validate_record(RawRecord(origin="webhook", position=3, data=data))
    assert isinstance(lead, Lead) and lead.employee_count is None
    (event,) = [e for e in logged if e["event"] == "field not read"]
    assert event["log_level"] == "warning"
    assert event["detail"].startswith("webhook row 3 (jo@acme.test): employee_count 'x': ")


def test_several_errors_all_named() -> None:
    rejection = reject({"email": "bad", "employee_count": "lots"})
    assert rejection.reason.startswith("email: ")
    assert "; employee_count: " in rejection.reason
    assert "domain" not in rejection.reason and "id:" not in rejection.reason


def test_source_level_parse_error_is_the_reason() -> None:
    rejection = reject(
        {"column_1": "a", "column_2": "b"}, error="malformed row: 2 fields, the header has 3"
    )
    assert rejection.reason == "malformed row: 2 fields, the header has 3"
    assert rejection.where == "leads.csv row 7"
    assert rejection.lead_ref == "?"


def test_where_without_origin() -> None:
    rejection = validate_record(RawRecord(position=3, data={}))
    assert isinstance(rejection, Rejection)
    assert rejection.where == "record row 3"


def test_valid_record_is_a_lead() -> None:
    result = validate_record(RawRecord(origin="x.csv", position=2, data={"email": "jo@acme.test"}))
    assert isinstance(result, Lead)
    assert result.email == "jo@acme.test"


def test_rejection_key_is_stable() -> None:
    data = {"email": "bad", "title": "CEO"}
    first = reject(data)
    assert reject(dict(reversed(list(data.items())))).key == first.key  # key order irrelevant
    assert len(first.key) == 24
    assert reject(data, position=8).key != first.key
    assert reject({"email": "bad", "title": "CTO"}).key != first.key
    other_origin = validate_record(RawRecord(origin="other.csv", position=7, data=data))
    assert isinstance(other_origin, Rejection) and other_origin.key != first.key


# --- read_records ---------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_rows_numbered_from_header(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "leads.csv",
        "email, title ,country\na@acme.test,CEO,US\n\n , , \nb@acme.test,CTO\nc@acme.test,VP,DE\n",
    )
    records = read_records(path)
    assert [r.position for r in records] == [2, 5, 6]
    assert all(r.origin == str(path) for r in records)
    assert records[0].data == {"email": "a@acme.test", "title": "CEO", "country": "US"}
    assert records[0].error is None
    short = records[1]  # a spreadsheet trims a row's trailing empty cells: read as empty
    assert short.error is None and short.missing == ["country"]
    assert short.data == {"email": "b@acme.test", "title": "CTO", "country": ""}
    assert records[2].data["country"] == "DE" and records[2].error is None


def test_csv_too_many_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "email,title\na@acme.test,CEO,extra\n")
    (record,) = read_records(path)
    assert record.error == "malformed row: 3 fields, the header has 2"
    assert record.position == 2


def test_csv_bom_handled(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "email,country\na@acme.test,US\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    (record,) = read_records(path)
    assert record.data == {"email": "a@acme.test", "country": "US"}


def test_csv_quoted_newline_and_crlf(tmp_path: Path) -> None:
    path = write(
        tmp_path, "leads.csv", 'email,title\r\na@acme.test,"Head of\r\nSales"\r\nb@acme.test,VP\r\n'
    )
    records = read_records(path)
    assert [r.data["email"] for r in records] == ["a@acme.test", "b@acme.test"]
    assert records[0].data["title"] == "Head of\r\nSales"
    assert all(r.error is None for r in records)


def test_csv_without_header(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no header row"):
        read_records(write(tmp_path, "empty.csv", ""))


def test_jsonl_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "leads.jsonl",
        json.dumps({"email": "a@acme.test", "employee_count": 10})
        + "\n\n"
        + "{not json\n"
        + "[1, 2]\n"
        + '"just a string"\n'
        + json.dumps({"email": "b@acme.test"})
        + "\n",
    )
    records = read_records(path)
    assert [r.position for r in records] == [1, 3, 4, 5, 6]
    assert records[0].data == {"email": "a@acme.test", "employee_count": 10}
    assert records[0].error is None
    assert records[1].error is not None and records[1].error.startswith("malformed line: not JSON")
    assert records[1].data == {"line": "{not json"}
    assert records[2].error == "malformed line: a JSON list, not an object"
    assert records[3].error == "malformed line: a JSON str, not an object"
    assert records[4].data == {"email": "b@acme.test"} and records[4].error is None


def test_ndjson_suffix_and_case(tmp_path: Path) -> None:
    path = write(tmp_path, "LEADS.NDJSON", '{"email": "a@acme.test"}\n')
    assert [r.data for r in read_records(path)] == [{"email": "a@acme.test"}]


@pytest.mark.parametrize("name", ["leads.pdf", "leads.docx", "leads"])
def test_a_file_leadflow_does_not_read_says_what_it_reads(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"leadflow reads \.csv, \.tsv, \.txt, \.xlsx") as err:
        read_records(write(tmp_path, name, "email\na@acme.test\n"))
    assert str(tmp_path / name) in str(err.value) and "Export the list" in str(err.value)


def test_records_keep_their_row(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", "email\na@acme.test\nb@acme.test\n")
    assert [(r.position, r.data["email"]) for r in read_records(path)] == [
        (2, "a@acme.test"),
        (3, "b@acme.test"),
    ]


# --- Quarantine -----------------------------------------------------------------------


async def test_quarantine_round_trip(tmp_path: Path) -> None:
    store = Quarantine(f"sqlite+aiosqlite:///{tmp_path}/q.db")
    assert await store.pending() == []
    bad = reject({"email": "bad"}, position=2)
    worse = reject({"email": "jo@acme", "employee_count": "lots"}, position=3)

    await store.put([bad, worse])
    await store.put([bad])  # a rerun sets the same record aside again
    await store.put([])

    pending = await store.pending()
    assert [r.key for r in pending] == [bad.key, worse.key]
    assert pending[0] == bad
    assert pending[1].reason == worse.reason and pending[1].data == worse.data

    await store.mark_replayed([bad.key])
    await store.mark_replayed([])
    assert [r.key for r in await store.pending()] == [worse.key]


async def test_quarantine_survives_a_new_instance(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/q.db"
    rejection = reject({"email": "bad"})
    await Quarantine(url).put([rejection])
    assert [r.key for r in await Quarantine(url).pending()] == [rejection.key]
