"""The HTTP polling source over real loopback HTTP, with leads added between polls.

A small Starlette app stands in for a CRM's or form tool's list endpoint
(tests/support/leads_api.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from leadflow.integrations.errors import TransientError
from leadflow.integrations.http_source import HttpLeadSource, HttpSourceSettings
from tests.support.leads_api import T0, LeadsApi, serve_leads_api


@pytest.fixture
def api() -> Iterator[LeadsApi]:
    with serve_leads_api() as leads:
        yield leads


def _source(api: LeadsApi, tmp_path: Path, **extra) -> HttpLeadSource:
    values = {
        "url": f"{api.base}/leads",
        "state_path": tmp_path / "http.json",
        "page_size": 2,
        "overlap_seconds": 60,
    }
    return HttpLeadSource(HttpSourceSettings(_env_file=None, **(values | extra)))


async def poll(source: HttpLeadSource) -> list[str]:
    """One poll whose caller accepts every record, then commits."""
    ids = [record.data["id"] async for record in source.records()]
    await source.commit()
    return ids


async def test_polls_never_miss_and_never_repeat(api: LeadsApi, tmp_path: Path) -> None:
    for n in range(5):
        api.add(n, T0 + timedelta(seconds=n))
    source = _source(api, tmp_path)
    assert await poll(source) == ["L0", "L1", "L2", "L3", "L4"]  # over three pages
    assert await poll(source) == []  # nothing new: nothing repeated

    api.add(5, T0 + timedelta(seconds=10))
    api.add(6, T0 + timedelta(seconds=4))  # same time as the watermark
    api.add(7, T0 + timedelta(seconds=-30))  # written late, stamped inside the overlap
    api.add(8, T0 + timedelta(seconds=-120))  # older than the overlap: out of reach
    assert sorted(await poll(source)) == ["L5", "L6", "L7"]

    # a new process (a new source object) resumes from the saved watermark
    api.add(9, T0 + timedelta(seconds=11))
    assert await poll(_source(api, tmp_path)) == ["L9"]
    # it asked from the saved watermark (L5, +10 s) less the 60 s overlap
    asked = api.queries[-1]["updated_since"]
    assert datetime.fromisoformat(asked) == T0 + timedelta(seconds=10 - 60)


async def test_cursor_mode_resumes_from_the_saved_cursor(api: LeadsApi, tmp_path: Path) -> None:
    for n in range(3):
        api.add(n, T0 + timedelta(seconds=n))
    source = _source(api, tmp_path, mode="cursor")
    assert await poll(source) == ["L0", "L1", "L2"]
    api.add(3, T0 + timedelta(seconds=3))
    api.add(4, T0 + timedelta(seconds=4))
    assert await poll(_source(api, tmp_path, mode="cursor")) == ["L3", "L4"]


async def test_a_record_without_a_timestamp_is_yielded_with_an_error(
    api: LeadsApi, tmp_path: Path
) -> None:
    api.leads.append({"id": "X", "email": "x@acme.test"})
    (record,) = [r async for r in _source(api, tmp_path).records()]
    assert record.error == "id/updated_at: missing or not a timestamp"
    assert record.data["email"] == "x@acme.test"


@pytest.mark.parametrize("mode", ["updated_since", "cursor"])
async def test_a_503_on_page_2_loses_nothing(api: LeadsApi, tmp_path: Path, mode: str) -> None:
    """Page 1 is handed on, page 2 answers 503: the caller commits what it accepted,
    and the next poll reads page 2 again: nothing lost, nothing skipped."""
    for n in range(5):
        api.add(n, T0 + timedelta(seconds=n))
    api.fail_pages["2"] = 503
    source = _source(api, tmp_path, mode=mode)
    taken = []
    with pytest.raises(TransientError, match="HTTP 503"):
        async for record in source.records():
            taken.append(record.data["id"])
    await source.commit()  # what was taken before the failure is accepted
    assert taken == ["L0", "L1"]
    assert await poll(_source(api, tmp_path, mode=mode)) == ["L2", "L3", "L4"]


@pytest.mark.parametrize("mode", ["updated_since", "cursor"])
async def test_a_crash_mid_iteration_loses_nothing(
    api: LeadsApi, tmp_path: Path, mode: str
) -> None:
    """The poll reads past page 1 and dies before accepting anything: nothing was
    committed, so a new process reads every record again."""
    for n in range(5):
        api.add(n, T0 + timedelta(seconds=n))
    records = _source(api, tmp_path, mode=mode).records()
    assert [(await anext(records)).data["id"] for _ in range(3)] == ["L0", "L1", "L2"]
    await records.aclose()  # the process is gone; no commit
    assert await poll(_source(api, tmp_path, mode=mode)) == ["L0", "L1", "L2", "L3", "L4"]
