"""Pipedrive CRM contract, and how it avoids duplicates without an upsert.

Follows https://developers.pipedrive.com/docs/api/v2/Persons#searchPersons,
#addPerson, #updatePerson (the v1 persons endpoints are out of support since
2026-08-01), https://developers.pipedrive.com/docs/api/v1/Leads#addLead,
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
from leadflow.integrations.pipedrive import PLAN_LIMITS, PipedriveCRM, PipedriveSettings
from leadflow.testing import HttpVendor
from tests.support.builders import make_decision, make_lead
from tests.support.harnesses import PipedriveFake, pipedrive_effects

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
        "emails": [{"value": "ava1.stone@northwind.test", "primary": True, "label": "work"}],
        "owner_id": 7,
    }
    (added,) = fake.leads
    assert added == {
        "title": f"Northwind: hot (72) [leadflow {lead.id}]",
        "person_id": 1,
        "owner_id": 7,
    }
    search = next(r for r in vendor.requests if r.url.path == "/api/v2/persons/search")
    assert search.url.params["exact_match"] == "true" and search.url.params["fields"] == "email"
    for request in vendor.requests:
        assert request.headers["x-api-token"] == TOKEN
        assert TOKEN not in str(request.url)


async def test_an_existing_person_is_updated_not_created(crm, vendor, fake) -> None:
    fake.persons[1] = {"name": "A", "emails": [{"value": "ava1.stone@northwind.test"}]}
    fake.index()
    lead = make_lead()
    assert await crm.upsert(lead, make_decision(lead), idempotency_key="k") == "1"
    assert len(fake.persons) == 1
    patch = next(r for r in vendor.requests if r.method == "PATCH")
    assert patch.url.path == "/api/v2/persons/1"
    assert json.loads(patch.content) == {"name": "Ava Stone", "owner_id": 7}
    assert not [r for r in vendor.requests if r.url.path.startswith("/v1/persons")]


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
    fake.persons[1] = {"name": "A", "emails": [{"value": "ava1.stone@northwind.test"}]}
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


def test_limits_follow_the_plan() -> None:
    """Pipedrive's documented api_token limits per 2 s: Essential 20 (the default,
    the lowest plan), Advanced 40, Professional 80, Power 100, Enterprise 120;
    search 10 on every plan. An explicit limit wins (an OAuth token has more)."""

    def limiter(**values):
        crm = PipedriveCRM(PipedriveSettings(_env_file=None, api_token=SecretStr(TOKEN), **values))
        return crm.http.limiter.requests, crm.http.limiter.per_seconds, crm._search.requests

    assert limiter() == (20, 2.0, 10)
    assert [limiter(plan=plan)[0] for plan in PLAN_LIMITS] == [20, 40, 80, 100, 120]
    assert limiter(plan="advanced", rate_limit_requests=160)[0] == 160


async def test_a_vendor_id_is_one_encoded_path_segment(crm, fake, vendor) -> None:
    """An owner id from Pipedrive's answer cannot reach another endpoint."""
    original = fake.__call__

    def odd_owner(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/persons/search":
            item = {"id": "1/../../v1/users/me?x=", "owner": {"id": "7/../../admin"}}
            return httpx.Response(200, json={"success": True, "data": {"items": [{"item": item}]}})
        return original(request)

    vendor.ok = odd_owner
    await crm.look_up(make_lead())
    (user_read,) = [r for r in vendor.requests if "/v1/users/" in r.url.raw_path.decode()]
    assert user_read.url.raw_path == b"/v1/users/7%2F..%2F..%2Fadmin"
