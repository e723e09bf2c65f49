"""`poll_source` with the HTTP source chosen by settings alone, over real loopback HTTP,
on the real Prefect API: leads added between polls are processed once each."""

from __future__ import annotations

import json
from datetime import timedelta

from leadflow.app.runtime import use_runtime
from leadflow.flows.source import poll_source
from leadflow.settings import AdapterChoice
from tests.integration.test_http_source import T0, api  # noqa: F401 - the fixture


async def test_two_polls_process_each_lead_once(
    prefect_api,
    make_runtime,
    api,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
) -> None:
    monkeypatch.setenv("LEADFLOW_HTTP_SOURCE_URL", f"{api.base}/leads")
    monkeypatch.setenv("LEADFLOW_HTTP_SOURCE_STATE_PATH", str(tmp_path / "http.json"))
    runtime = make_runtime()
    runtime.settings = runtime.settings.model_copy(
        update={"adapters": AdapterChoice(source="http")}
    )
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
