"""A CRM on the local database, so the pipeline runs with no vendor account.

Contacts and accounts have owners; the look-up reads them (and the account's size
and country as enrichment), the upsert writes the lead's contact keyed by email, so
processing a lead twice updates one contact and never creates a second. On first use
the tables are seeded from a JSON file (examples/crm_seed.json by default) with
accounts and contacts whose owners make the owner-match rule fire in the sample run.

Its activity log (`crm_activities`: a call, an email, a meeting, at an instant) is
what "the lead was touched" means here, as a vendor CRM's activity fields do: `touch`
logs one (`leadflow crm touch EMAIL`), and `first_touch` reads the first since an
instant, for the SLA watcher.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.db import dialect_insert, ensure_tables, insert_ignoring_duplicates
from leadflow.integrations.base import CRM
from leadflow.models import CrmMatch, Decision, Lead
from leadflow.settings import AdapterSettings, Settings

metadata = MetaData()

accounts = Table(
    "crm_accounts",
    metadata,
    Column("id", String, primary_key=True),
    Column("domain", String, nullable=False, unique=True),
    Column("name", String),
    Column("owner", String),
    Column("employee_count", Integer),
    Column("country", String),
)

contacts = Table(
    "crm_contacts",
    metadata,
    Column("id", String, primary_key=True),
    Column("email", String, nullable=False, unique=True),
    Column("first_name", String),
    Column("last_name", String),
    Column("company", String),
    Column("title", String),
    Column("country", String),
    Column("owner", String),
    Column("lead_id", String),
    Column("score", Integer),
    Column("tier", String),
    Column("updated_at", DateTime(timezone=True)),
)


activities = Table(
    "crm_activities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String, nullable=False, index=True),
    Column("kind", String, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("note", Text),
)


class UnknownContact(LookupError):
    """`touch` for an email the local CRM has no contact for."""


class LocalCrmSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_LOCAL_CRM_")

    seed_path: Path | None = Field(
        default=Path("examples/crm_seed.json"),
        description="accounts and contacts loaded into an empty local CRM",
    )


class LocalCRM(CRM[LocalCrmSettings]):
    name = "local"
    settings_class = LocalCrmSettings
    reports_first_touch = True

    def __init__(self, database_url: str, seed_path: Path | None = None) -> None:
        self.database_url = database_url
        self.seed_path = seed_path
        self._lock = asyncio.Lock()
        self._ready: AsyncEngine | None = None

    @property
    def once_scope(self) -> str:
        return f"{self.kind}.{self.name}:{self.database_url}"

    @classmethod
    def from_settings(cls, settings: Settings, own: LocalCrmSettings) -> Self:
        return cls(settings.database_url, own.seed_path)

    async def _engine(self) -> AsyncEngine:
        """Tables created and seed loaded before the first read or write, exactly once,
        however many leads arrive at the same moment."""
        async with self._lock:
            if self._ready is None:
                engine = await ensure_tables(self.database_url, metadata)
                if self.seed_path is not None:
                    await self._seed(engine, self.seed_path)
                self._ready = engine
        return self._ready

    async def _seed(self, engine: AsyncEngine, seed_path: Path) -> None:
        seed = json.loads(await asyncio.to_thread(Path(seed_path).read_text))
        async with engine.begin() as connection:
            if seed.get("accounts"):
                await connection.execute(
                    insert_ignoring_duplicates(engine, accounts, ["id"]), seed["accounts"]
                )
            if seed.get("contacts"):
                rows = [{"updated_at": None, **row} for row in seed["contacts"]]
                await connection.execute(insert_ignoring_duplicates(engine, contacts, ["id"]), rows)

    async def look_up(self, lead: Lead) -> CrmMatch:
        return (await self.look_up_many([lead]))[0]

    async def look_up_many(self, leads: Sequence[Lead]) -> list[CrmMatch]:
        """Two queries for the whole batch (contacts by email, accounts by domain)."""
        engine = await self._engine()
        emails = sorted({lead.email for lead in leads})
        domains = sorted({lead.domain for lead in leads})
        async with engine.connect() as connection:
            found = await connection.execute(select(contacts).where(contacts.c.email.in_(emails)))
            by_email = {row.email: row for row in found}
            found = await connection.execute(select(accounts).where(accounts.c.domain.in_(domains)))
            by_domain = {row.domain: row for row in found}
        return [_match(by_email.get(lead.email), by_domain.get(lead.domain)) for lead in leads]

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        return (await self.upsert_many([(lead, decision, idempotency_key)]))[0]

    async def touch(
        self, email: str, *, at: datetime | None = None, kind: str = "call", note: str = ""
    ) -> datetime:
        """Log an activity with the contact of `email` (a rep called them) and return
        its instant; UnknownContact when the CRM has no such contact."""
        engine = await self._engine()
        email = email.strip().lower()
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        async with engine.begin() as connection:
            known = await connection.execute(select(contacts.c.id).where(contacts.c.email == email))
            if known.first() is None:
                raise UnknownContact(email)
            await connection.execute(
                activities.insert().values(email=email, kind=kind, at=moment, note=note or None)
            )
        return moment

    async def first_touch(
        self, lead: Lead, match: CrmMatch | None, *, since: datetime
    ) -> datetime | None:
        """The first activity logged with the lead's contact at or after `since`."""
        engine = await self._engine()
        query = select(func.min(activities.c.at)).where(
            activities.c.email == lead.email, activities.c.at >= since.astimezone(UTC)
        )
        async with engine.connect() as connection:
            first = (await connection.execute(query)).scalar_one_or_none()
        # SQLite hands stored instants back without their zone; they are UTC
        return first.replace(tzinfo=first.tzinfo or UTC) if first is not None else None

    async def upsert_many(self, items: Sequence[tuple[Lead, Decision, str]]) -> list[str]:
        """One multi-row INSERT ... ON CONFLICT (email) DO UPDATE for the batch, so two
        workers upserting the same email cannot both insert. A lead twice in one batch
        is written once, with its last decision."""
        if not items:
            return []
        engine = await self._engine()
        now = datetime.now(UTC)
        rows = {
            lead.email: {
                "id": contact_id(lead.email),
                "email": lead.email,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "company": lead.company,
                "title": lead.title,
                "country": lead.country,
                "owner": decision.rep,
                "lead_id": lead.id,
                "score": decision.score,
                "tier": decision.tier,
                "updated_at": now,
            }
            for lead, decision, _key in items
        }
        statement = dialect_insert(engine, contacts)
        updated = {name: statement.excluded[name] for name in _UPSERT_COLUMNS}
        statement = statement.on_conflict_do_update(index_elements=["email"], set_=updated)
        async with engine.begin() as connection:
            result = await connection.execute(
                statement.values(list(rows.values())).returning(contacts.c.email, contacts.c.id)
            )
            ids = {email: record_id for email, record_id in result}
        return [ids[lead.email] for lead, _decision, _key in items]


_UPSERT_COLUMNS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "country",
    "owner",
    "lead_id",
    "score",
    "tier",
    "updated_at",
)


def contact_id(email: str) -> str:
    """The local CRM's id for a contact: stable per email."""
    return f"c_{uuid.uuid5(uuid.NAMESPACE_URL, email).hex[:12]}"


def _match(contact, account) -> CrmMatch:
    enrichment = {}
    if account is not None:
        enrichment = {
            key: value
            for key, value in (
                ("company", account.name),
                ("employee_count", account.employee_count),
                ("country", account.country),
            )
            if value is not None
        }
    return CrmMatch(
        contact_id=contact.id if contact else None,
        contact_owner=contact.owner if contact else None,
        account_id=account.id if account else None,
        account_owner=account.owner if account else None,
        enrichment=enrichment,
    )
