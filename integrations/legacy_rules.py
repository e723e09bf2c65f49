"""`rules:PATH`: leadflow itself, with another rules file, as the "current process".

This is the backtest: `leadflow shadow leads.csv --legacy rules:old_rules.toml` shows
what a rule change would change, lead by lead, before it ships. The control uses the
same decide() and the same CRM look-up (a read) as leadflow; its round-robin state is
kept in its own database beside the comparison store, one per rules version, so a
backtest never moves the live rotation.
"""

from __future__ import annotations

from typing import Self

from leadflow.assignment import Assigner
from leadflow.decide import decide
from leadflow.integrations.base import CRM, LegacyProcess
from leadflow.integrations.rules_scorer import RulesScorer
from leadflow.models import Decision, Lead, StepTiming
from leadflow.rules import Rules, RulesError, load_rules
from leadflow.settings import Settings, SettingsError
from leadflow.shadow_settings import ShadowSettings


class RulesLegacy(LegacyProcess[None]):
    name = "rules"

    def __init__(self, rules: Rules, crm: CRM, database_url: str) -> None:
        self.rules = rules
        self.crm = crm
        self.scorer = RulesScorer(rules.scoring)
        self.assigner = Assigner(rules.assignment, database_url)

    @classmethod
    def from_target(
        cls, target: str, settings: Settings, own: None, *, shadow: ShadowSettings
    ) -> Self:
        from leadflow.integrations.wiring import build_adapter

        try:
            theirs = load_rules(target)
        except RulesError as exc:
            raise SettingsError(f"--legacy rules:{target}: {exc}") from None
        base = shadow.database_url
        url = base.rsplit(".db", 1)[0] + f"-backtest-{theirs.version}.db" if ".db" in base else base
        crm = build_adapter("crm", settings.adapters.crm, settings)
        return cls(theirs, crm, url)

    async def decide(self, record: dict) -> Decision:
        return (await self.decide_with_steps(record))[0]

    async def decide_with_steps(self, record: dict) -> tuple[Decision, list[StepTiming]]:
        lead = Lead.from_record(record)
        match = await self.crm.look_up(lead)
        return await decide(
            lead, match, rules=self.rules, scorer=self.scorer, assigner=self.assigner
        )

    async def aclose(self) -> None:
        await self.crm.aclose()
