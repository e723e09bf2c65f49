"""Rep assignment: an ordered waterfall, with weighted round robin as its third step.

1. the owner of the existing contact, else of the account, from the CRM look-up
   (an owner who is away today, by the rules or the override file, is passed over;
   an owner who is only off shift or at a cap keeps their contact);
2. the first territory that matches the lead (country or region, company size) and
   whose team has a rep who can take it now: weighted round robin among those reps.
   A rep is skipped, with the reason kept, when away (marked unavailable, a day off,
   time away), off shift (working hours in their own time zone) or at a cap (leads
   today, open hot leads). When nobody in the team can, the territory's
   `when_nobody_available` says what happens: the next territory (the default), the
   fallback owner, or, for tiers that may wait, the first rep back on shift;
3. the fallback owner.

Round robin is "smooth weighted round robin" (the nginx algorithm): every pick adds
each eligible rep's weight to their running credit, picks the rep with the most
credit and charges them the eligible reps' total weight. After any number of picks
each rep's count is within one of their exact weighted share, and the order
interleaves (A B A C A B ...) instead of bursting. A skipped rep's credit is left as
it is: it neither grows while they are away (no flood of catch-up leads when they
return) nor shrinks (they come back where they left, and the credits of the reps
who stayed sum to minus theirs, so every credit stays within a few weights of zero).
The credits live in the database and each assignment runs in one serialised write
transaction (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), in which the
caps are counted too, so concurrent tasks or processes never read the same state.

A lead's assignment is stored with it, with the facts it was made from
(models.RoutingFacts): assigning the same lead again (a retried task, a rerun of the
file) returns the first answer and does not move the rotation, and `leadflow why`
can show the reasons long after the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.availability import AvailabilityOverrides, Calendar
from leadflow.db import get_engine, serialise
from leadflow.models import Assignment, CrmMatch, Lead, RoutingFacts, SkippedRep
from leadflow.rules import AssignmentRules, Rep, Team, Territory, Tier
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
    Column("tier", String),
    Column("facts", Text),
    Index("ix_assignments_rep_assigned_at", "rep", "assigned_at"),
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


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
    """Runs the waterfall for a lead against the persisted round-robin state.

    `overrides`: the operator's availability file; `clock`: what "now" is (a test's
    fixed instant, a backtest's replayed one)."""

    def __init__(
        self,
        rules: AssignmentRules,
        database_url: str,
        *,
        overrides: AvailabilityOverrides | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.rules = rules
        self.database_url = database_url
        self.overrides = overrides
        self.clock = clock
        self._owners: dict[str, tuple[Rep, Team]] = {}
        for team in rules.teams.values():
            for rep in team.reps:
                self._owners.setdefault(rep.id, (rep, team))

    def calendar(self, rep: Rep, team: Team) -> Calendar:
        """The rep's availability: the rules' hours and absences, plus the overrides."""
        extra = self.overrides.current().get(rep.id, ()) if self.overrides else ()
        hours = rep.hours or team.hours
        return Calendar(
            rep=rep.id,
            available=rep.available,
            hours=self.rules.hours[hours] if hours else None,
            days_off=frozenset(rep.days_off),
            away=(*rep.away, *extra),
        )

    async def assign(
        self, lead: Lead, match: CrmMatch | None, tier: Tier | None = None
    ) -> Assignment:
        return (await self.assign_many([lead], [match], [tier]))[0]

    async def assign_many(
        self,
        leads: Sequence[Lead],
        matches: Sequence[CrmMatch | None],
        tiers: Sequence[Tier | None] | None = None,
    ) -> list[Assignment]:
        """Assign a batch in one serialised transaction, in order: the same picks as
        assigning the leads one by one, for one transaction's cost. `tiers`: each
        lead's tier (for the open-hot-leads cap, holding, and the facts kept)."""
        engine = get_engine(self.database_url)
        known: dict[str, Assignment] = {}
        result: list[Assignment] = []
        tiers = list(tiers) if tiers is not None else [None] * len(leads)
        async with engine.begin() as connection:
            await serialise(connection, "leadflow-assignment")
            state = _State(connection, self.clock(), self)
            ids = sorted({lead.id for lead in leads})
            for start in range(0, len(ids), 500):
                rows = await connection.execute(
                    select(
                        assignments.c.lead_id,
                        assignments.c.rep,
                        assignments.c.rule,
                        assignments.c.facts,
                    ).where(assignments.c.lead_id.in_(ids[start : start + 500]))
                )
                known.update({row.lead_id: _stored(row) for row in rows})
            new_rows = []
            for lead, match, tier in zip(leads, matches, tiers, strict=True):
                if lead.id not in known:
                    chosen = await self._waterfall(state, lead, match, tier)
                    known[lead.id] = chosen
                    state.load.add(chosen.rep, tier.name if tier else None)
                    new_rows.append(
                        {
                            "lead_id": lead.id,
                            "rep": chosen.rep,
                            "rule": chosen.rule,
                            "assigned_at": state.now,
                            "tier": tier.name if tier else None,
                            "facts": chosen.facts.model_dump_json() if chosen.facts else None,
                        }
                    )
                result.append(known[lead.id])
            await state.credits.save(connection)
            if new_rows:
                await connection.execute(assignments.insert(), new_rows)
        return result

    async def reassign(
        self,
        lead: Lead,
        match: CrmMatch | None,
        tier: Tier | None,
        *,
        away_from: str,
        reason: str,
    ) -> Assignment | None:
        """Give the lead to the next rep who can take it now instead of `away_from` (who
        let its SLA pass, leadflow.sla): the same waterfall as `assign`, in the same
        serialised transaction, with `away_from` skipped for `reason`; the stored
        assignment (what the caps count, what `leadflow why` shows) moves to the new rep.

        Idempotent by the stored row: a lead that is already someone else's (an earlier
        call moved it, and its caller died before recording it) is returned as it
        stands, with no second pick. None when nobody else can take the lead: it stays
        with `away_from`."""
        engine = get_engine(self.database_url)
        async with engine.begin() as connection:
            await serialise(connection, "leadflow-assignment")
            query = select(
                assignments.c.lead_id, assignments.c.rep, assignments.c.rule, assignments.c.facts
            ).where(assignments.c.lead_id == lead.id)
            row = (await connection.execute(query)).one_or_none()
            if row is not None and row.rep != away_from:
                return _stored(row)
            state = _State(connection, self.clock(), self, excluded={away_from: reason})
            chosen = await self._waterfall(state, lead, match, tier)
            if chosen.rep == away_from:
                return None
            assert chosen.facts is not None  # the waterfall always keeps them
            chosen.facts.note = f"reassigned from {away_from}: {reason}"
            values = {
                "rep": chosen.rep,
                "rule": chosen.rule,
                "assigned_at": state.now,
                "tier": tier.name if tier else None,
                "facts": chosen.facts.model_dump_json(),
            }
            await state.credits.save(connection)
            if row is None:
                await connection.execute(assignments.insert().values(lead_id=lead.id, **values))
            else:
                await connection.execute(
                    update(assignments).where(assignments.c.lead_id == lead.id).values(**values)
                )
        return chosen

    async def _waterfall(
        self, state: _State, lead: Lead, match: CrmMatch | None, tier: Tier | None
    ) -> Assignment:
        facts = RoutingFacts(
            at=state.now,
            tier=tier.name if tier else None,
            sla_minutes=tier.sla_minutes if tier else None,
        )
        if match is not None and self.rules.use_crm_owner:
            for owner, where in match.owners:
                away = self._owner_away(state, owner)
                if away is None:
                    return Assignment(rep=owner, rule=f"crm_owner:{where}", facts=facts)
                facts.skipped.append(SkippedRep(rep=owner, reason=f"CRM {where} owner, {away}"))
        for territory in self.rules.territories:
            if not territory.matches(lead, self.rules.regions):
                continue
            found = await self._in_territory(state, territory, tier, facts)
            if found is not None:
                return found
            if territory.when_nobody_available == "fallback":
                facts.note = f"nobody in territory {territory.name} could take the lead"
                return Assignment(
                    rep=self.rules.fallback_owner,
                    rule=f"fallback:nobody_available:{territory.name}",
                    facts=facts,
                )
        return Assignment(rep=self.rules.fallback_owner, rule="fallback", facts=facts)

    def _owner_away(self, state: _State, owner: str) -> str | None:
        if owner in state.excluded:
            return state.excluded[owner]
        if owner not in self._owners:
            return None  # not in the rules: leadflow knows nothing of their calendar
        rep, team = self._owners[owner]
        return state.calendar(rep, team).absent(state.now)

    async def _in_territory(
        self, state: _State, territory: Territory, tier: Tier | None, facts: RoutingFacts
    ) -> Assignment | None:
        """The territory's pick among reps who can take the lead now, or, when nobody
        can and the rules allow it, the first rep back on shift; else None."""
        team = self.rules.teams[territory.team]
        eligible = []
        for rep in team.reps:
            reason = await state.unavailable(rep, team, tier)
            if reason is None:
                eligible.append(rep)
            else:
                facts.skipped.append(
                    SkippedRep(rep=rep.id, reason=reason, territory=territory.name)
                )
        rule = f"territory:{territory.name}/round_robin:{territory.team}"
        if not eligible and territory.when_nobody_available == "hold":
            eligible, held_until = self._first_back(state, team, tier)
            facts.held_until = held_until
            rule = f"territory:{territory.name}/held:{territory.team}"
        if not eligible:
            return None
        before, after, chosen = await state.credits.pick(state.connection, territory.team, eligible)
        facts.territory, facts.team = territory.name, territory.team
        facts.weights = {rep.id: rep.weight for rep in eligible}
        facts.credits_before, facts.credits_after = before, after
        return Assignment(rep=chosen, rule=rule, facts=facts)

    def _first_back(
        self, state: _State, team: Team, tier: Tier | None
    ) -> tuple[list[Rep], datetime | None]:
        """For a tier that may wait: the reps who are back on shift first (ties share
        the rotation), and when. Caps are not looked ahead: they start a new day then."""
        if tier is None or not tier.may_wait_for_shift:
            return [], None
        reps = [rep for rep in team.reps if rep.id not in state.excluded]
        back = {rep.id: state.calendar(rep, team).next_available(state.now) for rep in reps}
        times = [when for when in back.values() if when is not None]
        if not times:
            return [], None
        first = min(times)
        return [rep for rep in reps if back[rep.id] == first], first


def _stored(row: Row[Any]) -> Assignment:
    return Assignment(
        rep=row.rep,
        rule=row.rule,
        facts=RoutingFacts.model_validate_json(row.facts) if row.facts else None,
    )


class _State:
    """One transaction's view: its instant, the round-robin credits and the reps' load
    read once and updated in memory, each rep's calendar built once, and the reps it
    must pass over whatever their calendar says (`excluded`: rep -> why)."""

    def __init__(
        self,
        connection: AsyncConnection,
        now: datetime,
        assigner: Assigner,
        *,
        excluded: Mapping[str, str] | None = None,
    ) -> None:
        self.connection = connection
        self.now = now
        self.assigner = assigner
        self.excluded = dict(excluded or {})
        self.credits = _Credits()
        self.load = _Load(assigner.rules.hot_tiers)
        self._calendars: dict[tuple[int, str], Calendar] = {}

    def calendar(self, rep: Rep, team: Team) -> Calendar:
        key = (id(team), rep.id)
        if key not in self._calendars:
            self._calendars[key] = self.assigner.calendar(rep, team)
        return self._calendars[key]

    async def unavailable(self, rep: Rep, team: Team, tier: Tier | None) -> str | None:
        """Why `rep` cannot take a lead now (excluded, away, off shift, at a cap), or None."""
        if rep.id in self.excluded:
            return self.excluded[rep.id]
        calendar = self.calendar(rep, team)
        reason = calendar.absent(self.now) or calendar.off_shift(self.now)
        if reason is not None:
            return reason
        if rep.max_per_day is not None:
            today = await self.load.count(self.connection, rep.id, calendar.day_start(self.now))
            if today >= rep.max_per_day:
                return f"at cap: {today} of {rep.max_per_day} leads today"
        hot = tier is not None and tier.name in self.assigner.rules.hot_tiers
        if hot and rep.max_open_hot is not None:
            since = self.now - timedelta(hours=self.assigner.rules.open_hours)
            open_hot = await self.load.count(self.connection, rep.id, since, hot=True)
            if open_hot >= rep.max_open_hot:
                return (
                    f"at cap: {open_hot} of {rep.max_open_hot} hot leads in the last "
                    f"{self.assigner.rules.open_hours} h"
                )
        return None


@dataclass
class _Load:
    """Leads per rep since an instant (all tiers, or the hot ones), counted in the
    database once per transaction and kept up to date in memory as it assigns."""

    hot_tiers: list[str]
    counts: dict[tuple[str, datetime, bool], int] = field(default_factory=dict)

    async def count(
        self, connection: AsyncConnection, rep: str, since: datetime, *, hot: bool = False
    ) -> int:
        key = (rep, since, hot)
        if key not in self.counts:
            query = (
                select(func.count())
                .select_from(assignments)
                .where(assignments.c.rep == rep, assignments.c.assigned_at >= since)
            )
            if hot:
                query = query.where(assignments.c.tier.in_(self.hot_tiers))
            self.counts[key] = (await connection.execute(query)).scalar_one()
        return self.counts[key]

    def add(self, rep: str, tier: str | None) -> None:
        """A lead just assigned to `rep` (now: inside every window counted)."""
        for key in self.counts:
            if key[0] == rep and (not key[2] or tier in self.hot_tiers):
                self.counts[key] += 1


class _Credits:
    """The round-robin credits of the teams one transaction touches: read once per
    team, picked in memory, written once at the end (`save`), so a batch of picks
    costs a few statements instead of a few per lead."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, int]] = {}
        self.current: dict[str, dict[str, int]] = {}

    async def pick(
        self, connection: AsyncConnection, team: str, reps: list[Rep]
    ) -> tuple[dict[str, int], dict[str, int], str]:
        """The next rep in `team`'s rotation among `reps`: (credits before, after, rep)."""
        if team not in self.current:
            query = select(round_robin_credit.c.rep, round_robin_credit.c.credit).where(
                round_robin_credit.c.team == team
            )
            self.stored[team] = {row.rep: row.credit for row in await connection.execute(query)}
            self.current[team] = dict(self.stored[team])
        before = self.current[team]
        chosen, self.current[team] = pick_weighted(reps, before)
        return before, self.current[team], chosen

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
