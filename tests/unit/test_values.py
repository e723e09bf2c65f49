"""Values as exports write them (leadflow.values), and the promise that goes with
them: a value that cannot be read never sets a lead aside (property tests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.intake import FieldWarning, RawRecord, Reading, validate_record
from leadflow.models import Lead
from leadflow.values import (
    country_code,
    decide_date_order,
    parse_bool,
    parse_count,
    parse_datetime,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("250", 250),
        ("1,250", 1250),
        ("1.250", 1250),  # a German export
        ("1 250", 1250),
        ("250.0", 250),
        ("51-200", 51),  # a range is its lower bound
        ("1,001-5,000", 1001),
        ("10,001+", 10001),
        ("5K-10K", 5000),
        ("201 to 500 employees", 201),
        ("<10", 1),
        ("Over 1000", 1000),
    ],
)
def test_company_sizes_as_exports_write_them(text: str, count: int) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["lots", "", "500-200", "-5", "12.5"])
def test_a_size_that_is_not_one_says_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_count(text)


def test_numbers_with_either_decimal_mark() -> None:
    assert parse_number("1,250.5") == 1250.5
    assert parse_number("1.250,5") == 1250.5
    assert parse_number("1.2k") == 1200


@pytest.mark.parametrize(
    ("text", "value"),
    [("Yes", True), ("no", False), ("TRUE", True), ("0", False), ("1", True), ("", False)],
)
def test_booleans(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize(
    ("text", "order", "moment"),
    [
        ("2026-11-20T14:03:11Z", None, datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)),
        ("11/20/2026", None, datetime(2026, 11, 20, tzinfo=UTC)),
        ("11/3/2026", "MDY", datetime(2026, 11, 3, tzinfo=UTC)),
        ("11/3/2026", "DMY", datetime(2026, 3, 11, tzinfo=UTC)),
        ("20.11.2026 09:14", "DMY", datetime(2026, 11, 20, 9, 14, tzinfo=UTC)),
        ("Nov 20, 2026", None, datetime(2026, 11, 20, tzinfo=UTC)),
    ],
)
def test_dates_in_us_european_and_iso_forms(text, order, moment) -> None:
    assert parse_datetime(text, order) == moment


def test_a_columns_date_order_is_decided_from_all_its_values() -> None:
    assert decide_date_order(["11/3/2026", "11/20/2026"]) == "MDY"
    assert decide_date_order(["03/11/2026", "20/11/2026"]) == "DMY"
    assert decide_date_order(["03/11/2026"], preferred="DMY") == "DMY"
    assert decide_date_order(["03.11.2026"]) == "DMY"  # dots: the European form


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("United States", "US"),
        ("USA", "US"),
        ("us", "US"),
        ("U.K.", "GB"),
        ("Germany", "DE"),
        ("Deutschland", "DE"),
        ("Korea, Republic of", "KR"),
        ("South Korea", "KR"),
        ("DEU", "DE"),
    ],
)
def test_countries_to_iso_codes(text: str, code: str) -> None:
    assert country_code(text) == code


def test_a_country_leadflow_does_not_know_is_kept_as_written_with_a_warning() -> None:
    warnings: list[FieldWarning] = []
    lead = validate_record(
        RawRecord(origin="f.csv", position=4, data={"email": "a@b.test", "country": "Narnia"}),
        warnings,
    )
    assert isinstance(lead, Lead) and lead.country == "Narnia"  # never upper-cased
    assert [w.field for w in warnings] == ["country"] and "kept as written" in warnings[0].text


# --- properties: a value that cannot be read never sets a lead aside ------------------

text_values = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[0-9]{1,6}([,.][0-9]{3})?(-[0-9]{1,6})?\+?", fullmatch=True),
    st.from_regex(
        r"[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}( [0-9]{1,2}:[0-9]{2})?", fullmatch=True
    ),
)


@given(size=text_values, created=text_values, country=text_values, flag=text_values)
@settings(max_examples=150, deadline=None)
def test_an_unreadable_optional_value_never_sets_the_lead_aside(size, created, country, flag):
    warnings: list[FieldWarning] = []
    data = {
        "email": "ada@example.org",
        "employee_count": size,
        "created_at": created,
        "country": country,
        "demo_requested": flag,
    }
    reading = Reading(flags=frozenset({"demo_requested"}))
    lead = validate_record(RawRecord(origin="f.csv", position=2, data=data), warnings, reading)
    assert isinstance(lead, Lead), lead
    for warning in warnings:  # each warning names the row, the field and the value
        assert warning.position == 2 and warning.field and "f.csv row 2" in warning.text


@given(st.text(max_size=30))
@settings(max_examples=200, deadline=None)
def test_the_parsers_answer_a_value_or_a_value_error(text: str) -> None:
    for parse in (parse_count, parse_number, parse_bool, parse_datetime):
        try:
            parse(text)
        except ValueError:
            pass
    assert country_code(text) is None or len(country_code(text) or "") == 2
