"""Settings from the environment, errors that name the variable, and .env.example."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow.settings import (
    ENV_PREFIX,
    AdapterSettings,
    PipelineSettings,
    Settings,
    SettingsError,
    env_names,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No LEADFLOW_ variable and no .env from the developer's shell or checkout."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.rules_path == Path("examples/rules.toml")
    assert settings.database_url == "sqlite+aiosqlite:///.leadflow/leadflow.db"
    assert settings.drop_folder == Path(".leadflow/inbox")
    assert settings.adapters.model_dump() == {
        "source": None,
        "crm": "local",
        "notifier": "terminal",
        "event_sink": "sqlite",
        "scorer": "rules",
    }
    assert settings.pipeline == PipelineSettings()
    assert settings.pipeline.concurrency == 8
    assert settings.pipeline.retries == 3
    assert (settings.log.level, settings.log.format) == ("INFO", "auto")


def test_env_vars_with_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "sqlite+aiosqlite:///elsewhere.db")
    monkeypatch.setenv("LEADFLOW_RULES_PATH", "/etc/leadflow/rules.yaml")
    monkeypatch.setenv("LEADFLOW_PIPELINE__CONCURRENCY", "16")
    monkeypatch.setenv("LEADFLOW_PIPELINE__RETRY_BACKOFF_SECONDS", "0.25")
    monkeypatch.setenv("LEADFLOW_ADAPTERS__CRM", "acme")
    monkeypatch.setenv("leadflow_log__level", "DEBUG")  # names are case-insensitive
    monkeypatch.setenv("DATABASE_URL", "postgresql://not-ours")  # no prefix: ignored
    settings = Settings(_env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:///elsewhere.db"
    assert settings.rules_path == Path("/etc/leadflow/rules.yaml")
    assert settings.pipeline.concurrency == 16
    assert settings.pipeline.retry_backoff_seconds == 0.25
    assert settings.pipeline.retries == 3  # the rest of the section keeps its defaults
    assert settings.adapters.crm == "acme"
    assert settings.adapters.notifier == "terminal"
    assert settings.log.level == "DEBUG"


def test_env_file_read(tmp_path: Path) -> None:
    env = tmp_path / "custom.env"
    env.write_text("LEADFLOW_PIPELINE__CONCURRENCY=32\nLEADFLOW_ADAPTERS__NOTIFIER=webhook\n")
    settings = Settings(_env_file=env)
    assert settings.pipeline.concurrency == 32
    assert settings.adapters.notifier == "webhook"


def test_load_settings_overrides() -> None:
    settings = load_settings(Settings, _env_file=None, database_url="sqlite+aiosqlite:///x.db")
    assert settings.database_url == "sqlite+aiosqlite:///x.db"


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        pytest.param(
            "LEADFLOW_PIPELINE__CONCURRENCY",
            "0",
            "LEADFLOW_PIPELINE__CONCURRENCY: Input should be greater than or equal to 1 (got '0')",
            id="concurrency-zero",
        ),
        pytest.param(
            "LEADFLOW_PIPELINE__CONCURRENCY",
            "many",
            "LEADFLOW_PIPELINE__CONCURRENCY: Input should be a valid integer",
            id="concurrency-text",
        ),
        pytest.param(
            "LEADFLOW_LOG__FORMAT",
            "xml",
            "LEADFLOW_LOG__FORMAT: Input should be 'auto', 'console' or 'json' (got 'xml')",
            id="log-format",
        ),
        pytest.param(
            "LEADFLOW_LOG__LEVEL",
            "LOUD",
            "LEADFLOW_LOG__LEVEL: Input should be",
            id="log-level",
        ),
        pytest.param(
            "LEADFLOW_PIPELINE__RETRIES",
            "-1",
            "LEADFLOW_PIPELINE__RETRIES: Input should be greater than or equal to 0",
            id="retries-negative",
        ),
    ],
)
def test_load_settings_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(Settings, _env_file=None)
    message = str(caught.value)
    assert message.startswith("invalid settings:\n")
    assert expected in message
    assert caught.value.__cause__ is None  # the pydantic traceback is not chained in


def test_load_settings_lists_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_PIPELINE__CONCURRENCY", "0")
    monkeypatch.setenv("LEADFLOW_LOG__FORMAT", "xml")
    with pytest.raises(SettingsError) as caught:
        load_settings(Settings, _env_file=None)
    lines = str(caught.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "LEADFLOW_PIPELINE__CONCURRENCY",
        "LEADFLOW_LOG__FORMAT",
    ]


class _VendorSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_VENDOR_")

    token: SecretStr
    credential: SecretStr | None = Field(default=None, min_length=12)
    api_key_count: int = 0
    retries: int = 1


def test_adapter_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_VENDOR_TOKEN", "tok-123")
    monkeypatch.setenv("LEADFLOW_VENDOR_RETRIES", "4")
    own = load_settings(_VendorSettings)
    assert own.token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(own)
    assert own.retries == 4


def test_adapter_settings_read_dotenv_in_cwd(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEADFLOW_VENDOR_TOKEN=from-dotenv\nUNRELATED=1\n")
    assert load_settings(_VendorSettings).token.get_secret_value() == "from-dotenv"


def test_missing_required_secret_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_VendorSettings)
    assert "LEADFLOW_VENDOR_TOKEN: required, not set" in str(caught.value)


def test_secret_values_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_VENDOR_TOKEN", "tok-123")
    monkeypatch.setenv("LEADFLOW_VENDOR_CREDENTIAL", "hunter2")  # SecretStr, too short
    monkeypatch.setenv("LEADFLOW_VENDOR_API_KEY_COUNT", "sk-live-abc")  # secret-like name
    monkeypatch.setenv("LEADFLOW_VENDOR_RETRIES", "several")  # ordinary field
    with pytest.raises(SettingsError) as caught:
        load_settings(_VendorSettings)
    message = str(caught.value)
    lines = {line.split(":")[0].strip(): line for line in message.splitlines()[1:]}
    assert set(lines) == {
        "LEADFLOW_VENDOR_CREDENTIAL",
        "LEADFLOW_VENDOR_API_KEY_COUNT",
        "LEADFLOW_VENDOR_RETRIES",
    }
    # the secrets are named but never shown ...
    assert "hunter2" not in message
    assert "sk-live-abc" not in message
    assert "(got" not in lines["LEADFLOW_VENDOR_CREDENTIAL"]
    assert "(got" not in lines["LEADFLOW_VENDOR_API_KEY_COUNT"]
    # ... while an ordinary value still is, to help fix it
    assert "(got 'several')" in lines["LEADFLOW_VENDOR_RETRIES"]


# --- .env.example ---------------------------------------------------------------------


def _settings_env_names(cls: type[BaseSettings]) -> list[str]:
    return env_names(cls)


def _adapter_settings_classes() -> list[type[AdapterSettings]]:
    """Every AdapterSettings subclass in the built-in integrations (found by importing
    every registered adapter), not a hand-kept list."""
    from leadflow.integrations.registry import adapter_settings_classes, list_adapters

    for info in list_adapters():
        assert info.load_error is None, info
    found = [
        c for c in adapter_settings_classes() if c.__module__.startswith("leadflow.integrations.")
    ]
    return sorted(found, key=lambda cls: cls.__name__)


def test_env_name_walk_sees_nested_and_adapter_fields() -> None:
    names = _settings_env_names(Settings)
    assert "LEADFLOW_PIPELINE__CONCURRENCY" in names
    assert "LEADFLOW_DATABASE_URL" in names
    assert "LEADFLOW_PIPELINE" not in names
    classes = {cls.__name__ for cls in _adapter_settings_classes()}
    assert {"LocalCrmSettings", "TerminalNotifierSettings", "WebhookNotifierSettings"} <= classes


def test_env_example_lists_every_setting() -> None:
    example = ROOT / ".env.example"
    if not example.exists():
        pytest.skip(".env.example not written yet")
    text = example.read_text()
    listed = set(re.findall(r"^[#\s]*([A-Z][A-Z0-9_]*)\s*=", text, flags=re.MULTILINE))
    expected = _settings_env_names(Settings)
    for cls in _adapter_settings_classes():
        expected += _settings_env_names(cls)
    missing = [name for name in expected if name not in listed]
    assert not missing, f".env.example does not mention: {', '.join(missing)}"


def test_the_run_mode_is_read_from_leadflow_mode_only(monkeypatch):
    """A plain MODE in the environment (another tool's) does not switch leadflow."""
    from leadflow.shadow_settings import ShadowSettings

    monkeypatch.setenv("MODE", "shadow")
    assert ShadowSettings(_env_file=None).mode == "live"
    monkeypatch.setenv("LEADFLOW_MODE", "pilot")
    assert ShadowSettings(_env_file=None).mode == "pilot"
    assert ShadowSettings(_env_file=None, mode="legacy").mode == "legacy"
