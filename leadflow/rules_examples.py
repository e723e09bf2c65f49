"""`leadflow rules test`: the example leads a rules file carries, decided with that
file, against the outcomes they expect.

Each example is decided on its own, at its own instant, as the first lead of a fresh
rotation (leadflow.rehearsal: the rules' scoring, a scratch database, no vendor), so
an example's answer does not depend on the others or on their order. A failure is one
line naming the file, the example and each field that differs, as CI logs want it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from leadflow.models import Decision, Lead
from leadflow.rehearsal import Rehearsal, scratch_database
from leadflow.rules import Rules, RulesExample


@dataclass(frozen=True)
class ExampleResult:
    index: int
    example: RulesExample
    decision: Decision
    differences: list[str]

    @property
    def label(self) -> str:
        name = f" {self.example.name!r}" if self.example.name else ""
        return f"examples.{self.index}{name}"

    @property
    def passed(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """What the lead got: tier (score), follow-up, rep and rule."""
        d = self.decision
        return f"{d.tier} (score {d.score}), {d.follow_up.value}, {d.rep} by {d.assignment_rule}"


def differences(example: RulesExample, decision: Decision) -> list[str]:
    """`field: expected X, got Y` for each field the example expects otherwise."""
    got = {
        "score": decision.score,
        "tier": decision.tier,
        "follow_up": decision.follow_up,
        "rep": decision.rep,
        "rule": decision.assignment_rule,
    }
    wanted = example.expect.model_dump(exclude_unset=True)
    return [
        f"{name}: expected {_shown(value)}, got {_shown(got[name])}"
        for name, value in wanted.items()
        if got[name] != value
    ]


def _shown(value: object) -> str:
    return str(getattr(value, "value", value))


async def run_examples(rules: Rules) -> list[ExampleResult]:
    """Every example of `rules`, decided in a scratch database."""
    results = []
    async with scratch_database() as url:
        rehearsal = Rehearsal(rules, url)
        for index, example in enumerate(rules.examples):
            await rehearsal.forget()
            lead = Lead.from_record(example.lead)
            match = example.crm.as_match() if example.crm else None
            decision = await rehearsal.decide(lead, match, example.routed_at)
            results.append(ExampleResult(index, example, decision, differences(example, decision)))
    return results


def failure_lines(path: Path | str, results: list[ExampleResult]) -> list[str]:
    """One line per failed example: the file, the example, each difference, and
    what the lead got (the rule explains a rep)."""
    return [
        f"{path}: {result.label}: {'; '.join(result.differences)} [got {result.summary()}]"
        for result in results
        if not result.passed
    ]
