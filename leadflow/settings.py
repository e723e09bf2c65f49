"""Settings, read once from the environment and `.env` with the prefix LEADFLOW_.

Nested sections use a double underscore: `LEADFLOW_PIPELINE__CONCURRENCY=16`.
Adapters own their settings (see `AdapterSettings`), each with a prefix derived
from its name, e.g. `LEADFLOW_WEBHOOK_URL`. Every default works on a fresh clone
with no account and no server: SQLite under .leadflow/, the sample rules in
examples/. A wrong value fails at start-up with `SettingsError`, whose message names
the environment variable to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, overload

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow.validation import Location, describe_errors

if TYPE_CHECKING:  # leadflow.rules loads the rules file's parser
    from leadflow.rules import ScoringRules


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


class AdapterChoice(BaseModel):
    """Which registered adapter serves each kind (`leadflow adapters` lists them)."""

    source: str | None = Field(
        default=None,
        description="a polled lead source for `leadflow poll-source` (http, hubspot); "
        "files are read by `leadflow run`",
    )
    crm: str = Field(default="local", description="CRM for the look-up and the upsert")
    notifier: str = Field(default="terminal", description="how the sales team is told")
    event_sink: str = Field(default="sqlite", description="where reporting events go")
    scorer: str = Field(default="rules", description="what scores a lead")


class PipelineSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    concurrency: int = Field(
        default=8, ge=1, le=512, description="groups of leads in flight at once"
    )
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
        default=100,
        ge=1,
        le=1000,
        description="leads per group when a file or a page of leads goes through the pipeline",
    )
    drain_seconds: float = Field(
        default=30.0, ge=0, description="how long an interrupted run finishes what it took"
    )
    claim_lease_seconds: float = Field(
        default=20.0,
        gt=0,
        description=(
            "a side-effect claim or an accepted lead is held this long without renewal "
            "(renewed while its holder lives); a killed holder's work is redone after it"
        ),
    )
    record_timeout_seconds: float = Field(
        default=120.0,
        ge=0,
        description="how long a busy database is waited for to record what a vendor answered",
    )


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="lowest level written"
    )
    format: Literal["auto", "console", "json"] = Field(
        default="auto", description="auto: readable on a terminal, JSON otherwise"
    )


class UiSettings(BaseModel):
    show_emails: bool = Field(
        default=True,
        description=(
            "name lead runs and tasks after the lead's email and show it in artifacts and "
            "UI log lines; false: the lead id instead (the run's parameters still hold the "
            "record)"
        ),
    )
    tag_tasks: bool = Field(
        default=False,
        description=(
            "also tag each lead's task runs (source, mode, tier, rep) for the UI's task-run "
            "filters; costs one Prefect API call per task run (Prefect looks up tag "
            "concurrency limits for tagged tasks)"
        ),
    )


class VendorLimit(BaseModel):
    """Limits on one adapter's calls, shared by every worker through Prefect's global
    concurrency limits (`leadflow limits apply` creates them)."""

    concurrency: int | None = Field(
        default=None, ge=1, description="calls in flight at once, across all workers"
    )
    per_second: float | None = Field(
        default=None, gt=0, description="calls started per second, across all workers"
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
    availability_path: Path = Field(
        default=Path(".leadflow/availability.toml"),
        description=(
            "the operator's time-away file ([[away]] rep, start, end, reason), read again "
            "when it changes; no file: no overrides"
        ),
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///.leadflow/leadflow.db",
        description="SQLAlchemy async URL; postgresql+asyncpg://... works too",
    )
    drop_folder: Path = Field(
        default=Path(".leadflow/inbox"), description="folder the poll-leads deployment watches"
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "file headers -> lead fields, for headers the built-in aliases do not know, "
            'as JSON: {"Mail": "email", "Requested a demo?": "demo_requested"}'
        ),
    )
    date_order: Literal["MDY", "DMY"] | None = Field(
        default=None,
        description=(
            "how to read a date such as 01/02/2026 in a file's column where no value "
            "settles it (a day above 12 does): MDY (month first, the US form) or DMY; "
            "empty: month first, or day first for dates written with dots (20.11.2026)"
        ),
    )
    sheet: str | None = Field(
        default=None,
        description="the sheet of a workbook (.xlsx, .xls, .ods) to read; empty: the first",
    )
    adapters: AdapterChoice = Field(default_factory=AdapterChoice)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    limits: dict[str, VendorLimit] = Field(
        default_factory=dict,
        description="per adapter name: LEADFLOW_LIMITS__<ADAPTER>__CONCURRENCY / __PER_SECOND",
    )


T = TypeVar("T", bound=BaseSettings)


class AdapterSettings(BaseSettings):
    """Base for an adapter's own settings: subclass with `env_prefix="LEADFLOW_<NAME>_"`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)


class ScorerSettings(AdapterSettings):
    """A scorer's own settings (subclass it for settings of the scorer's own), with the
    rules' scoring part, which the wiring adds (`with_scoring`) and no environment
    variable sets: so every adapter is built by the one `from_settings(settings, own)`,
    and a scorer reads the points it scores by from `own.scoring`."""

    _scoring: ScoringRules | None = PrivateAttr(default=None)

    @property
    def scoring(self) -> ScoringRules:
        if self._scoring is None:
            raise SettingsError("a scorer is built with the rules: its settings lack them")
        return self._scoring

    def with_scoring(self, scoring: ScoringRules) -> Self:
        """A copy carrying the rules' scoring part."""
        copy = self.model_copy()
        copy._scoring = scoring
        return copy


@overload
def load_settings(**overrides: Any) -> Settings: ...
@overload
def load_settings(cls: type[T], **overrides: Any) -> T: ...
def load_settings(cls: type[BaseSettings] = Settings, **overrides: Any) -> BaseSettings:
    """Build a settings class, turning a ValidationError into a SettingsError that names
    each offending environment variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_settings_error(cls, exc)) from None


def describe_settings_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    """`invalid settings:` and a line per error naming the environment variable."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")

    def variable(loc: Location) -> str:
        return prefix + delimiter.join(str(part) for part in loc).upper()

    def typed_secret(loc: Location) -> bool:
        field = cls.model_fields.get(str(loc[0])) if loc else None
        return field is not None and "SecretStr" in repr(field.annotation)

    lines = describe_errors(
        exc.errors(), name=variable, missing="required, not set", hidden=typed_secret
    )
    return "\n".join(["invalid settings:", *(f"  {line}" for line in lines)])


# --- checks the command line runs before it starts anything --------------------------

_DRIVERS = {
    "sqlite+aiosqlite": ("aiosqlite", None),
    "postgresql+asyncpg": ("asyncpg", "postgres"),
}
_SUGGEST = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
}


def check_database_url(url: str) -> None:
    """Raise SettingsError naming LEADFLOW_DATABASE_URL and what to do, for a URL
    leadflow cannot use: a scheme it does not support, a driver that is not installed,
    a SQLite file that cannot be opened. Cheap: no server is contacted."""
    import importlib.util
    import sqlite3

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    name = f"{ENV_PREFIX}DATABASE_URL"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(
            f"{name}: not a database URL; use sqlite+aiosqlite:///path/to/file.db or "
            "postgresql+asyncpg://user:password@host/database"
        ) from None
    driver = parsed.drivername
    if driver not in _DRIVERS:
        hint = (
            f"write {_SUGGEST[driver]}://... instead"
            if driver in _SUGGEST
            else "leadflow supports sqlite+aiosqlite:///path/to/file.db and "
            "postgresql+asyncpg://user:password@host/database"
        )
        raise SettingsError(f"{name}: {driver}:// is not supported; {hint}")
    module, extra = _DRIVERS[driver]
    if importlib.util.find_spec(module) is None:
        raise SettingsError(
            f"{name}: {driver} needs the {module} package: pip install 'leadflow[{extra}]'"
        )
    if driver.startswith("sqlite") and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(path).execute("PRAGMA user_version").connection.close()
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SettingsError(
                f"{name}: cannot open the SQLite database {path} ({reason}); make its "
                "folder writable or point the setting at another file"
            ) from None


def env_names(cls: type[BaseSettings]) -> list[str]:
    """Every environment variable a settings class reads, nested sections included."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    return list(_env_names(cls, prefix, delimiter))


def _env_names(model: type[BaseModel], prefix: str, delimiter: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_names(annotation, f"{prefix}{name.upper()}{delimiter}", delimiter)
        else:
            names.append(f"{prefix}{name.upper()}")
        names += _aliases(field.validation_alias)  # read as they are, without the prefix
    return names


def _aliases(alias: object) -> list[str]:
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    return [choice.upper() for choice in choices if isinstance(choice, str)]


_TEST_PREFIX = f"{ENV_PREFIX}TEST_"  # read by the test suite, not by leadflow


def unknown_variables(
    variables: dict[str, str | None], settings_classes: list[type[BaseSettings]]
) -> list[str]:
    """A warning per LEADFLOW_* variable no settings class reads, with the closest
    known name. `settings_classes` are leadflow's and every adapter's (plug-ins
    included): each declares its prefix, so their variables are not reported."""
    import difflib

    known: set[str] = set()
    for cls in settings_classes:
        known.update(env_names(cls))
    warnings = []
    for variable in sorted(variables):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith(_TEST_PREFIX):
            continue
        if upper.startswith(tuple(f"{name}__" for name in known)):
            continue  # a dict-valued setting's key, e.g. LEADFLOW_COLUMNS__MAIL
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{variable} is not a leadflow setting and is ignored{hint}")
    return warnings
