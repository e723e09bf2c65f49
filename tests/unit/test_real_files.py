"""Files as teams export them: headers, delimiters, encodings (issue 6, items 1 and 3)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from leadflow.columns import ColumnError, map_columns, normalise
from leadflow.intake import validate_record
from leadflow.integrations.file_source import read_file
from leadflow.models import Lead
from leadflow.textfiles import UndecodableFileError


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def only_lead(path: Path, **kwargs) -> Lead:
    (record,) = read_file(path, **kwargs).records
    lead = validate_record(record)
    assert isinstance(lead, Lead), lead
    return lead


def test_normalise_folds_case_spaces_and_punctuation() -> None:
    assert normalise(" E-mail Address ") == "e_mail_address"
    assert normalise("Person - Email") == "person_email"
    assert normalise("What's your email?") == "what_s_your_email"


def test_a_spreadsheet_header_maps_to_lead_fields_and_employees_is_not_dropped(tmp_path) -> None:
    path = write(
        tmp_path,
        "export.csv",
        "Email,First Name,Last Name,Company,Job Title,Country,employees\n"
        "ada@example.org,Ada,Lovelace,Analytical,CTO,GB,500\n",
    )
    lead = only_lead(path)
    assert (lead.email, lead.first_name, lead.last_name) == ("ada@example.org", "Ada", "Lovelace")
    assert (lead.company, lead.title, lead.country) == ("Analytical", "CTO", "GB")
    assert lead.employee_count == 500


@pytest.mark.parametrize(
    ("tool", "header", "row"),
    [
        (
            "hubspot",
            "Record ID,First Name,Last Name,Email,Job Title,Company Name,Number of Employees,"
            "Create Date,Original Source",
            "901,Ada,Lovelace,ada@example.org,CTO,Analytical,500,2026-11-22 08:00,Organic Search",
        ),
        (
            "salesforce",
            "Lead ID,First Name,Last Name,Title,Company / Account,Email,Mailing Country,"
            "Lead Source,Created Date",
            "00Q1,Ada,Lovelace,CTO,Analytical,ada@example.org,GB,Web,2026-11-22",
        ),
        (
            "pipedrive",
            "Person - Name,Person - Email,Person - Job title,Organization - Name,"
            "Organization - Number of employees",
            "Ada Lovelace,ada@example.org,CTO,Analytical,500",
        ),
        (
            "typeform",
            "#,What is your work email address?,Your first name,Company name,Submitted At",
            "x1,ada@example.org,Ada,Analytical,2026-11-22 08:00:00",
        ),
        (
            "google-forms",
            "Timestamp,Email Address,First name,Organisation",
            "2026-11-22 08:00:00,ada@example.org,Ada,Analytical",
        ),
    ],
)
def test_exports_of_common_crms_and_form_tools(tmp_path, tool, header, row) -> None:
    lead = only_lead(write(tmp_path, f"{tool}.csv", f"{header}\n{row}\n"))
    assert lead.email == "ada@example.org"
    assert lead.company in ("Analytical", None) or tool == "salesforce"


def test_a_mapping_in_settings_names_any_other_header(tmp_path) -> None:
    path = write(tmp_path, "own.csv", "Correo,Empresa,Pidió demo\nana@example.es,Acme,yes\n")
    lead = only_lead(
        path,
        columns={"Correo": "email", "empresa": "company", "Pidió demo": "demo_requested"},
        rule_attributes=["demo_requested"],
    )
    assert (lead.email, lead.company) == ("ana@example.es", "Acme")
    assert lead.attributes == {"demo_requested": "yes"}


def test_a_header_a_rule_reads_is_matched_by_its_normalised_name(tmp_path) -> None:
    path = write(tmp_path, "x.csv", "email,Demo Requested,Notes\nbo@example.org,yes,hi\n")
    contents = read_file(path, rule_attributes=["demo_requested"])
    assert contents.records[0].data == {
        "email": "bo@example.org",
        "demo_requested": "yes",
        "Notes": "hi",
    }
    report = contents.report()
    assert "columns used: email" in report
    assert "Demo Requested -> demo_requested" in report
    assert "columns ignored (no lead field or scoring rule reads them; map one with " in report
    assert report.endswith("LEADFLOW_COLUMNS): Notes")


def test_the_report_says_which_columns_were_used_mapped_and_ignored() -> None:
    mapping = map_columns(["Email", "company", "Job Title", "Favourite colour", "Work Email"])
    assert mapping.used == ["company"]
    assert mapping.mapped == [("Email", "email"), ("Job Title", "title")]
    assert mapping.duplicates == [("Work Email", "email")]
    assert mapping.ignored == ["Favourite colour"]


def test_no_email_column_stops_with_the_headers_found(tmp_path) -> None:
    path = write(tmp_path, "names.csv", "Name,Phone\nAda,123\n")
    with pytest.raises(ColumnError) as caught:
        read_file(path)
    message = str(caught.value)
    assert str(path) in message and "'Name', 'Phone'" in message
    assert "LEADFLOW_COLUMNS" in message


@pytest.mark.parametrize(
    ("name", "delimiter", "note"),
    [("semi.csv", ";", "separated by semicolons"), ("tabs.csv", "\t", "separated by tabs")],
)
def test_semicolons_and_tabs_are_detected_and_reported(tmp_path, name, delimiter, note) -> None:
    text = delimiter.join(["email", "first_name", "company", "title"]) + "\n"
    text += delimiter.join(["bob@example.org", "Bob", "Acme, Inc", "CTO"]) + "\n"
    contents = read_file(write(tmp_path, name, text))
    lead = validate_record(contents.records[0])
    assert isinstance(lead, Lead)
    assert (lead.email, lead.company) == ("bob@example.org", "Acme, Inc")
    assert note in contents.report()


def test_a_plain_utf8_comma_file_reports_no_encoding_or_delimiter(tmp_path) -> None:
    contents = read_file(write(tmp_path, "plain.csv", "email\na@example.org\n"))
    assert "read as" not in contents.report()


@pytest.mark.parametrize(
    ("encoding", "prefix", "reported"),
    [
        ("cp1252", b"", "encoding cp1252"),
        ("utf-8", codecs.BOM_UTF8, None),
        ("utf-16", b"", "encoding utf-16"),  # Python writes the BOM itself
        ("utf-16-le", b"", "encoding utf-16-le"),  # no BOM
    ],
)
def test_encodings_of_spreadsheet_exports(tmp_path, encoding, prefix, reported) -> None:
    text = "email,first_name,last_name,company\nmaria@example.es,María,López,Café SL\n"
    path = write(tmp_path, "excel.csv", prefix + text.encode(encoding))
    contents = read_file(path)
    lead = validate_record(contents.records[0])
    assert isinstance(lead, Lead)
    assert (lead.first_name, lead.last_name, lead.company) == ("María", "López", "Café SL")
    if reported:
        assert reported in contents.report()
    else:
        assert "encoding" not in contents.report()


def test_binary_garbage_names_the_file_and_the_byte_offset(tmp_path) -> None:
    path = write(tmp_path, "photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(UndecodableFileError) as caught:
        read_file(path)
    message = str(caught.value)
    assert str(path) in message
    assert "byte 0x89 at offset 0" in message and "byte 0x1a at offset 6" in message


def test_jsonl_keys_are_mapped_like_headers(tmp_path) -> None:
    path = write(tmp_path, "leads.jsonl", '{"Email": "jo@example.org", "Job Title": "VP"}\n')
    lead = only_lead(path)
    assert (lead.email, lead.title) == ("jo@example.org", "VP")
