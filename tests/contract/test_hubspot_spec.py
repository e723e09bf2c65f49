"""The HubSpot adapter against answers generated from HubSpot's own OpenAPI
description (specs/hubspot-crm-contacts-v3.json), not only our fixtures: any answer
the spec allows is parsed without a crash, and what it confirms is counted as done.
Requests are validated against the spec's request schemas. No network: a
MockTransport answers with the generated bodies."""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from leadflow.integrations.errors import AdapterError
from leadflow.integrations.hubspot import HubSpotCRM, HubSpotLeadSource, HubSpotSettings
from tests.support.builders import make_decision, make_lead
from tests.support.hubspot import COMPONENTS, validate
from tests.support.openapi_strategies import from_openapi

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def from_schema(name: str):
    return from_openapi(name, COMPONENTS["schemas"])


def _crm(answer) -> HubSpotCRM:
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/crm/v3/owners/":
            return httpx.Response(200, json={"results": [{"id": "41629779"}]})
        assert path == "/crm/v3/objects/contacts/batch/upsert", path
        body = json.loads(request.content)
        validate("BatchInputSimplePublicObjectBatchInputUpsert", body)
        sent.append(body)
        return httpx.Response(200, json=answer(body))

    crm = HubSpotCRM(
        HubSpotSettings(_env_file=None, token=SecretStr("pat-test")),
        transport=httpx.MockTransport(handler),
    )
    crm.sent = sent  # type: ignore[attr-defined]
    return crm


def _items(n: int) -> list:
    leads = [make_lead(i) for i in range(n)]
    return [(lead, make_decision(lead), f"crm:{lead.id}") for lead in leads]


async def _upsert(crm: HubSpotCRM, items: list) -> list:
    try:
        return await crm.upsert_many(items)
    finally:
        await crm.aclose()


@EXAMPLES
@given(reply=from_schema("BatchResponseSimplePublicUpsertObject"))
def test_any_schema_valid_upsert_answer_is_parsed_without_a_crash(reply: dict) -> None:
    """Whatever the spec allows in a 200 answer: one answer per input, an id from
    the answer or an error naming the contact, never a KeyError nor a lost lead."""
    validate("BatchResponseSimplePublicUpsertObject", reply)
    items = _items(5)
    answers = asyncio.run(_upsert(_crm(lambda body: reply), items))
    ids = {str(r["id"]) for r in reply["results"]}
    assert len(answers) == len(items)
    for (lead, _, _), answer in zip(items, answers, strict=True):
        if isinstance(answer, AdapterError):
            assert lead.email in str(answer)
        else:
            assert answer in ids


@EXAMPLES
@given(
    results=st.lists(from_schema("SimplePublicUpsertObject"), min_size=1, max_size=5),
    order=st.randoms(use_true_random=False),
)
def test_every_write_a_schema_valid_answer_confirms_counts_as_done(results, order) -> None:
    """Schema-valid answers for 55 writes, each result carrying its input's
    objectWriteTraceId (the field the spec documents for it), in any order and with
    any properties: all 55 are done, each with its own contact id. (A few drawn
    results stand for all 55: drawing 55 is more data than hypothesis allows.)"""
    items = _items(55)

    def answer(body: dict) -> dict:
        replies = []
        for i, (item, result) in enumerate(zip(body["inputs"], results * 55, strict=False)):
            replies.append(
                {**result, "id": f"c{i}", "objectWriteTraceId": item["objectWriteTraceId"]}
            )
        order.shuffle(replies)
        reply = {
            "status": "COMPLETE",
            "results": replies,
            "startedAt": "2026-11-22T08:00:00Z",
            "completedAt": "2026-11-22T08:00:01Z",
        }
        validate("BatchResponseSimplePublicUpsertObject", reply)
        return reply

    answers = asyncio.run(_upsert(_crm(answer), items))
    assert answers == [f"c{i}" for i in range(55)]


@EXAMPLES
@given(
    first=st.text(max_size=40),
    company=st.text(max_size=80),
    title=st.text(max_size=60),
)
def test_upsert_requests_are_valid_for_any_lead_text(first, company, title) -> None:
    lead = make_lead(1, first_name=first or None, company=company or None, title=title or None)
    crm = _crm(
        lambda body: {
            "status": "COMPLETE",
            "results": [],
            "startedAt": "2026-11-22T08:00:00Z",
            "completedAt": "2026-11-22T08:00:01Z",
        }
    )
    asyncio.run(_upsert(crm, [(lead, make_decision(lead), "crm:1")]))
    (body,) = crm.sent
    assert body["inputs"][0]["properties"]["email"] == lead.email


@EXAMPLES
@given(pages=st.lists(from_schema("CollectionResponseWithTotalSimplePublicObject"), max_size=3))
def test_any_schema_valid_search_answer_is_read_and_its_cursor_passed_back(
    pages: list[dict], tmp_path_factory
) -> None:
    """The source reads any page the spec allows (a contact without a usable
    createdate is yielded with an error, to be set aside) and passes each paging
    cursor back exactly as it came."""
    for page in pages:
        validate("CollectionResponseWithTotalSimplePublicObject", page)
    bodies: list[dict] = []
    queue = list(pages)

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        validate("PublicObjectSearchRequest", body)
        bodies.append(body)
        page = queue.pop(0) if queue else {"total": 0, "results": []}
        return httpx.Response(200, json=page)

    own = HubSpotSettings(
        _env_file=None,
        token=SecretStr("pat-test"),
        source_state_path=tmp_path_factory.mktemp("hs") / "hs.json",
    )
    source = HubSpotLeadSource(own, transport=httpx.MockTransport(handler))

    async def poll() -> list:
        try:
            records = [r async for r in source.records()]
            await source.commit()
            return records
        finally:
            await source.aclose()

    records = asyncio.run(poll())
    assert all(r.error or r.data.get("id", "").startswith("hubspot-") for r in records)
    cursors = [((p.get("paging") or {}).get("next") or {}).get("after") for p in pages]
    for body, cursor in zip(bodies[1:], cursors, strict=False):
        if cursor:
            assert body["after"] in (cursor, "0")  # as it came, or a new query
