"""A leads API on loopback for the HTTP polling source: a small Starlette app standing in
for a CRM's or form tool's list endpoint. It answers `updated_since` (records at or
after that time, oldest first, paged by `cursor`) or a plain cursor, like the APIs the
source is written for."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.http import serve_app

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


class LeadsApi:
    def __init__(self) -> None:
        self.leads: list[dict] = []
        self.queries: list[dict] = []
        self.fail_pages: dict[str, int] = {}  # cursor -> status to answer, once
        self.app = Starlette(routes=[Route("/leads", self.list)])

    def add(self, n: int, at: datetime) -> dict:
        lead = {"id": f"L{n}", "email": f"p{n}@acme.test", "updated_at": at.isoformat()}
        self.leads.append(lead)
        return lead

    async def list(self, request: Request) -> JSONResponse:
        params = dict(request.query_params)
        self.queries.append(params)
        if (status := self.fail_pages.pop(params.get("cursor", "0"), None)) is not None:
            return JSONResponse({"error": "unavailable"}, status_code=status)
        limit = int(params.get("limit", 100))
        ordered = sorted(self.leads, key=lambda x: (x.get("updated_at", ""), x["id"]))
        if "updated_since" in params:
            since = datetime.fromisoformat(params["updated_since"])
            ordered = [x for x in ordered if datetime.fromisoformat(x["updated_at"]) >= since]
        start = int(params.get("cursor", 0))
        page = ordered[start : start + limit]
        more = start + limit < len(ordered)
        return JSONResponse({"data": page, "next_cursor": str(start + limit) if more else None})


@contextmanager
def serve_leads_api() -> Iterator[LeadsApi]:
    """A LeadsApi served on a free loopback port (its address in `base`), stopped
    afterwards."""
    leads = LeadsApi()
    with serve_app(leads.app) as port:
        leads.base = f"http://127.0.0.1:{port}"
        yield leads
