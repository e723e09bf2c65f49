"""Settings, read once from the environment and `.env` with the prefix LEADFLOW_.

Nested sections use a double underscore: `LEADFLOW_PIPELINE__CONCURRENCY=16`.
Adapters own their settings (see `AdapterSettings`), each with a prefix derived
from its name, e.g. `LEADFLOW_WEBHOOK_URL`. Every default works on a fresh clone
with no account and no server: SQLite under .leadflow/, the sample rules in
examples/. A wrong value fails at start-up with `SettingsError`, whose message names
the environment variable to fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


class AdapterChoice(BaseModel):
    """Which registered adapter serves each kind (`leadflow adapters` lists them)."""

    source: str = Field(default="file", description="where leads come from")
    crm: str = Field(default="local", description="CRM for the look-up and the upsert")
    notifier: str = Field(default="terminal", description="how the sales team is told")
    event_sink: str = Field(default="sqlite", description="where reporting events go")
    scorer: str = Field(default="rules", description="what scores a lead")


class PipelineSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    concurrency: int = Field(default=8, ge=1, le=512, description="leads in flight at once")
    retries: int = Field(
        default=3, ge=0, le=20, description="retries per branch on transient errors"
    )
    retry_backoff_seconds: float = Field(
        default=1.0, ge=0, description="first retry delay; doubles each retry"
    )
    retry_jitter_factor: float = Field(
        default=0.5, ge=0, le=5, description="random spread added to each retry delay"
    )
    max_retry_after_seconds: float = Field(
        default=60.0, ge=0, description="longest Retry-After a vendor may impose"
    )
    batch_size: int = Field(
        default=100, ge=1, le=1000, description="leads per micro-batch on the backlog path"
    )
    batch_threshold: int = Field(
        default=500,
        ge=0,
        description="`leadflow run` and the poller use micro-batches above this many records",
    )
    drain_seconds: float = Field(
        default=30.0, ge=0, description="how long an interrupted batch run finishes what it took"
    )


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="lowest level written"
    )
    format: Literal["auto", "console", "json"] = Field(
        default="auto", description="auto: readable on a terminal, JSON otherwise"
    )


ENV_PREFIX = "LEADFLOW_"


class Settings(BaseSettings):
    """leadflow's own settings. Build with `load_settings()` for clear errors."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        env_ignore_empty=True,  # `KEY=` in .env means "use the default"
    )

    rules_path: Path = Field(
        default=Path("examples/rules.toml"), description="scoring, tiers and assignment rules"
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///.leadflow/leadflow.db",
        description="SQLAlchemy async URL; postgresql+asyncpg://... works too",
    )
    drop_folder: Path = Field(
        default=Path(".leadflow/inbox"), description="folder the poll-leads deployment watches"
    )
    adapters: AdapterChoice = Field(default_factory=AdapterChoice)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    log: LogSettings = Field(default_factory=LogSettings)


T = TypeVar("T", bound=BaseSettings)

# A value is never echoed back for a field that is, or is named like, a secret.
_SECRET_NAME = re.compile(r"token|secret|password|api_key|authorization", re.IGNORECASE)


class AdapterSettings(BaseSettings):
    """Base for an adapter's own settings: subclass with `env_prefix="LEADFLOW_<NAME>_"`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)


def load_settings(cls: type[T] = Settings, **overrides: object) -> T:  # type: ignore[assignment]
    """Build a settings class, turning a ValidationError into a SettingsError that names
    each offending environment variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_settings_error(cls, exc)) from None


def describe_settings_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    lines = ["invalid settings:"]
    for error in exc.errors():
        name = prefix + delimiter.join(str(part) for part in error["loc"]).upper()
        if error["type"] == "missing":
            lines.append(f"  {name}: required, not set")
            continue
        message = error["msg"].removeprefix("Value error, ")
        shown = "" if _is_secret(cls, error["loc"]) else f" (got {error.get('input')!r})"
        lines.append(f"  {name}: {message}{shown}")
    return "\n".join(lines)


def _is_secret(cls: type[BaseSettings], loc: tuple[int | str, ...]) -> bool:
    if any(_SECRET_NAME.search(str(part)) for part in loc):
        return True
    field = cls.model_fields.get(str(loc[0])) if loc else None
    return field is not None and "SecretStr" in repr(field.annotation)
