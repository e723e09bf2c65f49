"""`leadflow rules test`: a rules file's example leads decided with that file and
checked against their expected outcomes; the example rules' own examples run here."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadflow.app.cli import app
from leadflow.rules import RulesError, load_rules
from leadflow.rules_examples import failure_lines, run_examples
from tests.support.paths import EXAMPLES

ROUTING = EXAMPLES / "routing.toml"
runner = CliRunner()


async def test_the_example_rules_give_their_examples_the_expected_outcomes() -> None:
    rules = load_rules(ROUTING)
    results = await run_examples(rules)
    assert len(results) == len(rules.examples) >= 8
    assert failure_lines(ROUTING, results) == []


def with_examples(tmp_path: Path, examples: str) -> Path:
    """The example routing rules with `examples` in place of theirs."""
    text = ROUTING.read_text(encoding="utf-8")
    path = tmp_path / "rules.toml"
    path.write_text(text[: text.index("[[examples]]")] + examples, encoding="utf-8")
    return path


MONDAY_VP = """
[[examples]]
name = "monday VP"
at = 2026-11-23T14:30:00Z
expect = { tier = "hot", rep = "alice@example.com" }
[examples.lead]
email = "ava@northwind.test"
title = "VP Sales"
country = "US"
employee_count = 320
source = "demo_request"
demo_requested = true
"""


def test_a_mismatch_is_one_line_naming_the_file_the_example_and_each_field(
    tmp_path: Path,
) -> None:
    wrong = MONDAY_VP.replace('"monday VP"', '"wrong"').replace(
        'tier = "hot", rep = "alice@example.com"',
        'tier = "warm", follow_up = "call", rep = "bob@example.com"',
    )
    path = with_examples(tmp_path, MONDAY_VP + wrong)
    result = runner.invoke(app, ["rules", "test", str(path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "ok    examples.0 'monday VP': hot (score 80), call, alice@example.com by "
        "territory:north-america/round_robin:na",
        "2 examples: 1 as expected, 1 not",
    ]
    # each example starts a fresh rotation: the second is alice's too, not bob's
    assert result.stderr.splitlines() == [
        f"FAIL  {path}: examples.1 'wrong': tier: expected warm, got hot; rep: expected "
        "bob@example.com, got alice@example.com [got hot (score 80), call, "
        "alice@example.com by territory:north-america/round_robin:na]"
    ]


def test_the_example_rules_pass_on_the_command_line() -> None:
    result = runner.invoke(app, ["rules", "test", str(ROUTING)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "8 examples: 8 as expected, 0 not"


def test_a_file_without_examples_tests_nothing_and_says_so() -> None:
    result = runner.invoke(app, ["rules", "test", str(EXAMPLES / "rules.toml")])
    assert result.exit_code == 1
    assert "no examples to test; add [[examples]]" in result.stderr


# (text in MONDAY_VP, what replaces it, what the error says)
BAD_EXAMPLES = {
    "unknown-tier": ('tier = "hot"', 'tier = "scorching"', "examples.0.expect.tier: 'scorching'"),
    "no-instant": ("at = 2026-11-23T14:30:00Z", "", "give `at`, the instant the lead is routed"),
    "no-offset": ("14:30:00Z", "14:30:00", "at: give a time zone offset"),
    "bad-lead": ('"ava@northwind.test"', '"ava"', "'ava' is not an email address"),
    "nothing-expected": (
        'expect = { tier = "hot", rep = "alice@example.com" }',
        "expect = {}",
        "give at least one of score, tier, follow_up, rep, rule",
    ),
}


@pytest.mark.parametrize(("old", "new", "error"), BAD_EXAMPLES.values(), ids=BAD_EXAMPLES)
def test_a_bad_example_is_an_error_naming_it(
    tmp_path: Path, old: str, new: str, error: str
) -> None:
    path = with_examples(tmp_path, MONDAY_VP.replace(old, new))
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert error in str(caught.value)
    result = runner.invoke(app, ["rules", "test", str(path)])
    assert result.exit_code == 2
