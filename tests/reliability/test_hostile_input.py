"""Bad and hostile input: files as they go wrong, and values meant to do harm.

Files: each is read without crashing the run; a record that cannot be read is set
aside with its row and reason, and one that can is processed (a file that is not a
lead file at all stops with an error naming it). Values: a record too big for the
systems it goes to is refused naming the field, and a refusal never carries the
value whole; lead text in a notification never pings (@channel, @here, a user),
never links and never renders as HTML; a CSV export never starts a cell with a
formula prefix.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.flows.batch_intake import StreamedIntake
from leadflow.intake import FieldWarning, RawRecord, Rejection, validate_record
from leadflow.integrations.email_notifier import EmailNotifier, EmailSettings
from leadflow.integrations.file_source import open_file
from leadflow.loopback_vendor import FaultServer
from leadflow.models import Lead
from leadflow.textfiles import UndecodableFileError
from tests.support.builders import make_decision
from tests.support.smtp import start_smtp
from tests.support.vendors import BY_ID

# --- files ---------------------------------------------------------------------------

MB = 1024 * 1024


def read(tmp_path: Path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return StreamedIntake(open_file(path)).whole()


@pytest.mark.parametrize(
    ("name", "data", "emails", "bad_rows"),
    [
        ("bom-crlf.csv", b"\xef\xbb\xbfemail,first_name\r\nada@x.org,Ada\r\n", ["ada@x.org"], []),
        ("header-only.csv", b"email,first_name\r\n", [], []),
        (
            "semicolons-quotes.csv",
            b'email;first_name;company\n"ada@x.org;"Ada;Acme\nbob@x.org;Bob;"Acme; Ltd"\n',
            ["bob@x.org"],
            [2],
        ),
        (
            "column-counts.csv",
            b"email,first_name\nada@x.org,Ada,extra,more\nbob@x.org\ncy@x.org,Cy\n",
            ["bob@x.org", "cy@x.org"],  # a short row is read with its missing cells empty
            [2],
        ),
        (
            "latin1.csv",
            "email;first_name\nada@x.org;Ren\xe9e\n".encode("latin-1"),
            ["ada@x.org"],
            [],
        ),
        (
            "mixed-utf8-latin1.csv",
            b"email,first_name\nada@x.org,Caf\xc3\xa9\nbob@x.org,Caf\xe9\n",
            ["ada@x.org", "bob@x.org"],
            [],
        ),
        (
            "duplicates.csv",
            b"email,first_name\nAda@X.org,Ada\n  ada@x.org ,Ada2\nADA@x.ORG,\n",
            ["ada@x.org"],
            [],
        ),
        (
            "garbage.jsonl",
            b'{"email": "ada@x.org"}\n[1,2]\n42\n{bad json\n{"email": null}\n',
            ["ada@x.org"],
            [2, 3, 4, 5],
        ),
        (
            "50mb-line.csv",
            b"email,notes\nada@x.org," + b"y" * (50 * MB) + b"\nbob@x.org,ok\n",
            ["bob@x.org"],
            [2],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith(("email", "{")) else "",
)
def test_a_file_gone_wrong_is_read_record_by_record(
    tmp_path, name: str, data: bytes, emails: list[str], bad_rows: list[int]
) -> None:
    intake = read(tmp_path, name, data)
    assert sorted(lead.email for lead in intake.leads) == emails
    assert [b.position for b in intake.bad] == bad_rows
    for rejection in intake.bad:
        assert rejection.origin.endswith(name) and rejection.reason
        assert len(rejection.reason) < 500
        assert len(json.dumps(rejection.data)) < MB, "a set-aside row keeps a 50 MB field"


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("zero-bytes.csv", b"", "no header row"),
        ("blank.csv", b"\n \r\n\n", "no header row"),
        ("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a text file"),
    ],
)
def test_a_file_that_is_not_a_lead_file_stops_naming_it(tmp_path, name, data, error) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises((ValueError, UndecodableFileError)) as caught:
        open_file(path)
    assert name in str(caught.value) and error in str(caught.value)


def test_a_duplicate_merges_into_the_first_row_with_the_latest_values(tmp_path) -> None:
    intake = read(
        tmp_path, "dups.csv", b"email,first_name,title\nAda@X.org,Ada,CTO\n ada@x.org ,,CEO\n"
    )
    (lead,) = intake.leads
    assert (lead.first_name, lead.title) == ("Ada", "CEO")
    assert [m.position for m in intake.merged] == [3]


# --- values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "x" * 20_000),
        ("company", "y" * 256),
        ("notes", "z" * 20_000),
        ("employee_count", "1" + "0" * 30),
        ("employee_count", "-5"),
    ],
)
def test_an_oversized_or_impossible_value_is_dropped_naming_the_field(
    field: str, value: str
) -> None:
    """A value too big for the systems it goes to never reaches them: the field is
    dropped with a warning naming it (the value cut short), and the lead goes on."""
    warnings: list[FieldWarning] = []
    checked = validate_record(
        RawRecord(origin="f.csv", position=4, data={"email": "ada@x.org", field: value}), warnings
    )
    assert isinstance(checked, Lead), checked
    assert getattr(checked, field, None) is None and field not in checked.attributes
    (warning,) = warnings
    assert warning.field == field and warning.where == "f.csv row 4"
    assert len(warning.text) < 300, "the warning carries the value whole"


@pytest.mark.parametrize("value", ["a" * 300 + "@x.org", "ada@"])
def test_an_oversized_or_impossible_email_is_refused(value: str) -> None:
    checked = validate_record(RawRecord(origin="f.csv", position=4, data={"email": value}))
    assert isinstance(checked, Rejection), checked
    assert checked.reason.startswith("email")
    assert checked.where == "f.csv row 4"
    assert len(checked.reason) < 300, "the reason carries the value whole"


@pytest.mark.parametrize(
    "email", ["ünïcode@bücher.de", "user@xn--bcher-kva.de", "  Ada@Example.ORG  ", "a+b@x.co"]
)
def test_unicode_and_idn_emails_are_leads(email: str) -> None:
    checked = validate_record(RawRecord(data={"email": email}))
    assert isinstance(checked, Lead) and checked.email == email.strip().lower()


HOSTILE = {
    "first_name": "<!channel> <!here>",
    "last_name": "<@U123> <!subteam^S1>",
    "title": "<https://evil.test|click here> *bold* _it_ ~x~ `code`",
    "company": "<script>alert(1)</script><img src=x onerror=alert(2)>",
    "source": "'; DROP TABLE crm_contacts; --",
}
PINGS = ("<!channel>", "<!here>", "<@U123>", "<!subteam", "<https://evil.test")


def hostile_lead() -> Lead:
    checked = validate_record(RawRecord(data={"email": "ada@x.org", **HOSTILE}))
    assert isinstance(checked, Lead), checked  # processed: these are legal values
    return checked


def rendered_text(payload, vendor_id: str) -> list[str]:
    """The strings of a chat payload that the vendor renders as markup: Slack's
    top-level `text` and every `mrkdwn` object (a `plain_text` object is shown as
    typed, mentions included); every Adaptive Card TextBlock and fact in Teams."""
    found: list[str] = []

    def walk(node, markup: bool) -> None:
        if isinstance(node, dict):
            kind = node.get("type")
            for key, value in node.items():
                if isinstance(value, str):
                    if key in ("text", "value", "title") and (markup or kind == "mrkdwn"):
                        found.append(value)
                else:
                    walk(value, markup and kind != "plain_text")
        elif isinstance(node, list):
            for item in node:
                walk(item, markup)

    if vendor_id.startswith("notifier.slack"):
        found.append(payload["text"])
        walk(payload.get("blocks", []), False)
    else:
        walk(payload, True)
    return found


@pytest.mark.parametrize(
    "vendor_id", ["notifier.slack_webhook", "notifier.slack", "notifier.teams"]
)
async def test_chat_messages_carry_lead_text_inert(vendor_id: str) -> None:
    vendor = BY_ID[vendor_id]
    lead = hostile_lead()
    with FaultServer(vendor.ok()) as server:
        adapter = vendor.build(server.base_url)
        try:
            await adapter.notify(lead, make_decision(lead), idempotency_key="k1")
            await adapter.notify_many([(lead, make_decision(lead), "k2")])
        finally:
            await adapter.aclose()
    bodies = [json.loads(r.content) for r in server.processed()]
    assert len(bodies) == 2
    for body in bodies:
        texts = rendered_text(body, vendor_id)
        assert any("channel" in t for t in texts), "the lead's name is not in the message"
        for text in texts:
            if vendor_id.startswith("notifier.slack"):
                # Slack parses <...> as mentions and links; lead text has < escaped.
                for ping in PINGS:
                    assert ping not in text, f"{vendor_id} sends {ping!r} as markup"
                assert "<script>" not in text and "<img" not in text
            else:
                # Teams mentions need <at> with entities; links and emphasis are Markdown.
                assert "<at>" not in text
                assert "*bold*" not in text and "[" not in text.replace("\\[", "")


async def test_email_renders_lead_text_as_text() -> None:
    lead = hostile_lead()
    controller, smtp = start_smtp()
    try:
        notifier = EmailNotifier(
            EmailSettings(
                _env_file=None,
                host=smtp.host,
                port=smtp.port,
                sender="leadflow@example.test",
                start_tls=False,
            )
        )
        await notifier.notify(lead, make_decision(lead), idempotency_key="k1")
        await notifier.aclose()
    finally:
        controller.stop()
    (message,) = smtp.sink.messages
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


# --- CSV exports ---------------------------------------------------------------------

FORMULA = ("=", "+", "-", "@", "\t", "\r")


@given(
    st.text(max_size=30)
    | st.sampled_from(["=1+1", "+SUM(A1)", "-2", "@x", "\t=1", '=HYPERLINK("http://x")'])
)
@settings(max_examples=200, deadline=None)
def test_the_mismatch_csv_never_starts_a_cell_with_a_formula(email: str) -> None:
    from leadflow.report_render import mismatches_csv
    from tests.support.shadow import decision, record, report

    rows = [record(1, decision("l1", 75), decision("l1", 75, "hot"), email=email or "x")]
    parsed = list(csv.reader(io.StringIO(mismatches_csv(report(rows)))))
    for row in parsed[1:]:
        for cell in row:
            assert not cell.startswith(FORMULA), cell
