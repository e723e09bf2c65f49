"""`CRM.first_touch`, what the SLA watcher asks each CRM: a touch at or after the
assignment, read from the vendor's documented activity fields. HubSpot: the contact's
`notes_last_contacted` and `hs_last_sales_activity_timestamp` (an answer shaped by
HubSpot's OpenAPI example, validated against its schema); Salesforce: the Lead's
`LastActivityDate`, a date; Pipedrive: activities linked to the person and marked
done since then (`marked_as_done_time`, v2 paging); the local CRM: its activity log
(tests/unit/test_crm_touch.py).
An adapter that cannot tell says so (`reports_first_touch`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from pydantic import SecretStr

from leadflow.integrations.base import CRM, touched_since
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotSettings
from leadflow.integrations.pipedrive import PipedriveCRM, PipedriveSettings
from leadflow.integrations.salesforce import SalesforceCRM
from leadflow.models import CrmMatch
from leadflow.testing import HttpVendor
from tests.support.builders import make_lead
from tests.support.harnesses import PipedriveFake, pipedrive_effects
from tests.support.hubspot import API as HUBSPOT
from tests.support.hubspot import SPEC, SPEC_ERROR, TOKEN, validate
from tests.support.salesforce import API as SALESFORCE
from tests.support.salesforce import lead_query_reply, salesforce_crm

ASSIGNED = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def test_the_earliest_value_since_the_assignment_counts() -> None:
    values = ["2026-12-05T09:59:00Z", "2026-12-05T10:20:00.000Z", "2026-12-05T10:05:00Z"]
    assert touched_since(values, ASSIGNED) == datetime(2026, 12, 5, 10, 5, tzinfo=UTC)
    assert touched_since(["2026-12-05T09:59:00Z", None, ""], ASSIGNED) is None


def test_a_date_counts_from_the_day_of_the_assignment() -> None:
    """Salesforce's LastActivityDate has no time: the day itself counts, as the
    assignment's instant (never earlier than it)."""
    assert touched_since(["2026-12-05"], ASSIGNED) == ASSIGNED
    assert touched_since([date(2026, 12, 6)], ASSIGNED) == datetime(2026, 12, 6, tzinfo=UTC)
    assert touched_since(["2026-12-04"], ASSIGNED) is None


def test_unix_milliseconds_are_read_too() -> None:
    later = int(datetime(2026, 12, 5, 11, 0, tzinfo=UTC).timestamp() * 1000)
    assert touched_since([str(later)], ASSIGNED) == datetime(2026, 12, 5, 11, 0, tzinfo=UTC)


def test_who_can_tell() -> None:
    assert HubSpotCRM.reports_first_touch and SalesforceCRM.reports_first_touch
    assert PipedriveCRM.reports_first_touch
    assert not CRM.reports_first_touch  # a plug-in's default: the watcher says so


@pytest.fixture
def hubspot(transport):
    return HubSpotCRM(HubSpotSettings(_env_file=None, token=SecretStr(TOKEN)), transport=transport)


async def test_hubspot_reads_the_contacts_activity_properties(hubspot, router) -> None:
    example = dict(SPEC["components"]["schemas"]["SimplePublicObject"]["example"])
    example["properties"] = {
        "notes_last_contacted": "2026-12-05T10:12:00.000Z",
        "hs_last_sales_activity_timestamp": "2026-12-05T10:07:30.000Z",
    }
    validate("SimplePublicObjectWithAssociations", example)
    read = router.get(
        url__regex=rf"{HUBSPOT}/crm/v3/objects/contacts/ava1.stone@northwind.test\?.*"
    )
    read.mock(return_value=httpx.Response(200, json=example))

    touched = await hubspot.first_touch(make_lead(), None, since=ASSIGNED)

    assert touched == datetime(2026, 12, 5, 10, 7, 30, tzinfo=UTC)
    params = read.calls.last.request.url.params
    assert params["idProperty"] == "email"
    assert params["properties"].split(",") == [
        "notes_last_contacted",
        "hs_last_sales_activity_timestamp",
    ]
    assert await hubspot.first_touch(make_lead(), None, since=touched.replace(minute=30)) is None


async def test_hubspot_a_contact_never_contacted_or_unknown_is_no_touch(hubspot, router) -> None:
    example = dict(SPEC["components"]["schemas"]["SimplePublicObject"]["example"])
    example["properties"] = {"notes_last_contacted": None}
    route = router.get(url__regex=rf"{HUBSPOT}/crm/v3/objects/contacts/.*")
    route.mock(return_value=httpx.Response(200, json=example))
    assert await hubspot.first_touch(make_lead(), None, since=ASSIGNED) is None
    route.mock(return_value=httpx.Response(404, json=SPEC_ERROR))
    assert await hubspot.first_touch(make_lead(), None, since=ASSIGNED) is None


async def test_salesforce_reads_the_leads_last_activity_date(router, transport) -> None:
    route = router.get(f"{SALESFORCE}/query").mock(
        return_value=lead_query_reply({"LastActivityDate": "2026-12-05"})
    )
    lead = make_lead(1)
    touched = await salesforce_crm(transport).first_touch(lead, None, since=ASSIGNED)
    assert touched == ASSIGNED
    soql = route.calls.last.request.url.params["q"]
    assert soql == f"SELECT LastActivityDate FROM Lead WHERE Leadflow_Id__c = '{lead.id}' LIMIT 1"


async def test_salesforce_no_activity_or_no_lead_is_no_touch(router, transport) -> None:
    route = router.get(f"{SALESFORCE}/query")
    empty = {"attributes": {"type": "Lead"}, "LastActivityDate": None}
    route.mock(
        return_value=httpx.Response(200, json={"totalSize": 1, "done": True, "records": [empty]})
    )
    assert await salesforce_crm(transport).first_touch(make_lead(), None, since=ASSIGNED) is None
    route.mock(return_value=httpx.Response(200, json={"totalSize": 0, "done": True, "records": []}))
    assert await salesforce_crm(transport).first_touch(make_lead(), None, since=ASSIGNED) is None


def _activity(person_id: int, done_at: str | None, updated: str) -> dict:
    """An activity as GET /api/v2/activities answers it (the fields read here)."""
    return {
        "id": hash((person_id, done_at, updated)) % 10_000,
        "person_id": person_id,
        "type": "call",
        "done": done_at is not None,
        "marked_as_done_time": done_at,
        "update_time": updated,
    }


async def test_pipedrive_reads_the_activities_marked_done_since_the_assignment() -> None:
    fake = PipedriveFake()
    fake.activity_page = 2  # the earliest touch is on the last page
    fake.activities = [
        _activity(4, "2026-12-05T09:30:00Z", "2026-12-05T09:30:00Z"),  # before: not this lead's
        _activity(4, None, "2026-12-05T10:10:00Z"),  # planned, not done
        _activity(4, "2026-12-05T10:40:00Z", "2026-12-05T10:40:00Z"),
        _activity(5, "2026-12-05T10:05:00Z", "2026-12-05T10:05:00Z"),  # someone else
        _activity(4, "2026-12-05 10:20:00", "2026-12-05T10:20:00Z"),  # v1's format
        _activity(4, "2026-12-05T10:50:00Z", "2026-12-05T10:50:00Z"),
    ]
    vendor = HttpVendor(fake, pipedrive_effects)
    own = PipedriveSettings(_env_file=None, api_token=SecretStr("pd"))
    crm = PipedriveCRM(own, transport=vendor.transport)

    touched = await crm.first_touch(make_lead(), CrmMatch(contact_id="4"), since=ASSIGNED)

    assert touched == datetime(2026, 12, 5, 10, 20, tzinfo=UTC)
    pages = [r for r in vendor.requests if r.url.path == "/api/v2/activities"]
    assert len(pages) == 2 and pages[1].url.params["cursor"] == "2"
    assert pages[0].url.params["updated_since"] == "2026-12-05T10:00:00Z"
    assert pages[0].url.params["done"] == "true"


async def test_pipedrive_a_person_it_does_not_know_was_not_touched() -> None:
    vendor = HttpVendor(PipedriveFake(), pipedrive_effects)
    own = PipedriveSettings(_env_file=None, api_token=SecretStr("pd"))
    crm = PipedriveCRM(own, transport=vendor.transport)
    assert await crm.first_touch(make_lead(), None, since=ASSIGNED) is None
    assert [r.url.path for r in vendor.requests] == ["/api/v2/persons/search"]
