"""Deciding leads with a rules file away from the live system: the rules' own scoring,
a round robin in a scratch database, and a clock set to the instant each lead is
routed. No vendor is called and the live rotation never moves.

`leadflow rules test` (leadflow.rules_examples) and `leadflow backtest`
(leadflow.backtest) both decide through a Rehearsal, so they see exactly what the
pipeline would: the same `decide` and the same Assigner, only with another clock and
another database.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete

from leadflow.assignment import Assigner, assignments, round_robin_credit
from leadflow.db import get_engine
from leadflow.decide import decide
from leadflow.models import CrmMatch, Decision, Lead, Score
from leadflow.ports import LeadScorer
from leadflow.rules import Rules, ScoringRules, score_lead


class _Clock:
    """The instant the lead being decided is routed at."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class _RulesScoring(LeadScorer):
    """The rules file's points (leadflow.rules.score_lead), as the pipeline's scorer."""

    def __init__(self, rules: ScoringRules) -> None:
        self.rules = rules

    async def score(self, lead: Lead, match: CrmMatch | None) -> Score:
        return score_lead(lead, self.rules)


class _Given(LeadScorer):
    """A score decided before (a backtest that keeps the stored scores)."""

    def __init__(self, score: Score) -> None:
        self.given = score

    async def score(self, lead: Lead, match: CrmMatch | None) -> Score:
        return self.given


class Rehearsal:
    """Decides leads with `rules` against the round-robin state in `database_url`."""

    def __init__(self, rules: Rules, database_url: str) -> None:
        self.rules = rules
        self.database_url = database_url
        self.clock = _Clock()
        self.scorer = _RulesScoring(rules.scoring)
        self.assigner = Assigner(rules.assignment, database_url, clock=self.clock)

    async def decide(
        self, lead: Lead, match: CrmMatch | None, at: datetime, *, score: Score | None = None
    ) -> Decision:
        """The decision for `lead` routed at `at`; `score`: use it instead of scoring."""
        self.clock.now = at
        decision, _ = await decide(
            lead,
            match,
            rules=self.rules,
            scorer=_Given(score) if score is not None else self.scorer,
            assigner=self.assigner,
            received_at=None if lead.created_at else at,
        )
        return decision

    async def forget(self) -> None:
        """A fresh start: no assignment made, no credit earned, no cap used."""
        async with get_engine(self.database_url).begin() as connection:
            for table in (assignments, round_robin_credit):
                await connection.execute(delete(table))


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """The URL of an empty SQLite database in a temporary folder, removed after."""
    with tempfile.TemporaryDirectory(prefix="leadflow-rehearsal-") as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'rehearsal.db'}"
        try:
            yield url
        finally:
            await get_engine(url).dispose()
