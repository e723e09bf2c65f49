"""Settings of shadow mode, the report and the cut-over, with the prefix
LEADFLOW_SHADOW__ (e.g. `LEADFLOW_SHADOW__GATES__MIN_AGREEMENT=0.98`), and the
default run mode `LEADFLOW_MODE`.

Kept apart from leadflow.settings so that a pipeline that never shadows anything
reads none of it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow.compare import CompareRules

Mode = Literal["legacy", "shadow", "pilot", "live"]
MODES: tuple[str, ...] = ("legacy", "shadow", "pilot", "live")


class Gates(BaseModel):
    """What the report requires before it says `ready`."""

    min_sample: int = Field(default=50, ge=1, description="below this: not enough data")
    min_agreement: float = Field(
        default=0.95, ge=0, le=1, description="per compared field, after the noise baseline"
    )
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="leadflow's failures")
    max_p95_ms: float = Field(default=2000.0, gt=0, description="leadflow's p95 decision time")
    max_fallback_rate: float = Field(
        default=0.02, ge=0, le=1, description="pilot leads handed back to the current process"
    )


class ShadowSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LEADFLOW_SHADOW__",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        env_ignore_empty=True,
        populate_by_name=True,  # ShadowSettings(mode=...) in code; MODE is not read
    )

    mode: Mode = Field(
        default="live",
        validation_alias=AliasChoices("LEADFLOW_MODE", "LEADFLOW_SHADOW__MODE"),
        description="run mode when the Prefect Variable leadflow_mode is not set",
    )
    legacy: str | None = Field(
        default=None,
        description=(
            "the current process (a --legacy spec, e.g. python:module:function) that "
            "process-file, process-lead and the poll compare with in shadow and pilot modes"
        ),
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///.leadflow/shadow.db",
        description="comparison store (and shadow runs' own round-robin state)",
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="longest either side may take for one lead (a cold Prefect API is slow)",
    )
    look_up: bool = Field(
        default=True,
        description="leadflow's CRM look-up (a read) in shadow runs; false: no CRM call at all",
    )
    window_days: int = Field(default=14, ge=1, description="report window")
    baseline_sample: int = Field(
        default=20, ge=0, description="leads the current process decides twice (noise baseline)"
    )
    pilot_share: float = Field(
        default=0.1, ge=0, le=1, description="share of leads leadflow handles in pilot mode"
    )
    report_dir: str = Field(default=".leadflow/reports", description="HTML and CSV reports")
    compare: CompareRules = Field(default_factory=CompareRules)
    gates: Gates = Field(default_factory=Gates)
