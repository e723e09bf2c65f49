"""A leads API on loopback for the HTTP polling source: the loopback vendor
(leadflow.loopback_vendor's FaultServer) answering as a CRM's or form tool's list
endpoint would. It answers `updated_since` (records at or after that time, oldest
first, paged by `cursor`) or a plain cursor, like the APIs the source is written for."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx

from leadflow.loopback_vendor import FaultServer

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


class LeadsApi:
    def __init__(self) -> None:
        self.leads: list[dict] = []
        self.queries: list[dict] = []
        self.fail_pages: dict[str, int] = {}  # cursor -> status to answer, once
        self.base = ""  # the server's address, once it listens

    def add(self, n: int, at: datetime) -> dict:
        lead = {"id": f"L{n}", "email": f"p{n}@acme.test", "updated_at": at.isoformat()}
        self.leads.append(lead)
        return lead

    def answer(self, request: httpx.Request) -> httpx.Response:
        """GET /leads: one page of the leads the query selects."""
        if request.url.path != "/leads":
            return httpx.Response(404, json={"error": "not found"})
        params = dict(request.url.params)
        self.queries.append(params)
        if (status := self.fail_pages.pop(params.get("cursor", "0"), None)) is not None:
            return httpx.Response(status, json={"error": "unavailable"})
        limit = int(params.get("limit", 100))
        ordered = sorted(self.leads, key=lambda x: (x.get("updated_at", ""), x["id"]))
        if "updated_since" in params:
            since = datetime.fromisoformat(params["updated_since"])
            ordered = [x for x in ordered if datetime.fromisoformat(x["updated_at"]) >= since]
        start = int(params.get("cursor", 0))
        page = ordered[start : start + limit]
        more = start + limit < len(ordered)
        return httpx.Response(
            200, json={"data": page, "next_cursor": str(start + limit) if more else None}
        )


@contextmanager
def serve_leads_api() -> Iterator[LeadsApi]:
    """A LeadsApi on a free loopback port (its address in `base`), stopped afterwards."""
    leads = LeadsApi()
    with FaultServer(leads.answer) as server:
        leads.base = server.base_url
        yield leads
