"""`poll_source` with the HTTP source chosen by settings alone, over real loopback HTTP,
on the real Prefect API: leads added between polls are processed once each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from leadflow.app.runtime import use_runtime
from leadflow.flows.source import poll_source
from leadflow.settings import AdapterChoice
from tests.support.leads_api import T0, LeadsApi, serve_leads_api


@pytest.fixture
def api() -> Iterator[LeadsApi]:
    with serve_leads_api() as leads:
        yield leads


@pytest.fixture
def http_runtime(
    prefect_api,
    make_runtime,
    api,
    tmp_path,
    monkeypatch,
):
    """The embedded runtime polling the test's leads API (pages of 2)."""
    monkeypatch.setenv("LEADFLOW_HTTP_SOURCE_URL", f"{api.base}/leads")
    monkeypatch.setenv("LEADFLOW_HTTP_SOURCE_STATE_PATH", str(tmp_path / "http.json"))
    monkeypatch.setenv("LEADFLOW_HTTP_SOURCE_PAGE_SIZE", "2")
    runtime = make_runtime()
    runtime.settings = runtime.settings.model_copy(
        update={"adapters": AdapterChoice(source="http")}
    )
    return runtime


async def test_two_polls_process_each_lead_once(
    http_runtime,
    api,
    tmp_path,
) -> None:
    runtime = http_runtime
    for n in range(3):
        api.add(n, T0 + timedelta(seconds=n))
    api.leads.append({"id": "bad", "email": "nope", "updated_at": T0.isoformat()})
    try:
        with use_runtime(runtime):
            first = await poll_source()
            api.add(3, T0 + timedelta(seconds=5))
            second = await poll_source()
            third = await poll_source()
    finally:
        await runtime.aclose()

    assert (first.processed, len(first.set_aside)) == (3, 1)
    assert first.set_aside[0].reason == "email: 'nope' is not an email address"
    assert (second.processed, third.processed) == (1, 0)
    outbox = [json.loads(x) for x in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert sorted(m["email"] for m in outbox) == [f"p{n}@acme.test" for n in range(4)]


async def test_a_503_on_page_2_loses_nothing_and_the_poll_names_it(
    http_runtime,
    api,
    tmp_path,
) -> None:
    """Pages of 2, page 2 answers 503: the first poll keeps and processes page 1,
    ends Failed naming the source's failure; the next poll reads page 2 again."""
    runtime = http_runtime
    for n in range(5):
        api.add(n, T0 + timedelta(seconds=n))
    api.fail_pages["2"] = 503
    try:
        with use_runtime(runtime):
            first = await poll_source(return_state=True)
            second = await poll_source()
    finally:
        await runtime.aclose()

    assert first.is_failed()
    assert "the source failed: http: http source poll: HTTP 503" in first.message
    summary = (await first.result(raise_on_failure=False)).summary
    assert summary.processed == 2 and "HTTP 503" in summary.source_error
    assert "The source failed" in summary.as_markdown()
    assert second.processed == 3 and not second.source_error
    outbox = [json.loads(x) for x in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert sorted(m["email"] for m in outbox) == [f"p{n}@acme.test" for n in range(5)]
