"""The routing commands: `leadflow why EMAIL` (why a lead got its tier and its owner)
and `leadflow rules test` (a rules file's example leads against their expected
outcomes).

Registered on the main `leadflow` app by leadflow.app.cli. They read leadflow's
database and the rules file only: no Prefect server, no vendor.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from leadflow.app.console import checked_settings, err, fail, out
from leadflow.settings import SettingsError, load_settings

rules_app = typer.Typer(help="The rules file: check it against its example leads.")


def why(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
) -> None:
    """Why a lead got its tier and its owner: the stored decision with the score's
    reasons, and the facts its assignment was made from (territory, team, weights and
    round-robin credits, who was skipped and why, the SLA). Exit 1 when leadflow has
    no decision stored for EMAIL."""
    from leadflow.db import dispose_engines
    from leadflow.why import describe, explain

    settings = checked_settings(verbose=False)

    async def read():
        try:
            return await explain(settings.database_url, email)
        finally:
            await dispose_engines()

    found = asyncio.run(read())
    if not found:
        raise fail(f"no decision stored for {email.strip().lower()}", code=1)
    for index, explanation in enumerate(found):
        if index:
            out.print()
        out.print("\n".join(describe(explanation)), highlight=False, soft_wrap=True)


@rules_app.command("test")
def rules_test(
    rules_file: Annotated[
        Path | None,
        typer.Argument(help="The rules file (TOML or YAML).", show_default="LEADFLOW_RULES_PATH"),
    ] = None,
) -> None:
    """Decide every example lead of the rules file ([[examples]]: a lead, the instant
    it is routed, what the CRM would find, the expected tier, follow-up, rep, rule)
    and compare. Each example is decided alone, as the first lead of a fresh rotation,
    with the file's scoring and no vendor. Exit 1 with one line per failed example
    (or when the file has no examples), 2 when the file is not valid."""
    from leadflow.rules import RulesError, load_rules
    from leadflow.rules_examples import failure_lines

    if rules_file is None:
        try:
            rules_file = load_settings().rules_path
        except SettingsError as exc:
            raise fail(str(exc)) from None
    try:
        rules = load_rules(rules_file)
    except RulesError as exc:
        raise fail(str(exc)) from None
    if not rules.examples:
        raise fail(
            f"{rules_file}: no examples to test; add [[examples]] with a lead and what "
            "it should get (see docs/how-to/routing.md)",
            code=1,
        )
    results = asyncio.run(_examples(rules))
    for result in results:
        if result.passed:
            line = f"ok    {result.label}: {result.summary()}"
            out.print(escape(line), highlight=False, soft_wrap=True)
    failures = failure_lines(rules_file, results)
    for line in failures:
        err.print(f"FAIL  {escape(line)}", highlight=False, soft_wrap=True)
    out.print(
        f"{len(results)} examples: {len(results) - len(failures)} as expected, {len(failures)} not",
        highlight=False,
    )
    if failures:
        raise typer.Exit(1)


async def _examples(rules):
    from leadflow.db import dispose_engines
    from leadflow.rules_examples import run_examples

    try:
        return await run_examples(rules)
    finally:
        await dispose_engines()
