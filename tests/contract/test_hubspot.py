"""HubSpot CRM contract.

Follows https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts
(batch upsert), https://developers.hubspot.com/docs/api-reference/crm-crm-owners-v3/guide
(owners) and HubSpot's OpenAPI description of the contacts API in specs/ (source and
date in specs/README.md), against which every request body sent here is validated
and whose examples are parsed; tests/contract/test_hubspot_spec.py parses answers
generated from its response schemas.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, unquote

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
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotSettings, match_upsert_results
from leadflow.integrations.vendor import unique_batches
from leadflow.settings import SettingsError
from tests.support.builders import make_decision, make_lead
from tests.support.http import body
from tests.support.hubspot import API, SPEC, SPEC_ERROR, TOKEN, validate


def upsert_reply(request: httpx.Request, start: int = 500) -> httpx.Response:
    """HubSpot's 200 answer to a batch upsert: one result per input, each echoing its
    input's objectWriteTraceId, in no promised order (here: reversed), with only the
    properties the spec promises (none in particular: here no email)."""
    inputs = json.loads(request.content)["inputs"]
    results = [
        {
            "id": str(start + i),
            "archived": False,
            "new": True,
            "objectWriteTraceId": item["objectWriteTraceId"],
            "createdAt": "2026-11-22T08:00:00Z",
            "updatedAt": "2026-11-22T08:00:00Z",
            "properties": {"hs_object_id": str(start + i)},
        }
        for i, item in enumerate(inputs)
    ][::-1]
    reply = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": "2026-11-22T08:00:00Z",
        "completedAt": "2026-11-22T08:00:01Z",
    }
    validate("BatchResponseSimplePublicUpsertObject", reply)
    return httpx.Response(200, json=reply)


@pytest.fixture
def crm(transport):
    adapter = HubSpotCRM(
        HubSpotSettings(_env_file=None, token=SecretStr(TOKEN)), transport=transport
    )
    yield adapter


@pytest.fixture
def owners(router: respx.Router):
    return router.get(f"{API}/crm/v3/owners/").mock(
        return_value=httpx.Response(
            200, json={"results": [{"id": "41629779", "email": "rep.one@example.test"}]}
        )
    )


async def test_upsert_sends_a_valid_batch_upsert_keyed_by_email(crm, router, owners) -> None:
    route = router.post(f"{API}/crm/v3/objects/contacts/batch/upsert").mock(
        side_effect=upsert_reply
    )
    lead = make_lead()
    contact_id = await crm.upsert(lead, make_decision(lead), idempotency_key=f"crm:{lead.id}")

    assert contact_id == "500"
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    sent = body(route.calls.last)
    validate("BatchInputSimplePublicObjectBatchInputUpsert", sent)
    assert sent == {
        "inputs": [
            {
                "id": "ava1.stone@northwind.test",
                "idProperty": "email",
                "objectWriteTraceId": f"crm:{lead.id}",
                "properties": {
                    "email": "ava1.stone@northwind.test",
                    "firstname": "Ava",
                    "lastname": "Stone",
                    "company": "Northwind",
                    "jobtitle": "VP Sales",
                    "country": "US",
                    "hubspot_owner_id": "41629779",
                    "leadflow_score": "72",
                    "leadflow_tier": "hot",
                    "leadflow_follow_up": "call",
                    "leadflow_follow_up_due": "2026-11-22T09:15:00+00:00",
                },
            }
        ]
    }
    assert owners.calls.last.request.url.params["email"] == "rep.one@example.test"


async def test_upsert_many_batches_by_100_without_an_email_twice(crm, router, owners) -> None:
    route = router.post(f"{API}/crm/v3/objects/contacts/batch/upsert").mock(
        side_effect=upsert_reply
    )
    leads = [make_lead(i) for i in range(230)]
    items = [(lead, make_decision(lead), f"crm:{lead.id}") for lead in leads]
    again = leads[7]
    items.insert(50, (again, make_decision(again, score=10), f"crm:{again.id}"))

    ids = await crm.upsert_many(items)

    sizes = [len(body(call)["inputs"]) for call in route.calls]
    assert sizes == [100, 100, 30]
    for call in route.calls:
        emails = [item["id"] for item in body(call)["inputs"]]
        assert len(emails) == len(set(emails))
        validate("BatchInputSimplePublicObjectBatchInputUpsert", body(call))
    assert len(ids) == len(items)
    assert ids[7] == ids[50]  # the same contact for both occurrences
    # the owner was looked up once for 231 upserts
    assert owners.call_count == 1


async def test_upsert_names_the_rep_without_a_hubspot_owner(crm, router) -> None:
    router.get(f"{API}/crm/v3/owners/").mock(return_value=httpx.Response(200, json={"results": []}))
    lead = make_lead()
    with pytest.raises(PermanentError, match=r"no HubSpot owner for rep rep\.one@example\.test"):
        await crm.upsert(lead, make_decision(lead), idempotency_key="crm:x")


def _input(email: str) -> dict:
    return {"id": email, "idProperty": "email", "objectWriteTraceId": f"crm:{email}"}


def test_a_207_with_errors_names_the_contacts_not_written() -> None:
    reply = {
        "status": "COMPLETE",
        "results": [
            {
                "id": "1",
                "archived": False,
                "new": False,
                "objectWriteTraceId": "crm:a@x.test",
                "createdAt": "2026-11-22T08:00:00Z",
                "updatedAt": "2026-11-22T08:00:00Z",
                "properties": {},
            }
        ],
        "errors": [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": "Property values were not valid",
                "context": {},
                "errors": [],
                "links": {},
            }
        ],
        "numErrors": 1,
        "startedAt": "2026-11-22T08:00:00Z",
        "completedAt": "2026-11-22T08:00:01Z",
    }
    validate("BatchResponseSimplePublicUpsertObjectWithErrors", reply)
    written, refused = match_upsert_results(reply, [_input("a@x.test"), _input("b@x.test")])
    assert written == "1"
    assert isinstance(refused, PermanentError)
    assert str(refused) == (
        "hubspot batch upsert: contact b@x.test not written: "
        "VALIDATION_ERROR: Property values were not valid"
    )


async def test_upsert_results_are_matched_by_trace_id_not_by_email(crm, router, owners) -> None:
    """HubSpot answers in its own order, with no email among the properties: each
    lead still gets its own contact id; one HubSpot did not confirm gets an error
    entry saying so (a single upsert raises it)."""

    def answer(request: httpx.Request) -> httpx.Response:
        reply = json.loads(upsert_reply(request).content)
        reply["results"] = [r for r in reply["results"] if "lost" not in r["objectWriteTraceId"]]
        validate("BatchResponseSimplePublicUpsertObject", reply)
        return httpx.Response(200, json=reply)

    router.post(f"{API}/crm/v3/objects/contacts/batch/upsert").mock(side_effect=answer)
    leads = [make_lead(i) for i in range(3)]
    keys = [f"crm:{lead.id}" for lead in leads[:2]] + ["crm:lost"]
    answers = await crm.upsert_many(
        [(lead, make_decision(lead), key) for lead, key in zip(leads, keys, strict=True)]
    )
    assert answers[:2] == ["500", "501"]
    assert isinstance(answers[2], TransientError)
    assert f"contact {leads[2].email} not confirmed" in str(answers[2])
    assert "objectWriteTraceId" in str(answers[2])
    with pytest.raises(TransientError, match="not confirmed"):
        await crm.upsert(leads[2], make_decision(leads[2]), idempotency_key="crm:lost")


async def test_look_up_reads_by_email_and_resolves_the_owner(crm, router) -> None:
    example = dict(SPEC["components"]["schemas"]["SimplePublicObject"]["example"])
    example["properties"] = {
        **example["properties"],
        "email": "ava1.stone@northwind.test",
        "hubspot_owner_id": "41629779",
        "company": "Northwind",
    }
    validate("SimplePublicObjectWithAssociations", example)
    read = router.get(
        url__regex=rf"{API}/crm/v3/objects/contacts/ava1.stone@northwind.test\?.*"
    ).mock(return_value=httpx.Response(200, json=example))
    owner = router.get(f"{API}/crm/v3/owners/41629779").mock(
        return_value=httpx.Response(200, json={"id": "41629779", "email": "Owner@Example.test"})
    )

    match = await crm.look_up(make_lead())
    await crm.look_up(make_lead())

    assert match.contact_id == example["id"]
    assert match.contact_owner == "owner@example.test"
    assert match.enrichment["company"] == "Northwind"
    params = read.calls.last.request.url.params
    assert params["idProperty"] == "email"
    assert "hubspot_owner_id" in params["properties"].split(",")
    assert owner.call_count == 1  # cached


async def test_look_up_of_an_unknown_email_is_no_match(crm, router) -> None:
    router.get(url__regex=rf"{API}/crm/v3/objects/contacts/.*").mock(
        return_value=httpx.Response(404, json=SPEC_ERROR)
    )
    match = await crm.look_up(make_lead())
    assert match.contact_id is None and match.owners == []


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (429, {"Retry-After": "10"}, RateLimited),
        (401, {}, AuthenticationError),
        (400, {}, PermanentError),
    ],
)
async def test_errors_follow_integrations_http(crm, router, owners, status, headers, error) -> None:
    validate("Error", SPEC["components"]["schemas"]["Error"]["example"])
    router.post(f"{API}/crm/v3/objects/contacts/batch/upsert").mock(
        return_value=httpx.Response(status, headers=headers, json=SPEC_ERROR)
    )
    lead = make_lead()
    with pytest.raises(error) as caught:
        await crm.upsert(lead, make_decision(lead), idempotency_key="crm:x")
    assert TOKEN not in str(caught.value)
    if error is RateLimited:
        assert caught.value.retry_after == 10.0


def test_unique_batches_keeps_the_last_of_a_repeated_key() -> None:
    batches = unique_batches([("a", 1), ("b", 2), ("a", 3), ("c", 4)], 2)
    assert batches == [[("b", 2), ("a", 3)], [("c", 4)]]


def test_settings_need_a_token_or_a_block(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEADFLOW_HUBSPOT_TOKEN", raising=False)
    with pytest.raises(SettingsError, match=r"LEADFLOW_HUBSPOT_TOKEN\b.*_TOKEN_BLOCK"):
        HubSpotCRM(HubSpotSettings(_env_file=None))
    monkeypatch.setenv("LEADFLOW_HUBSPOT_TOKEN_BLOCK", "hubspot-token")
    monkeypatch.setenv("LEADFLOW_HUBSPOT_BASE_URL", "http://127.0.0.1:9999")
    adapter = HubSpotCRM(HubSpotSettings(_env_file=None))
    assert adapter.http.base_url == "http://127.0.0.1:9999"
    assert adapter.http.limiter.requests == 100 and adapter.http.limiter.per_seconds == 10.0


# --- the lead source: contacts created since the watermark ----------------------------


def cursor(offset: int) -> str:
    """A paging cursor as HubSpot makes them: opaque, base64 and URL-encoded (the
    spec's own example, "NTI1Cg%3D%3D", is `cursor(525)`)."""
    return quote(base64.b64encode(f"{offset}\n".encode()).decode())


def offset(after: str) -> int:
    return 0 if after == "0" else int(base64.b64decode(unquote(after)).decode())


class ContactsSearch:
    """HubSpot's contact search over a list: createdate GTE filter, ascending sort,
    `after` paging with opaque cursors; every request body is validated against the
    spec. `fail_at` answers a status once for the page at that offset."""

    def __init__(self) -> None:
        self.contacts: list[dict] = []
        self.bodies: list[dict] = []
        self.fail_at: dict[int, int] = {}

    def add(self, n: int, minute: int) -> None:
        created = f"2026-11-22T08:{minute:02d}:00.000Z"
        self.contacts.append(
            {
                "id": str(1000 + n),
                "properties": {
                    "email": f"c{n}@acme.test",
                    "firstname": f"C{n}",
                    "createdate": created,
                    "hs_object_id": str(1000 + n),
                },
                "createdAt": created,
                "updatedAt": created,
                "archived": False,
            }
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        validate("PublicObjectSearchRequest", sent)
        self.bodies.append(sent)
        found = sorted(self.contacts, key=lambda c: c["properties"]["createdate"])
        for group in sent["filterGroups"]:
            for f in group["filters"]:
                assert f["propertyName"] == "createdate" and f["operator"] == "GTE"
                since = int(f["value"])
                found = [c for c in found if _millis(c["properties"]["createdate"]) >= since]
        start, size = offset(sent["after"]), sent["limit"]
        if (status := self.fail_at.pop(start, None)) is not None:
            return httpx.Response(status, json={"status": "error", "message": "unavailable"})
        page = found[start : start + size]
        reply = {"total": len(found), "results": page}
        if start + size < len(found):
            reply["paging"] = {"next": {"after": cursor(start + size)}}
        validate("CollectionResponseWithTotalSimplePublicObject", reply)
        return httpx.Response(200, json=reply)


def _millis(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def _poll(source) -> list[str]:
    """One poll whose caller accepts every record, then commits."""
    emails = [record.data["email"] async for record in source.records()]
    await source.commit()
    return emails


async def test_source_reads_contacts_created_since_the_watermark(tmp_path, monkeypatch) -> None:
    import leadflow.integrations.hubspot as hubspot

    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 2)
    search = ContactsSearch()
    for n in range(5):
        search.add(n, minute=n)

    def source():
        own = HubSpotSettings(
            _env_file=None, token=SecretStr(TOKEN), source_state_path=tmp_path / "hs.json"
        )
        router = respx.Router(assert_all_mocked=True)
        router.post(f"{API}/crm/v3/objects/contacts/search").mock(side_effect=search)
        return hubspot.HubSpotLeadSource(own, transport=httpx.MockTransport(router.async_handler))

    first = await _poll(source())
    assert first == [f"c{n}@acme.test" for n in range(5)]
    assert [b["after"] for b in search.bodies] == ["0", cursor(2), cursor(4)]
    assert search.bodies[0]["sorts"] == [{"propertyName": "createdate", "direction": "ASCENDING"}]
    assert await _poll(source()) == []  # nothing new, nothing repeated

    search.add(5, minute=9)
    search.add(6, minute=4)  # created in the same minute as the watermark
    assert sorted(await _poll(source())) == ["c5@acme.test", "c6@acme.test"]
    since = int(search.bodies[-1]["filterGroups"][0]["filters"][0]["value"])
    assert since == _millis("2026-11-22T08:04:00Z") - 300_000  # the overlap


async def test_source_restarts_the_query_at_the_search_window(tmp_path, monkeypatch) -> None:
    import leadflow.integrations.hubspot as hubspot

    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 2)
    monkeypatch.setattr(hubspot, "SEARCH_WINDOW", 4)
    search = ContactsSearch()
    for n in range(7):
        search.add(n, minute=n * 5)
    router = respx.Router(assert_all_mocked=True)
    router.post(f"{API}/crm/v3/objects/contacts/search").mock(side_effect=search)
    own = HubSpotSettings(
        _env_file=None,
        token=SecretStr(TOKEN),
        source_state_path=tmp_path / "hs.json",
        source_overlap_seconds=0,
    )
    source = hubspot.HubSpotLeadSource(own, transport=httpx.MockTransport(router.async_handler))
    assert await _poll(source) == [f"c{n}@acme.test" for n in range(7)]
    # the second query starts from the watermark, with `after` back at 0
    assert [b["after"] for b in search.bodies][:3] == ["0", cursor(2), "0"]


def _hubspot_source(tmp_path, search: ContactsSearch):
    import leadflow.integrations.hubspot as hubspot

    own = HubSpotSettings(
        _env_file=None, token=SecretStr(TOKEN), source_state_path=tmp_path / "hs.json"
    )
    router = respx.Router(assert_all_mocked=True)
    router.post(f"{API}/crm/v3/objects/contacts/search").mock(side_effect=search)
    return hubspot.HubSpotLeadSource(own, transport=httpx.MockTransport(router.async_handler))


async def test_source_passes_an_opaque_cursor_back_as_it_came(tmp_path, monkeypatch) -> None:
    import leadflow.integrations.hubspot as hubspot

    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 525)
    search = ContactsSearch()
    for n in range(530):
        search.add(n, minute=n % 60)
    emails = await _poll(_hubspot_source(tmp_path, search))
    assert len(emails) == 530
    assert [b["after"] for b in search.bodies] == ["0", "NTI1Cg%3D%3D"]


async def test_source_a_503_on_page_2_loses_nothing(tmp_path, monkeypatch) -> None:
    import leadflow.integrations.hubspot as hubspot

    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 2)
    search = ContactsSearch()
    for n in range(4):
        search.add(n, minute=n)
    search.fail_at[2] = 503
    source = _hubspot_source(tmp_path, search)
    taken = []
    with pytest.raises(TransientError, match="HTTP 503"):
        async for record in source.records():
            taken.append(record.data["email"])
    await source.commit()  # the caller accepted what it took
    assert taken == ["c0@acme.test", "c1@acme.test"]
    assert await _poll(_hubspot_source(tmp_path, search)) == ["c2@acme.test", "c3@acme.test"]


async def test_source_a_crash_mid_iteration_loses_nothing(tmp_path, monkeypatch) -> None:
    import leadflow.integrations.hubspot as hubspot

    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 2)
    search = ContactsSearch()
    for n in range(4):
        search.add(n, minute=n)
    records = _hubspot_source(tmp_path, search).records()
    assert [(await anext(records)).data["email"] for _ in range(3)][-1] == "c2@acme.test"
    await records.aclose()  # died before its caller accepted anything: no commit
    again = await _poll(_hubspot_source(tmp_path, search))
    assert again == [f"c{n}@acme.test" for n in range(4)]


async def test_an_owner_id_from_hubspot_is_one_encoded_path_segment(crm, router) -> None:
    contact = {"id": "9", "properties": {"hubspot_owner_id": "41/../../objects/contacts/1"}}
    router.get(url__regex=rf"{API}/crm/v3/objects/contacts/.*").mock(
        return_value=httpx.Response(200, json=contact)
    )
    owner = router.get(url__regex=rf"{API}/crm/v3/owners/.+").mock(
        return_value=httpx.Response(200, json={"id": "41", "email": "o@x.test"})
    )
    await crm.look_up(make_lead())
    assert owner.calls.last.request.url.raw_path == (
        b"/crm/v3/owners/41%2F..%2F..%2Fobjects%2Fcontacts%2F1"
    )
