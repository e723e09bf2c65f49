"""The adapter base is generic over its settings: one `from_settings(settings, own)`
for every kind, a scorer's rules carried on its own settings, and the contract kit's
check that `settings_class` is what the type parameter says."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic_settings import SettingsConfigDict

from leadflow.integrations.base import CRM, Scorer
from leadflow.integrations.model_scorer import ModelScorer
from leadflow.integrations.rules_scorer import RulesScorer
from leadflow.integrations.wiring import construct
from leadflow.models import CrmMatch, Decision, Lead, Score
from leadflow.settings import AdapterSettings, ScorerSettings, Settings, SettingsError
from leadflow.testing import UNDECLARED, AdapterContract, declared_settings, sample_rules


class AcmeSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_ACME_TEST_")

    token: str = "t"


class OtherSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_OTHER_TEST_")


class AcmeCRM(CRM[AcmeSettings]):
    name = "acme-test"
    settings_class = AcmeSettings

    def __init__(self, own: AcmeSettings | None = None) -> None:
        self.own = own

    @classmethod
    def from_settings(cls, settings: Settings, own: AcmeSettings) -> AcmeCRM:
        return cls(own)

    async def look_up(self, lead: Lead) -> CrmMatch:
        raise NotImplementedError

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        raise NotImplementedError


class MistypedCRM(AcmeCRM):
    """Typed (through AcmeCRM) with AcmeSettings, built with another class."""

    settings_class = OtherSettings  # what mypy would flag in a checked plug-in


class UntypedCRM(CRM):  # a plug-in that gives its base no settings type
    name = "untyped-test"

    async def look_up(self, lead: Lead) -> CrmMatch:
        raise NotImplementedError

    async def upsert(self, lead: Lead, decision: Decision, *, idempotency_key: str) -> str:
        raise NotImplementedError


class NoSettingsCRM(UntypedCRM, CRM[None]):
    settings_class = AcmeSettings  # typed None, built with settings


class PlainSettingsScorer(Scorer[ScorerSettings]):
    """A plug-in scorer whose settings class forgot to subclass ScorerSettings."""

    name = "plain-test"
    settings_class = OtherSettings

    async def score(self, lead: Lead, match: CrmMatch | None) -> Score:
        raise NotImplementedError

    async def score_many(
        self, leads: Sequence[Lead], matches: Sequence[CrmMatch | None]
    ) -> list[Score]:
        raise NotImplementedError


def test_every_adapter_is_built_through_the_one_signature() -> None:
    settings, rules = Settings(), sample_rules()
    crm = construct(AcmeCRM, settings, rules)
    assert isinstance(crm.own, AcmeSettings) and crm.own.token == "t"
    scorer = construct(RulesScorer, settings, rules)
    assert scorer.rules == rules.scoring


def test_a_scorer_reads_the_rules_from_its_own_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADFLOW_MODEL_SCORER_MODEL", "small")
    rules = sample_rules()
    scorer = construct(ModelScorer, Settings(), rules)
    assert scorer.settings.model == "small"  # its own settings, from the environment
    assert scorer.rules == rules.scoring == scorer.settings.scoring


def test_a_scorer_is_not_built_without_the_rules() -> None:
    with pytest.raises(TypeError, match="built with the rules"):
        construct(RulesScorer, Settings(), None)
    with pytest.raises(SettingsError, match="built with the rules"):
        _ = ScorerSettings().scoring


def test_a_scorer_settings_class_must_carry_the_rules() -> None:
    with pytest.raises(TypeError, match="must subclass ScorerSettings"):
        construct(PlainSettingsScorer, Settings(), sample_rules())


def test_the_scoring_rules_are_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """No environment variable can set them, and the settings reference lists none."""
    monkeypatch.setenv("LEADFLOW_MODEL_SCORER_SCORING", '{"fit": {}}')
    monkeypatch.setenv("LEADFLOW_MODEL_SCORER_MODEL", "small")
    from leadflow.integrations.model_scorer import ModelScorerSettings

    assert "scoring" not in ModelScorerSettings.model_fields
    assert ModelScorerSettings()._scoring is None


def test_the_kit_reads_the_type_parameter() -> None:
    assert declared_settings(AcmeCRM) is AcmeSettings
    assert declared_settings(MistypedCRM) is AcmeSettings
    assert declared_settings(NoSettingsCRM) is None
    assert declared_settings(UntypedCRM) is UNDECLARED


@pytest.mark.parametrize(
    ("cls", "complaint"),
    [
        (MistypedCRM, "not the AcmeSettings its type parameter says"),
        (NoSettingsCRM, "says it has no settings"),
    ],
)
def test_the_kit_fails_a_settings_class_its_type_does_not_name(
    cls: type[AcmeCRM], complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        AdapterContract().test_settings_class_is_its_type_parameter(cls)


def test_the_kit_passes_a_settings_class_its_type_names() -> None:
    AdapterContract().test_settings_class_is_its_type_parameter(AcmeCRM)
    AdapterContract().test_settings_class_is_its_type_parameter(RulesScorer)
