"""Leads whose side effects are all done: leadflow's own record, for a fast rerun.

Rerunning a file of leads that are already done repeats nothing (each side effect has
its once-only key), but finding that out through Prefect costs five task runs a lead.
This table lets `process_file` decide before creating any task:
a lead is done when this exact version of it (`leadflow.models.lead_version`) went
through every side effect at these destinations (`scope`). A changed row is a new
version and goes through the pipeline again, so the contact is updated.

Losing a row only costs speed: the lead then goes through its tasks, which find
their once-only keys and skip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, String, Table, select

from leadflow.db import get_engine, insert_ignoring_duplicates
from leadflow.models import Lead, lead_version
from leadflow.schema import metadata

done_leads = Table(
    "done_leads",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("lead_id", String, nullable=False),
    Column("tier", String, nullable=False),
    Column("rep", String, nullable=False),
    Column("done_at", DateTime(timezone=True), nullable=False),
)

_CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit


@dataclass(frozen=True)
class DoneLead:
    lead_id: str
    tier: str
    rep: str


def done_key(lead: Lead, scope: str) -> str:
    return hashlib.sha256(f"{scope}|{lead.id}|{lead_version(lead)}".encode()).hexdigest()


class DoneLeads:
    def __init__(self, database_url: str, scope: str) -> None:
        self.database_url = database_url
        self.scope = scope

    async def find(self, leads: Iterable[Lead]) -> dict[str, DoneLead]:
        """{lead id: what it became} for the leads already done, in one query per 500."""
        keys = {done_key(lead, self.scope): lead.id for lead in leads}
        if not keys:
            return {}
        engine = get_engine(self.database_url)
        found: dict[str, DoneLead] = {}
        wanted = list(keys)
        async with engine.connect() as connection:
            for start in range(0, len(wanted), _CHUNK):
                query = select(done_leads).where(
                    done_leads.c.key.in_(wanted[start : start + _CHUNK])
                )
                for row in (await connection.execute(query)).mappings():
                    found[keys[row["key"]]] = DoneLead(row["lead_id"], row["tier"], row["rep"])
        return found

    async def add(self, done: Iterable[tuple[Lead, str, str]]) -> None:
        """Record (lead, tier, rep) for leads whose every side effect succeeded."""
        now = datetime.now(UTC)
        rows = [
            {
                "key": done_key(lead, self.scope),
                "lead_id": lead.id,
                "tier": tier,
                "rep": rep,
                "done_at": now,
            }
            for lead, tier, rep in done
        ]
        if not rows:
            return
        engine = get_engine(self.database_url)
        async with engine.begin() as connection:
            for start in range(0, len(rows), _CHUNK):
                await connection.execute(
                    insert_ignoring_duplicates(engine, done_leads, ["key"]),
                    rows[start : start + _CHUNK],
                )
