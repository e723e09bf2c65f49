"""Pipedrive CRM contract, and how it avoids duplicates without an upsert.

Follows https://developers.pipedrive.com/docs/api/v1/Persons#searchPersons,
#addPerson, #updatePerson, https://developers.pipedrive.com/docs/api/v1/Leads#addLead,
#getLeads and https://developers.pipedrive.com/docs/api/v1/Users#findUsersByName.
`PipedriveFake` keeps persons and leads and, like Pipedrive, finds a new person by
search only once its index caught up (`index()`).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import SecretStr

from leadflow.integrations.errors import PermanentError, TransientError
from leadflow.integrations.pipedrive import PipedriveCRM, PipedriveSettings
from leadflow.testing import HttpVendor
from tests.contract.conftest import make_decision, make_lead
from tests.contract.harnesses import PipedriveFake, pipedrive_effects

TOKEN = "pd-token-123"


@pytest.fixture
def fake() -> PipedriveFake:
    return PipedriveFake()


@pytest.fixture
def vendor(fake) -> HttpVendor:
    return HttpVendor(fake, pipedrive_effects)


@pytest.fixture
def crm(vendor) -> PipedriveCRM:
    return PipedriveCRM(
        PipedriveSettings(_env_file=None, api_token=SecretStr(TOKEN)), transport=vendor.transport
    )


async def test_a_new_lead_is_a_person_and_a_linked_lead(crm, vendor, fake) -> None:
    lead = make_lead()
    person_id = await crm.upsert(lead, make_decision(lead), idempotency_key=f"crm:{lead.id}")

    assert person_id == "1"
    assert fake.persons[1] == {
        "name": "Ava Stone",
        "email": [{"value": "ava1.stone@northwind.test", "primary": True, "label": "work"}],
        "owner_id": 7,
    }
    (added,) = fake.leads
    assert added == {
        "title": f"Northwind: hot (72) [leadflow {lead.id}]",
        "person_id": 1,
        "owner_id": 7,
    }
    search = next(r for r in vendor.requests if r.url.path == "/v1/persons/search")
    assert search.url.params["exact_match"] == "true" and search.url.params["fields"] == "email"
    for request in vendor.requests:
        assert request.headers["x-api-token"] == TOKEN
        assert TOKEN not in str(request.url)


async def test_an_existing_person_is_updated_not_created(crm, vendor, fake) -> None:
    fake.persons[1] = {"name": "A", "email": [{"value": "ava1.stone@northwind.test"}]}
    fake.index()
    lead = make_lead()
    assert await crm.upsert(lead, make_decision(lead), idempotency_key="k") == "1"
    assert len(fake.persons) == 1
    put = next(r for r in vendor.requests if r.method == "PUT")
    assert put.url.path == "/v1/persons/1"
    assert json.loads(put.content) == {"name": "Ava Stone", "owner_id": 7}


async def test_a_retry_inside_the_search_lag_creates_nothing_twice(crm, fake) -> None:
    lead = make_lead()
    await crm.upsert(lead, make_decision(lead), idempotency_key="k")
    # the search index has not caught up, and the task is retried
    await crm.upsert(lead, make_decision(lead), idempotency_key="k")
    assert len(fake.persons) == 1 and len(fake.leads) == 1


async def test_a_retry_after_the_lead_was_added_adds_no_second_lead(fake) -> None:
    lead = make_lead()
    first = PipedriveCRM(
        PipedriveSettings(_env_file=None, api_token=SecretStr(TOKEN)),
        transport=HttpVendor(fake).transport,
    )
    await first.upsert(lead, make_decision(lead), idempotency_key="k")
    fake.index()
    # another process (no memory of the first) repeats the write
    second = PipedriveCRM(
        PipedriveSettings(_env_file=None, api_token=SecretStr(TOKEN)),
        transport=HttpVendor(fake).transport,
    )
    await second.upsert(lead, make_decision(lead), idempotency_key="k")
    assert len(fake.persons) == 1 and len(fake.leads) == 1


async def test_concurrent_writes_for_one_email_create_one_person(crm, fake) -> None:
    lead = make_lead()
    other = make_lead(1, source="event")  # the same person from another source
    await asyncio.gather(
        crm.upsert(lead, make_decision(lead), idempotency_key="a"),
        crm.upsert(other, make_decision(other), idempotency_key="b"),
    )
    assert len(fake.persons) == 1
    assert len(fake.leads) == 2  # two leads (two sources), one person


async def test_success_false_and_statuses(crm, vendor) -> None:
    lead = make_lead()
    vendor.fail_status = 500
    with pytest.raises(TransientError):
        await crm.upsert(lead, make_decision(lead), idempotency_key="k")
    vendor.fail_status = 400
    with pytest.raises(PermanentError):
        await crm.upsert(lead, make_decision(lead), idempotency_key="k")


async def test_an_unknown_rep_is_named() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "data": None})

    crm = PipedriveCRM(
        PipedriveSettings(_env_file=None, api_token=SecretStr(TOKEN)),
        transport=httpx.MockTransport(handler),
    )
    lead = make_lead()
    with pytest.raises(PermanentError, match=r"no Pipedrive user for rep rep\.one@example\.test"):
        await crm.upsert(lead, make_decision(lead), idempotency_key="k")


async def test_look_up_returns_the_person_and_owner_email(crm, fake, vendor) -> None:
    fake.persons[1] = {"name": "A", "email": [{"value": "ava1.stone@northwind.test"}]}
    fake.index()
    original = fake.__call__

    def with_user(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/users/7":
            return httpx.Response(
                200, json={"success": True, "data": {"id": 7, "email": "O@x.test"}}
            )
        return original(request)

    vendor.ok = with_user
    match = await crm.look_up(make_lead())
    assert match.contact_id == "1" and match.contact_owner == "o@x.test"
