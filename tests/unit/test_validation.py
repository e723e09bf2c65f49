"""One formatter for pydantic errors and one secret pattern, shared by settings, rules,
records and logs."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow.logging import REDACTED, redact_secrets
from leadflow.settings import SettingsError, load_settings
from leadflow.validation import describe_errors, is_secret_name


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int
    api_key: int = 0
    tags: list[int] = []


def errors_of(data: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Sample.model_validate(data)
    return describe_errors(caught.value.errors())


def test_a_line_names_the_field_and_shows_a_scalar_value() -> None:
    assert errors_of({"size": "lots"}) == [
        "size: Input should be a valid integer, unable to parse string as an integer (got 'lots')"
    ]


def test_missing_and_unknown_keys_say_so() -> None:
    assert errors_of({"sise": 3}) == [
        "size: required, missing",
        "sise: unknown key (check the spelling)",
    ]


def test_a_secret_named_field_never_shows_its_value() -> None:
    (line,) = errors_of({"size": 1, "api_key": "sk-live-123"})
    assert line.startswith("api_key: Input should be a valid integer")
    assert "sk-live-123" not in line


def test_a_list_item_is_named_by_its_position() -> None:
    assert errors_of({"size": 1, "tags": [1, "x"]})[0].startswith("tags.1: ")


class VendorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SAMPLEVENDOR_")

    password: SecretStr
    retries: int = 1


def test_settings_name_the_variable_and_hide_a_secret(monkeypatch) -> None:
    monkeypatch.setenv("LEADFLOW_SAMPLEVENDOR_RETRIES", "several")
    with pytest.raises(SettingsError) as caught:
        load_settings(VendorSettings, _env_file=None)
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid settings:"
    assert "  LEADFLOW_SAMPLEVENDOR_PASSWORD: required, not set" in lines
    assert any(
        line.startswith("  LEADFLOW_SAMPLEVENDOR_RETRIES:") and "(got 'several')" in line
        for line in lines
    )


def test_logs_redact_by_the_same_names() -> None:
    for name in ("token", "signing_secret", "password", "api_key", "authorization", "cookie"):
        assert is_secret_name(name)
        event = redact_secrets(None, "info", {name: "value", "lead": "ada@example.org"})
        assert event == {name: REDACTED, "lead": "ada@example.org"}
    assert not is_secret_name("idempotency_key")
