"""`leadflow check` and `leadflow check --live`, in-process through typer's runner;
the live check talks to a real loopback server standing in for HubSpot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from typer.testing import CliRunner

from leadflow.app.cli import app
from leadflow.integrations.checks import check_configuration
from leadflow.integrations.registry import get_adapter_class
from leadflow.loopback_vendor import FaultServer

runner = CliRunner()


def test_the_defaults_check_out(env) -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "configuration ok" in result.output


def test_a_bad_configuration_names_every_problem(env) -> None:
    env.setenv("LEADFLOW_ADAPTERS__CRM", "hubspot")
    env.setenv("LEADFLOW_ADAPTERS__NOTIFIER", "slak")
    env.setenv("LEADFLOW_ADAPTERS__EVENT_SINK", "segment")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    assert "LEADFLOW_HUBSPOT_TOKEN: required by the hubspot adapter" in result.output
    assert "LEADFLOW_ADAPTERS__NOTIFIER: no notifier adapter named 'slak'" in result.output
    assert "LEADFLOW_SEGMENT_WRITE_KEY: required by the segment adapter" in result.output


def test_each_problem_is_one_whole_line_in_a_narrow_terminal(env) -> None:
    """At 60 columns the table folds its cells, but every problem is also printed as
    one line that rich does not wrap, so it can be copied whole."""
    from leadflow.app import console

    env.setattr(console.out, "width", 60)
    env.setattr(console.err, "width", 60)
    env.setenv("LEADFLOW_ADAPTERS__CRM", "hubspot")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert max(len(line) for line in lines if line.startswith("│")) <= 60
    (line,) = [line for line in lines if line.startswith("error: ")]
    assert line.startswith("error: LEADFLOW_HUBSPOT_TOKEN: required by the hubspot adapter, not")
    assert line.endswith("LEADFLOW_HUBSPOT_TOKEN_BLOCK)")


def test_a_bad_setting_value_is_named(env) -> None:
    env.setenv("LEADFLOW_PIPELINE__CONCURRENCY", "0")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    assert "LEADFLOW_PIPELINE__CONCURRENCY" in result.output


def _hubspot(status: int) -> Callable[[httpx.Request], httpx.Response]:
    """HubSpot's contacts read, answering `status` to the token pat-1."""

    def contacts(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/crm/v3/objects/contacts"
        assert request.headers["authorization"] == "Bearer pat-1"
        return httpx.Response(status, json={"results": []})

    return contacts


@pytest.mark.parametrize(("status", "code", "word"), [(200, 0, "ok"), (401, 1, "failed")])
def test_live_makes_one_read_per_adapter(env, status, code, word) -> None:
    with FaultServer(_hubspot(status)) as hubspot:
        env.setenv("LEADFLOW_ADAPTERS__CRM", "hubspot")
        env.setenv("LEADFLOW_HUBSPOT_TOKEN", "pat-1")
        env.setenv("LEADFLOW_HUBSPOT_BASE_URL", hubspot.base_url)
        result = runner.invoke(app, ["check", "--live"])
    assert result.exit_code == code, result.output
    live = result.output.split("Live check")[1]
    row = next(line for line in live.splitlines() if "hubspot" in line)
    assert word in row
    if status == 200:
        assert "contacts readable" in row
    else:
        assert "AuthenticationError" in row and "pat-1" not in result.output
    assert "local: nothing to call" in live  # the other adapters, listed too


# Minimal settings that make each adapter buildable from the environment alone.
MINIMAL = {
    ("source", "http"): {"LEADFLOW_HTTP_SOURCE_URL": "http://127.0.0.1:9/leads"},
    ("source", "hubspot"): {"LEADFLOW_HUBSPOT_TOKEN": "pat"},
    ("crm", "hubspot"): {"LEADFLOW_HUBSPOT_TOKEN_BLOCK": "hubspot-token"},
    ("crm", "salesforce"): {
        "LEADFLOW_SALESFORCE_BASE_URL": "https://x.my.salesforce.com",
        "LEADFLOW_SALESFORCE_CLIENT_ID": "cid",
        "LEADFLOW_SALESFORCE_CLIENT_SECRET": "secret",
    },
    ("crm", "pipedrive"): {"LEADFLOW_PIPEDRIVE_API_TOKEN": "t"},
    ("notifier", "slack_webhook"): {"LEADFLOW_SLACK_WEBHOOK_URL": "https://hooks.slack.com/x"},
    ("notifier", "slack"): {"LEADFLOW_SLACK_TOKEN": "xoxb", "LEADFLOW_SLACK_CHANNEL": "C1"},
    ("notifier", "teams"): {"LEADFLOW_TEAMS_URL": "https://x.logic.azure.com/w"},
    ("notifier", "email"): {"LEADFLOW_EMAIL_HOST": "smtp.x", "LEADFLOW_EMAIL_SENDER": "a@x.test"},
    ("notifier", "webhook"): {"LEADFLOW_WEBHOOK_URL": "https://hooks.x.test/h"},
    ("event_sink", "segment"): {"LEADFLOW_SEGMENT_WRITE_KEY": "wk"},
    ("event_sink", "webhook"): {"LEADFLOW_WEBHOOK_EVENTS_URL": "https://hooks.x.test/e"},
    ("scorer", "model"): {"LEADFLOW_MODEL_SCORER_MODEL": "m"},
}


def _registered() -> list[tuple[str, str]]:
    from leadflow.integrations.registry import list_adapters

    # The current process (kind `legacy`) is chosen by `--legacy KIND:TARGET`, not
    # through LEADFLOW_ADAPTERS__*.
    return [(i.kind, i.name) for i in list_adapters() if i.kind != "legacy"]


@pytest.mark.parametrize(("kind", "name"), _registered(), ids=lambda v: v)
def test_every_adapter_is_chosen_by_settings_alone(env, kind, name) -> None:
    env.setenv(f"LEADFLOW_ADAPTERS__{kind.upper()}", name)
    if (kind, name) in MINIMAL:
        # without its settings the adapter is refused, naming a variable
        found = check_configuration()
        (result,) = [r for r in found.results if r.kind == kind]
        assert not result.ok and "LEADFLOW_" in result.detail
        for key, value in MINIMAL[(kind, name)].items():
            env.setenv(key, value)
    found = check_configuration()
    assert found.ok, [r.detail for r in found.results if not r.ok]
    built = {a.kind: a for a in found.adapters}
    assert type(built[kind]) is get_adapter_class(kind, name)
    asyncio.run(found.aclose())
