"""`CRM.first_touch`, what the SLA watcher asks each CRM: a touch at or after the
assignment, read from the vendor's documented activity fields. HubSpot: the contact's
`notes_last_contacted` and `hs_last_sales_activity_timestamp` (an answer shaped by
HubSpot's OpenAPI example, validated against its schema); Salesforce: the Lead's
`LastActivityDate`, a date; the local CRM: its activity log (tests/unit/test_crm_touch.py).
An adapter that cannot tell says so (`reports_first_touch`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from pydantic import SecretStr

from leadflow.integrations.base import CRM, touched_since
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotSettings
from leadflow.integrations.pipedrive import PipedriveCRM
from leadflow.integrations.salesforce import SalesforceCRM
from tests.contract.conftest import make_lead
from tests.contract.test_hubspot import API as HUBSPOT
from tests.contract.test_hubspot import SPEC, SPEC_ERROR, TOKEN, validate
from tests.contract.test_salesforce import API as SALESFORCE
from tests.contract.test_salesforce import _crm as salesforce_crm
from tests.contract.test_salesforce import lead_query_reply

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
    assert not PipedriveCRM.reports_first_touch  # not read yet: the watcher says so
    assert not CRM.reports_first_touch


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
