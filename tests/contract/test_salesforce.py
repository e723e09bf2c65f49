"""Salesforce CRM contract.

Follows https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html
(collection upsert and its UpsertResult), .../api_rest/headers_autoassign.htm
(Sforce-Auto-Assign), .../api_rest/errorcodes.htm (the error array) and
.../api_rest/dome_query.htm (SOQL query); OAuth refresh per
https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm.
"""

from __future__ import annotations

import urllib.parse

import httpx
import pytest
import respx
from pydantic import SecretStr

from leadflow.integrations.errors import (
    AuthenticationError,
    PermanentError,
    RateLimited,
    TransientError,
)
from leadflow.integrations.salesforce import SalesforceCRM, SalesforceSettings, soql_quote
from leadflow.settings import SettingsError
from tests.support.builders import make_decision, make_lead
from tests.support.http import body
from tests.support.salesforce import API, SF, lead_query_reply, salesforce_crm

COLLECTION = f"{API}/composite/sobjects/Lead/Leadflow_Id__c"


def _query_reply(request: httpx.Request) -> httpx.Response:
    soql = request.url.params["q"]
    if "FROM User" in soql:
        return httpx.Response(
            200, json={"totalSize": 1, "done": True, "records": [{"Id": "005USER"}]}
        )
    return httpx.Response(200, json={"totalSize": 0, "done": True, "records": []})


def _upserted(request: httpx.Request) -> httpx.Response:
    records = body_of(request)["records"]
    return httpx.Response(
        200,
        json=[
            {"id": f"00Q{i:05d}", "success": True, "errors": [], "created": True}
            for i, _ in enumerate(records)
        ],
    )


def body_of(request: httpx.Request) -> dict:
    import json

    return json.loads(request.content)


@pytest.fixture
def users(router: respx.Router):
    return router.get(f"{API}/query").mock(side_effect=_query_reply)


async def test_upsert_is_a_collection_patch_on_the_external_id(router, transport, users) -> None:
    route = router.patch(COLLECTION).mock(side_effect=_upserted)
    lead = make_lead()
    record_id = await salesforce_crm(transport).upsert(
        lead, make_decision(lead), idempotency_key=f"crm:{lead.id}"
    )

    assert record_id == "00Q00000"
    request = route.calls.last.request
    assert request.method == "PATCH"
    assert request.headers["sforce-auto-assign"] == "FALSE"
    assert request.headers["authorization"] == "Bearer 00Dold"
    sent = body(route.calls.last)
    assert sent["allOrNone"] is False
    assert sent["records"] == [
        {
            "attributes": {"type": "Lead"},
            "Leadflow_Id__c": lead.id,
            "Email": "ava1.stone@northwind.test",
            "FirstName": "Ava",
            "LastName": "Stone",
            "Company": "Northwind",
            "Title": "VP Sales",
            "Country": "US",
            "LeadSource": "website",
            "OwnerId": "005USER",
            "Leadflow_Score__c": 72,
            "Leadflow_Tier__c": "hot",
            "Leadflow_Follow_Up__c": "call",
            "Leadflow_Follow_Up_Due__c": "2026-11-22T09:15:00+00:00",
        }
    ]
    soql = users.calls.last.request.url.params["q"]
    assert soql == (
        "SELECT Id FROM User WHERE Email = 'rep.one@example.test' AND IsActive = true LIMIT 1"
    )


async def test_upsert_many_sends_at_most_200_without_a_lead_twice(router, transport, users) -> None:
    route = router.patch(COLLECTION).mock(side_effect=_upserted)
    leads = [make_lead(i) for i in range(450)]
    items = [(lead, make_decision(lead), f"crm:{lead.id}") for lead in leads]
    items.append(items[3])
    ids = await salesforce_crm(transport).upsert_many(items)
    assert [len(body(c)["records"]) for c in route.calls] == [200, 200, 50]
    assert len(ids) == 451 and ids[3] == ids[450]
    assert users.call_count == 1  # the rep's user id, cached


async def test_item_errors_are_translated(router, transport, users) -> None:
    router.patch(COLLECTION).mock(
        return_value=httpx.Response(
            200,
            json=[
                {
                    "success": False,
                    "errors": [
                        {
                            "statusCode": "REQUIRED_FIELD_MISSING",
                            "message": "Required fields are missing: [LastName]",
                            "fields": ["LastName"],
                        }
                    ],
                }
            ],
        )
    )
    lead = make_lead()
    with pytest.raises(PermanentError, match=r"REQUIRED_FIELD_MISSING.*\(LastName\)"):
        await salesforce_crm(transport).upsert(lead, make_decision(lead), idempotency_key="k")


async def test_a_locked_row_is_transient(router, transport, users) -> None:
    router.patch(COLLECTION).mock(
        return_value=httpx.Response(
            200,
            json=[
                {
                    "success": False,
                    "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}],
                }
            ],
        )
    )
    lead = make_lead()
    with pytest.raises(TransientError):
        await salesforce_crm(transport).upsert(lead, make_decision(lead), idempotency_key="k")


@pytest.mark.parametrize(
    ("status", "errors", "error"),
    [
        (400, [{"errorCode": "MALFORMED_QUERY", "message": "bad"}], PermanentError),
        (403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests"}], RateLimited),
        (403, [{"errorCode": "INSUFFICIENT_ACCESS", "message": "no"}], AuthenticationError),
        (503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}], TransientError),
    ],
)
async def test_error_array_is_translated(router, transport, status, errors, error) -> None:
    router.get(f"{API}/query").mock(return_value=httpx.Response(status, json=errors))
    with pytest.raises(error) as caught:
        await salesforce_crm(transport).look_up(make_lead())
    assert type(caught.value) is error
    assert errors[0]["errorCode"] in str(caught.value)


async def test_a_401_refreshes_the_token_once_and_repeats(router, transport) -> None:
    token = router.post(f"{SF}/services/oauth2/token").mock(
        return_value=httpx.Response(200, json={"access_token": "00Dnew", "instance_url": SF})
    )
    replies = iter(
        [
            httpx.Response(401, json=[{"errorCode": "INVALID_SESSION_ID", "message": "expired"}]),
            httpx.Response(200, json={"totalSize": 0, "done": True, "records": []}),
        ]
    )
    query = router.get(f"{API}/query").mock(side_effect=lambda request: next(replies))
    crm = salesforce_crm(
        transport,
        client_id="cid",
        client_secret=SecretStr("csecret"),
        refresh_token=SecretStr("rtoken"),
    )
    assert (await crm.look_up(make_lead())).contact_id is None

    assert [c.request.headers["authorization"] for c in query.calls] == [
        "Bearer 00Dold",
        "Bearer 00Dnew",
    ]
    form = urllib.parse.parse_qs(token.calls.last.request.content.decode())
    assert form == {
        "client_id": ["cid"],
        "client_secret": ["csecret"],
        "grant_type": ["refresh_token"],
        "refresh_token": ["rtoken"],
    }


async def test_a_second_401_is_an_authentication_error(router, transport) -> None:
    router.post(f"{SF}/services/oauth2/token").mock(
        return_value=httpx.Response(200, json={"access_token": "00Dnew"})
    )
    router.get(f"{API}/query").mock(
        return_value=httpx.Response(401, json=[{"errorCode": "INVALID_SESSION_ID"}])
    )
    crm = salesforce_crm(transport, client_id="cid", client_secret=SecretStr("s"))
    with pytest.raises(AuthenticationError) as caught:
        await crm.look_up(make_lead())
    assert "00Dnew" not in str(caught.value) and "00Dold" not in str(caught.value)


async def test_look_up_reads_the_lead_and_its_owner(router, transport) -> None:
    route = router.get(f"{API}/query").mock(
        return_value=lead_query_reply(
            {
                "Id": "00Q1",
                "Company": "Northwind",
                "Title": None,
                "Owner": {"attributes": {"type": "Name"}, "Email": "Owner@Acme.test"},
            }
        )
    )
    lead = make_lead(1, email="o'brien@northwind.test")
    match = await salesforce_crm(transport).look_up(lead)
    assert match.contact_id == "00Q1" and match.contact_owner == "owner@acme.test"
    assert "Email = 'o\\'brien@northwind.test'" in route.calls.last.request.url.params["q"]


def test_soql_quote_escapes_quotes_and_backslashes() -> None:
    assert soql_quote("a'b\\c") == "'a\\'b\\\\c'"


def test_settings_name_what_is_missing() -> None:
    with pytest.raises(SettingsError, match="LEADFLOW_SALESFORCE_BASE_URL"):
        SalesforceCRM(SalesforceSettings(_env_file=None))
    with pytest.raises(SettingsError, match="LEADFLOW_SALESFORCE_ACCESS_TOKEN"):
        SalesforceCRM(SalesforceSettings(_env_file=None, base_url=SF))
