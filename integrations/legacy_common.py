"""What the built-in legacy adapters share: each gets an answer (a mapping or a
Decision) from the current process and turns it into a Decision the same way."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from leadflow.compare import decision_from_answer, steps_from_answer
from leadflow.integrations.base import LegacyProcess, S
from leadflow.models import Decision, StepTiming, lead_id_of


class AnsweringLegacy(LegacyProcess[S]):
    @abstractmethod
    async def answer(self, record: dict) -> Any:
        """The process's raw answer for one record."""

    async def decide(self, record: dict) -> Decision:
        return (await self.decide_with_steps(record))[0]

    async def decide_with_steps(self, record: dict) -> tuple[Decision, list[StepTiming]]:
        answer = await self.answer(record)
        lead_id = lead_id_of(record) or "unknown"
        decision = decision_from_answer(answer, lead_id=lead_id, provides=self.provides)
        return decision, steps_from_answer(answer)
