"""What the core's decision (leadflow.decide) needs from outside: a scorer and an assigner.

The core cannot import the adapters, so the ports it calls are defined here, once:
`LeadScorer` is the scoring port that every scorer adapter implements
(leadflow.integrations.base.Scorer adds the adapter lifecycle to it), and
`RepAssigner` is what leadflow.assignment.Assigner provides. Each has a method for one
lead and a bulk one for the micro-batch path, which keeps input order.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from leadflow.models import Assignment, CrmMatch, Lead, Score

if TYPE_CHECKING:
    from leadflow.rules import Tier


class LeadScorer(ABC):
    @abstractmethod
    async def score(self, lead: Lead, match: CrmMatch | None) -> Score:
        """Score the lead, with the reasons behind the points."""

    async def score_many(
        self, leads: Sequence[Lead], matches: Sequence[CrmMatch | None]
    ) -> list[Score]:
        """Every lead's score, in order; by default one `score` call each, at once."""
        return list(
            await asyncio.gather(
                *(self.score(lead, m) for lead, m in zip(leads, matches, strict=True))
            )
        )


class RepAssigner(Protocol):
    """`tier`/`tiers`: the lead's tier, which caps, holding and the kept facts use."""

    async def assign(
        self, lead: Lead, match: CrmMatch | None, tier: Tier | None = None
    ) -> Assignment: ...

    async def assign_many(
        self,
        leads: Sequence[Lead],
        matches: Sequence[CrmMatch | None],
        tiers: Sequence[Tier | None] | None = None,
    ) -> list[Assignment]: ...
