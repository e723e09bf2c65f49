"""leadflow's public surface: what a plug-in and a user import, from one place.

    from leadflow import CRM, AdapterSettings, Lead, Decision, TransientError
    from leadflow import Runtime, CRMContract

Everything else is internal: its module path may change without notice. Names load
lazily, on first use (PEP 562), for two reasons: importing any leadflow module first
runs this file, so eager imports would load the CLI's and Prefect's modules into every
core import (a slower `leadflow --help`) and make the core depend on the layers above
it. The contract kit's names (`CRMContract`, ...) import pytest, so they are for tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # adapter base classes and what they exchange
    "Adapter": "leadflow.integrations.base",
    "LeadSource": "leadflow.integrations.base",
    "CRM": "leadflow.integrations.base",
    "Notifier": "leadflow.integrations.base",
    "EventSink": "leadflow.integrations.base",
    "Scorer": "leadflow.integrations.base",
    "LegacyProcess": "leadflow.integrations.base",
    "LeadEvent": "leadflow.integrations.base",
    "RunAlert": "leadflow.integrations.base",
    "SlaNotice": "leadflow.integrations.base",
    "RawRecord": "leadflow.intake",
    "register": "leadflow.integrations.registry",
    # the errors an adapter raises
    "AdapterError": "leadflow.integrations.errors",
    "TransientError": "leadflow.integrations.errors",
    "RateLimited": "leadflow.integrations.errors",
    "PermanentError": "leadflow.integrations.errors",
    "AuthenticationError": "leadflow.integrations.errors",
    # the domain models
    "Lead": "leadflow.models",
    "CrmMatch": "leadflow.models",
    "Score": "leadflow.models",
    "ScoreReason": "leadflow.models",
    "FollowUpType": "leadflow.models",
    "Assignment": "leadflow.models",
    "Decision": "leadflow.models",
    "BranchStatus": "leadflow.models",
    "BranchResult": "leadflow.models",
    "StepTiming": "leadflow.models",
    "LeadOutcome": "leadflow.models",
    # settings and rules
    "Settings": "leadflow.settings",
    "AdapterSettings": "leadflow.settings",
    "ScorerSettings": "leadflow.settings",
    "SettingsError": "leadflow.settings",
    "load_settings": "leadflow.settings",
    "ShadowSettings": "leadflow.shadow_settings",
    "Rules": "leadflow.rules",
    "ScoringRules": "leadflow.rules",
    "RulesError": "leadflow.rules",
    "load_rules": "leadflow.rules",
    # the composition root a user runs flows with
    "Runtime": "leadflow.app.runtime",
    # the adapter contract kit (imports pytest)
    "AdapterContract": "leadflow.testing",
    "CRMContract": "leadflow.testing",
    "NotifierContract": "leadflow.testing",
    "EventSinkContract": "leadflow.testing",
    "ScorerContract": "leadflow.testing",
    "LeadSourceContract": "leadflow.testing",
    "LegacyContract": "leadflow.testing",
    "HttpVendor": "leadflow.testing",
    "LocalStore": "leadflow.testing",
}

# the same names as _EXPORTS (tests/unit/test_public_surface.py checks), written out
# for type checkers and linters
__all__ = [
    "CRM",
    "Adapter",
    "AdapterContract",
    "AdapterError",
    "AdapterSettings",
    "Assignment",
    "AuthenticationError",
    "BranchResult",
    "BranchStatus",
    "CRMContract",
    "CrmMatch",
    "Decision",
    "EventSink",
    "EventSinkContract",
    "FollowUpType",
    "HttpVendor",
    "Lead",
    "LeadEvent",
    "LeadOutcome",
    "LeadSource",
    "LeadSourceContract",
    "LegacyContract",
    "LegacyProcess",
    "LocalStore",
    "Notifier",
    "NotifierContract",
    "PermanentError",
    "RateLimited",
    "RawRecord",
    "Rules",
    "RulesError",
    "RunAlert",
    "Runtime",
    "Score",
    "ScoreReason",
    "Scorer",
    "ScorerContract",
    "ScorerSettings",
    "ScoringRules",
    "Settings",
    "SettingsError",
    "ShadowSettings",
    "SlaNotice",
    "StepTiming",
    "TransientError",
    "load_rules",
    "load_settings",
    "register",
]

if TYPE_CHECKING:  # what type checkers and editors see; nothing is imported at run time
    from leadflow.app.runtime import Runtime
    from leadflow.intake import RawRecord
    from leadflow.integrations.base import (
        CRM,
        Adapter,
        EventSink,
        LeadEvent,
        LeadSource,
        LegacyProcess,
        Notifier,
        RunAlert,
        Scorer,
        SlaNotice,
    )
    from leadflow.integrations.errors import (
        AdapterError,
        AuthenticationError,
        PermanentError,
        RateLimited,
        TransientError,
    )
    from leadflow.integrations.registry import register
    from leadflow.models import (
        Assignment,
        BranchResult,
        BranchStatus,
        CrmMatch,
        Decision,
        FollowUpType,
        Lead,
        LeadOutcome,
        Score,
        ScoreReason,
        StepTiming,
    )
    from leadflow.rules import Rules, RulesError, ScoringRules, load_rules
    from leadflow.settings import (
        AdapterSettings,
        ScorerSettings,
        Settings,
        SettingsError,
        load_settings,
    )
    from leadflow.shadow_settings import ShadowSettings
    from leadflow.testing import (
        AdapterContract,
        CRMContract,
        EventSinkContract,
        HttpVendor,
        LeadSourceContract,
        LegacyContract,
        LocalStore,
        NotifierContract,
        ScorerContract,
    )
else:  # a module __getattr__ only at run time: type checkers still flag a wrong name

    def __getattr__(name: str) -> object:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'leadflow' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
