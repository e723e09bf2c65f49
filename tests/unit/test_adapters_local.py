"""The built-in adapters that need no vendor: local CRM, SQL event sink, terminal
notifier; the adapter registry; and secret redaction in logs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from leadflow.db import get_engine
from leadflow.integrations.base import LeadEvent
from leadflow.integrations.local_crm import LocalCRM, contacts
from leadflow.integrations.registry import (
    UnknownAdapterError,
    get_adapter_class,
    list_adapters,
    register,
    unregister,
)
from leadflow.integrations.sql_events import SqlEventSink, lead_events
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.logging import REDACTED, redact_secrets
from leadflow.models import CrmMatch, Decision, FollowUpType, Lead

SEED = Path(__file__).resolve().parents[2] / "examples" / "crm_seed.json"
SEEDED_CONTACTS = len(json.loads(SEED.read_text())["contacts"])


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/adapters.db"


def lead(email: str, **fields: object) -> Lead:
    return Lead.from_record({"email": email, **fields})


def decision(subject: Lead, rep: str = "alice@example.com", score: int = 55) -> Decision:
    return Decision(
        lead_id=subject.id,
        score=score,
        score_reasons=[],
        tier="warm",
        follow_up=FollowUpType.EMAIL_SEQUENCE,
        sla_minutes=60,
        due_at=datetime(2024, 5, 1, 11, tzinfo=UTC),
        rep=rep,
        assignment_rule="territory:north-america/round_robin:na",
        rules_version="test",
    )


async def count(url: str, column) -> int:
    async with get_engine(url).connect() as connection:
        return (await connection.execute(select(func.count(column)))).scalar_one()


# --- LocalCRM -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        pytest.param(
            "Hank.Scorpio@GLOBEX.test",
            CrmMatch(
                contact_id="c_seed_001",
                contact_owner="frank@example.com",
                account_id="acc_globex",
                account_owner="erin@example.com",
                enrichment={"company": "Globex", "employee_count": 5200, "country": "US"},
            ),
            id="contact-and-account",
        ),
        pytest.param(
            "new.person@initech.test",
            CrmMatch(
                account_id="acc_initech",
                account_owner="bob@example.com",
                enrichment={"company": "Initech", "employee_count": 340, "country": "US"},
            ),
            id="account-only",
        ),
        pytest.param(
            "someone@hooli.test",
            CrmMatch(
                account_id="acc_hooli",
                enrichment={"company": "Hooli", "employee_count": 12000, "country": "US"},
            ),
            id="account-without-owner",
        ),
        pytest.param(
            "old.timer@massive.test",
            CrmMatch(contact_id="c_seed_003", contact_owner="dave@example.com"),
            id="contact-only",
        ),
        pytest.param("nobody@unknown.test", CrmMatch(), id="nothing"),
    ],
)
async def test_local_crm_look_up(db_url: str, email: str, expected: CrmMatch) -> None:
    crm = LocalCRM(db_url, SEED)
    match = await crm.look_up(lead(email))
    assert match == expected


async def test_local_crm_owner_precedence(db_url: str) -> None:
    crm = LocalCRM(db_url, SEED)
    assert (await crm.look_up(lead("hank.scorpio@globex.test"))).owners == [
        ("frank@example.com", "contact"),
        ("erin@example.com", "account"),
    ]
    assert (await crm.look_up(lead("x@umbrella.test"))).owners == [("greta@example.com", "account")]
    assert (await crm.look_up(lead("x@hooli.test"))).owners == []


async def test_local_crm_without_seed(db_url: str) -> None:
    assert await LocalCRM(db_url).look_up(lead("hank.scorpio@globex.test")) == CrmMatch()


async def test_local_crm_concurrent_first_use_seeds_once(db_url: str) -> None:
    crm = LocalCRM(db_url, SEED)
    matches = await asyncio.gather(*(crm.look_up(lead(f"p{i}@globex.test")) for i in range(20)))
    assert {m.account_owner for m in matches} == {"erin@example.com"}
    # a second CRM instance (another worker) seeding the same database adds nothing
    await LocalCRM(db_url, SEED).look_up(lead("x@globex.test"))
    assert await count(db_url, contacts.c.id) == SEEDED_CONTACTS


async def test_local_crm_upsert_twice_one_contact(db_url: str) -> None:
    crm = LocalCRM(db_url, SEED)
    subject = lead("New.Person@Acme.test", first_name="New", company="Acme", title="CTO")
    first_id = await crm.upsert(subject, decision(subject, score=40), idempotency_key="k1")
    second_id = await crm.upsert(
        subject, decision(subject, rep="bob@example.com", score=70), idempotency_key="k1"
    )
    assert first_id == second_id
    assert first_id.startswith("c_")
    assert await count(db_url, contacts.c.id) == SEEDED_CONTACTS + 1
    async with get_engine(db_url).connect() as connection:
        row = (
            await connection.execute(select(contacts).where(contacts.c.email == subject.email))
        ).one()
    assert (row.owner, row.score, row.lead_id, row.company) == (
        "bob@example.com",
        70,
        subject.id,
        "Acme",
    )
    # the contact now shows up in the look-up with its new owner
    match = await crm.look_up(subject)
    assert (match.contact_id, match.contact_owner) == (first_id, "bob@example.com")


async def test_local_crm_upsert_updates_seeded_contact(db_url: str) -> None:
    crm = LocalCRM(db_url, SEED)
    subject = lead("hank.scorpio@globex.test", title="CEO")
    assert await crm.upsert(subject, decision(subject), idempotency_key="k") == "c_seed_001"
    assert await count(db_url, contacts.c.id) == SEEDED_CONTACTS
    assert (await crm.look_up(subject)).contact_owner == "alice@example.com"


async def test_local_crm_concurrent_upserts_one_contact(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/crm.db"
    crm = LocalCRM(url)
    subject = lead("race@acme.test")
    ids = await asyncio.gather(
        *(crm.upsert(subject, decision(subject), idempotency_key="k") for _ in range(10))
    )
    assert len(set(ids)) == 1
    assert await count(url, contacts.c.id) == 1


# --- SqlEventSink -----------------------------------------------------------------------


def event(subject: Lead, event_id: str = "evt-1") -> LeadEvent:
    return LeadEvent(
        event_id=event_id,
        lead_id=subject.id,
        occurred_at=datetime(2024, 5, 1, 10, tzinfo=UTC),
        decision=decision(subject),
    )


async def test_event_sink_record_twice_one_row(db_url: str) -> None:
    sink = SqlEventSink(db_url)
    subject = lead("jo@acme.test")
    await sink.record(event(subject))
    await sink.record(event(subject))
    await SqlEventSink(db_url).record(event(subject))  # another worker
    assert await count(db_url, lead_events.c.event_id) == 1
    async with get_engine(db_url).connect() as connection:
        row = (await connection.execute(select(lead_events))).one()
    assert (row.lead_id, row.tier, row.rep, row.follow_up) == (
        subject.id,
        "warm",
        "alice@example.com",
        "email_sequence",
    )
    assert Decision.model_validate(row.decision) == decision(subject)


async def test_event_sink_record_many(db_url: str) -> None:
    sink = SqlEventSink(db_url)
    subject = lead("jo@acme.test")
    await sink.record_many([])
    await sink.record_many([event(subject, "a"), event(subject, "b"), event(subject, "a")])
    await sink.record_many([event(subject, "b"), event(subject, "c")])
    assert await count(db_url, lead_events.c.event_id) == 3


# --- TerminalNotifier -------------------------------------------------------------------


def outbox_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_notifier_same_key_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    outbox = tmp_path / "sub" / "outbox.jsonl"
    notifier = TerminalNotifier(outbox, echo=True)
    subject = lead("jo@acme.test", company="Acme")
    await notifier.notify(subject, decision(subject), idempotency_key="once-1")
    await notifier.notify(subject, decision(subject), idempotency_key="once-1")
    lines = outbox_lines(outbox)
    assert len(lines) == 1
    assert lines[0]["key"] == "once-1"
    assert (lines[0]["to"], lines[0]["lead_id"], lines[0]["tier"]) == (
        "alice@example.com",
        subject.id,
        "warm",
    )
    assert capsys.readouterr().err.count("-> alice@example.com") == 1  # echoed once
    await notifier.notify(subject, decision(subject), idempotency_key="once-2")
    assert [line["key"] for line in outbox_lines(outbox)] == ["once-1", "once-2"]


async def test_notifier_two_instances_one_line(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    first = TerminalNotifier(outbox, echo=False)
    second = TerminalNotifier(outbox, echo=False)
    subject = lead("jo@acme.test")
    await first.notify(subject, decision(subject), idempotency_key="k")
    await second.notify(subject, decision(subject), idempotency_key="k")
    assert len(outbox_lines(outbox)) == 1
    # concurrently, across both instances, many keys and repeats
    await asyncio.gather(
        *(
            notifier.notify(subject, decision(subject), idempotency_key=f"k{i % 10}")
            for i in range(40)
            for notifier in (first, second)
        )
    )
    keys = [line["key"] for line in outbox_lines(outbox)]
    assert sorted(keys) == sorted(["k", *(f"k{i}" for i in range(10))])
    # an instance that starts later (a new process) reads what is already sent
    third = TerminalNotifier(outbox, echo=False)
    await third.notify(subject, decision(subject), idempotency_key="k3")
    assert len(outbox_lines(outbox)) == 11


# --- registry ---------------------------------------------------------------------------

BUILT_INS = {
    ("crm", "local"),
    ("notifier", "terminal"),
    ("notifier", "webhook"),
    ("event_sink", "sqlite"),
    ("scorer", "rules"),
}


def test_list_adapters_includes_built_ins() -> None:
    infos = list_adapters()
    listed = {(info.kind, info.name): info for info in infos}
    assert set(listed) >= BUILT_INS
    for key in BUILT_INS:
        assert listed[key].load_error is None
    assert listed[("crm", "local")].target == "leadflow.integrations.local_crm:LocalCRM"
    assert listed[("crm", "local")].side_effects is True
    assert listed[("scorer", "rules")].side_effects is False


@pytest.mark.parametrize(
    ("kind", "name", "cls_name"),
    [
        ("crm", "local", "LocalCRM"),
        ("notifier", "terminal", "TerminalNotifier"),
        ("event_sink", "sqlite", "SqlEventSink"),
    ],
)
def test_get_built_in_adapter(kind: str, name: str, cls_name: str) -> None:
    cls = get_adapter_class(kind, name)
    assert cls.__name__ == cls_name
    assert (cls.kind, cls.name) == (kind, name)


def test_unknown_adapter_lists_registered_names() -> None:
    with pytest.raises(UnknownAdapterError) as caught:
        get_adapter_class("notifier", "carrier-pigeon")
    message = str(caught.value)
    assert "no notifier adapter named 'carrier-pigeon'" in message
    registered = message.split("registered: ", 1)[1].split(", ")
    assert {"terminal", "webhook"} <= set(registered)
    assert registered == sorted(registered)


def test_unknown_kind() -> None:
    with pytest.raises(UnknownAdapterError, match="unknown adapter kind 'fax'"):
        get_adapter_class("fax", "local")


def test_register_test_adapter() -> None:
    from tests.support.fakes import MemoryCRM

    assert register(MemoryCRM, name="memory-test") is MemoryCRM
    try:
        assert get_adapter_class("crm", "memory-test") is MemoryCRM
        info = next(i for i in list_adapters() if (i.kind, i.name) == ("crm", "memory-test"))
        assert info.target.endswith("MemoryCRM")
        assert info.side_effects is True
        register(MemoryCRM, name="alias-test")
        assert get_adapter_class("crm", "alias-test") is MemoryCRM
    finally:
        unregister("crm", "memory-test")
        unregister("crm", "alias-test")
    with pytest.raises(UnknownAdapterError):
        get_adapter_class("crm", "memory-test")
    assert ("crm", "memory-test") not in {(i.kind, i.name) for i in list_adapters()}


# --- redact_secrets ---------------------------------------------------------------------


def test_redact_secrets_nested() -> None:
    event_dict = {
        "event": "calling vendor",
        "lead_id": "lead_1",
        "token": "tok-123",
        "api_key": "sk-live",
        "Authorization": "Bearer abc",
        "password": "",
        "refresh_token": None,
        "credentials": SecretStr("hunter2"),
        "request": {
            "url": "https://api.test",
            "headers": {"Authorization": "Bearer xyz", "Accept": "json"},
            "cookie": "session=1",
            "attempts": [{"client_secret": "s1", "status": 500}, SecretStr("inline")],
        },
        "count": 3,
    }
    redacted = redact_secrets(None, "info", event_dict)
    assert redacted == {
        "event": "calling vendor",
        "lead_id": "lead_1",
        "token": REDACTED,
        "api_key": REDACTED,
        "Authorization": REDACTED,
        "password": "",  # nothing to hide
        "refresh_token": None,
        "credentials": REDACTED,
        "request": {
            "url": "https://api.test",
            "headers": {"Authorization": REDACTED, "Accept": "json"},
            "cookie": REDACTED,
            "attempts": [{"client_secret": REDACTED, "status": 500}, REDACTED],
        },
        "count": 3,
    }
    assert "hunter2" not in repr(redacted) and "tok-123" not in repr(redacted)
    assert event_dict["token"] == "tok-123"  # the caller's dict is not modified


async def test_bulk_look_up_and_upsert_match_the_single_calls(tmp_path) -> None:
    crm = LocalCRM(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}", SEED)
    leads = [Lead.from_record({"email": f"p{i}@co{i % 3}.test"}) for i in range(7)]
    leads.append(leads[0])  # a lead twice in one batch is written once
    assert await crm.look_up_many(leads) == [await crm.look_up(lead) for lead in leads]

    ids = await crm.upsert_many([(lead, decision(lead, "a@x.test"), "k") for lead in leads])
    assert ids[0] == ids[-1] and len(set(ids)) == 7
    again = await crm.upsert_many([(lead, decision(lead, "b@x.test"), "k") for lead in leads])
    assert again == ids
    assert {m.contact_owner for m in await crm.look_up_many(leads)} == {"b@x.test"}
