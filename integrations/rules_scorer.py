"""The default scorer: points from the rules file (see leadflow.rules.score_lead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from leadflow.integrations.base import Scorer
from leadflow.models import CrmMatch, Lead, Score
from leadflow.rules import ScoringRules, score_lead
from leadflow.settings import ScorerSettings, Settings


class RulesScorer(Scorer[ScorerSettings]):
    name = "rules"

    def __init__(self, rules: ScoringRules) -> None:
        self.rules = rules

    @classmethod
    def from_settings(cls, settings: Settings, own: ScorerSettings) -> Self:
        return cls(own.scoring)

    async def score(self, lead: Lead, match: CrmMatch | None) -> Score:
        return score_lead(lead, self.rules)

    async def score_many(
        self, leads: Sequence[Lead], matches: Sequence[CrmMatch | None]
    ) -> list[Score]:
        return [score_lead(lead, self.rules) for lead in leads]
