"""Rep assignment: an ordered waterfall, with weighted round robin as its third step.

1. the owner of the existing contact, else of the account, from the CRM look-up
   (an owner marked unavailable in the rules is passed over);
2. the first territory that matches the lead (country or region, company size) and
   whose team has an available rep: weighted round robin within that team;
3. the fallback owner.

Round robin is "smooth weighted round robin" (the nginx algorithm): every pick adds
each available rep's weight to their running credit, picks the rep with the most
credit and charges them the team's total weight. After any number of picks each
rep's count is within one of their exact weighted share, and the order interleaves
(A B A C A B ...) instead of bursting. The credits live in the database and each
assignment runs in one serialised write transaction (BEGIN IMMEDIATE on SQLite, an
advisory lock on PostgreSQL), so concurrent tasks or processes never read the same
state.

A lead's assignment is stored with it: assigning the same lead again (a retried
task, a rerun of the file) returns the first answer and does not move the rotation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.db import get_engine, serialise
from leadflow.models import Assignment, CrmMatch, Lead
from leadflow.rules import AssignmentRules, Rep
from leadflow.schema import metadata

round_robin_credit = Table(
    "round_robin_credit",
    metadata,
    Column("team", String, primary_key=True),
    Column("rep", String, primary_key=True),
    Column("credit", Integer, nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column("lead_id", String, primary_key=True),
    Column("rep", String, nullable=False),
    Column("rule", String, nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
)


def pick_weighted(reps: list[Rep], credit: dict[str, int]) -> tuple[str, dict[str, int]]:
    """One smooth-weighted-round-robin pick over available reps.

    Returns the chosen rep and the new credits (only available reps change).
    Ties go to the rep listed first, so the order is deterministic.
    """
    available = [rep for rep in reps if rep.available]
    total = sum(rep.weight for rep in available)
    new_credit = dict(credit)
    for rep in available:
        new_credit[rep.id] = new_credit.get(rep.id, 0) + rep.weight
    chosen = max(available, key=lambda rep: (new_credit[rep.id], -available.index(rep)))
    new_credit[chosen.id] -= total
    return chosen.id, new_credit


class Assigner:
    """Runs the waterfall for a lead against the persisted round-robin state."""

    def __init__(self, rules: AssignmentRules, database_url: str) -> None:
        self.rules = rules
        self.database_url = database_url
        self._unavailable = {
            rep.id for team in rules.teams.values() for rep in team.reps if not rep.available
        }

    async def assign(self, lead: Lead, match: CrmMatch | None) -> Assignment:
        return (await self.assign_many([lead], [match]))[0]

    async def assign_many(
        self, leads: Sequence[Lead], matches: Sequence[CrmMatch | None]
    ) -> list[Assignment]:
        """Assign a batch in one serialised transaction, in order: the same picks as
        assigning the leads one by one, for one transaction's cost."""
        engine = get_engine(self.database_url)
        known: dict[str, Assignment] = {}
        result: list[Assignment] = []
        credits = _Credits()
        async with engine.begin() as connection:
            await serialise(connection, "leadflow-assignment")
            ids = sorted({lead.id for lead in leads})
            for start in range(0, len(ids), 500):
                rows = await connection.execute(
                    select(assignments.c.lead_id, assignments.c.rep, assignments.c.rule).where(
                        assignments.c.lead_id.in_(ids[start : start + 500])
                    )
                )
                known.update({row.lead_id: Assignment(rep=row.rep, rule=row.rule) for row in rows})
            new_rows = []
            for lead, match in zip(leads, matches, strict=True):
                if lead.id not in known:
                    known[lead.id] = await self._waterfall(connection, credits, lead, match)
                    new_rows.append(
                        {
                            "lead_id": lead.id,
                            "rep": known[lead.id].rep,
                            "rule": known[lead.id].rule,
                            "assigned_at": datetime.now(UTC),
                        }
                    )
                result.append(known[lead.id])
            await credits.save(connection)
            if new_rows:
                await connection.execute(assignments.insert(), new_rows)
        return result

    async def _waterfall(
        self, connection: AsyncConnection, credits: _Credits, lead: Lead, match: CrmMatch | None
    ) -> Assignment:
        if match is not None and self.rules.use_crm_owner:
            for owner, where in match.owners:
                if owner not in self._unavailable:
                    return Assignment(rep=owner, rule=f"crm_owner:{where}")
        for territory in self.rules.territories:
            team = self.rules.teams[territory.team]
            if territory.matches(lead, self.rules.regions) and any(r.available for r in team.reps):
                rep = await credits.next_in_rotation(connection, territory.team, team.reps)
                return Assignment(
                    rep=rep, rule=f"territory:{territory.name}/round_robin:{territory.team}"
                )
        return Assignment(rep=self.rules.fallback_owner, rule="fallback")


class _Credits:
    """The round-robin credits of the teams one transaction touches: read once per
    team, picked in memory, written once at the end (`save`), so a batch of picks
    costs a few statements instead of a few per lead."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, int]] = {}
        self.current: dict[str, dict[str, int]] = {}

    async def next_in_rotation(
        self, connection: AsyncConnection, team: str, reps: list[Rep]
    ) -> str:
        if team not in self.current:
            query = select(round_robin_credit.c.rep, round_robin_credit.c.credit).where(
                round_robin_credit.c.team == team
            )
            self.stored[team] = {row.rep: row.credit for row in await connection.execute(query)}
            self.current[team] = dict(self.stored[team])
        chosen, self.current[team] = pick_weighted(reps, self.current[team])
        return chosen

    async def save(self, connection: AsyncConnection) -> None:
        for team, credit in self.current.items():
            stored = self.stored[team]
            for rep, value in credit.items():
                if rep not in stored:
                    await connection.execute(
                        round_robin_credit.insert().values(team=team, rep=rep, credit=value)
                    )
                elif stored[rep] != value:
                    await connection.execute(
                        update(round_robin_credit)
                        .where(round_robin_credit.c.team == team, round_robin_credit.c.rep == rep)
                        .values(credit=value)
                    )
