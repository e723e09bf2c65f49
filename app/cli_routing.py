"""The routing commands: `leadflow why EMAIL` (why a lead got its tier and its owner),
`leadflow rules test` (a rules file's example leads against their expected outcomes)
and `leadflow backtest` (the stored decisions replayed with new rules).

Registered on the main `leadflow` app by leadflow.app.cli. They read leadflow's
database and the rules file only: no Prefect server, no vendor.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from leadflow.app.console import checked_settings, err, fail, out, runtime_for
from leadflow.settings import SettingsError, load_settings


class RoutedAt(StrEnum):
    """When `leadflow backtest` routes each lead (leadflow.backtest.routed_at)."""

    DECIDED = "decided"
    CREATED = "created"


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


def backtest(
    rules_file: Annotated[Path, typer.Option("--rules", help="The new rules file (TOML or YAML).")],
    since: Annotated[
        str,
        typer.Option(help="Window start: a duration back from now (14d, 36h) or a date."),
    ] = "14d",
    at: Annotated[
        RoutedAt,
        typer.Option(
            help=(
                "Route each lead at the instant it was decided, or (created) at its "
                "created_at, for history loaded from files after the fact."
            ),
        ),
    ] = RoutedAt.DECIDED,
    keep_scores: Annotated[
        bool,
        typer.Option(
            help="Keep the stored scores (made by a scorer other than the rules' points)."
        ),
    ] = False,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the HTML report and the CSV.")
    ] = Path(".leadflow/reports"),
) -> None:
    """Decide the leads leadflow decided over the window again with new rules, and
    report per field (tier, follow-up, rep, rule) how many leads would change and how:
    a table here, an HTML report and a CSV of the changed leads. Uses the leads and CRM
    matches stored with the decisions: no vendor is called and the live rotation does
    not move (the replay's round robin starts fresh at the window's start). Exit 1
    when no decision is stored in the window, 2 for bad rules or options."""
    from leadflow.rules import RulesError, load_rules

    settings = checked_settings(verbose=False)
    try:
        rules = load_rules(rules_file)
    except RulesError as exc:
        raise fail(str(exc)) from None
    from leadflow.backtest import window_start

    until = datetime.now(UTC)
    try:
        start = window_start(since, until)
    except ValueError as exc:
        raise fail(str(exc)) from None
    runtime = runtime_for(settings)
    records = asyncio.run(_replay(runtime, rules, start, until, at.value, keep_scores))
    if not records:
        raise fail(
            f"no decisions stored since {start:%Y-%m-%d %H:%M} UTC in "
            f"{settings.database_url.rsplit('/', 1)[-1]}: nothing to replay",
            code=1,
        )
    _print_backtest(records, rules, start, until, out_dir)


async def _replay(runtime, rules, start, until, at, keep_scores):
    from leadflow.backtest import replay
    from leadflow.db import dispose_engines

    try:
        return await replay(runtime.decisions, rules, start, until, at=at, keep_scores=keep_scores)
    finally:
        await runtime.aclose()
        await dispose_engines()


def _print_backtest(records, rules, start, until, out_dir: Path) -> None:
    from rich.table import Table

    from leadflow.backtest import changes, report
    from leadflow.report_render import BACKTEST, as_html, mismatches_csv

    table = Table(title=f"Backtest of {len(records)} leads since {start:%Y-%m-%d %H:%M} UTC")
    for column in ("field", "changed", "how (commonest first)"):
        table.add_column(column)
    for found in changes(records):
        table.add_row(
            found.field,
            f"{found.changed} of {found.leads}",
            escape(found.commonest()) if found.changed else "-",
        )
    out.print(table)
    built = report(records, start, until, rules)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{until:%Y%m%d-%H%M%S}"
    html, csv = out_dir / f"backtest-{stamp}.html", out_dir / f"backtest-{stamp}.csv"
    html.write_text(as_html(built, BACKTEST), encoding="utf-8")
    csv.write_text(mismatches_csv(built, BACKTEST), encoding="utf-8", newline="")
    out.print(escape(built.verdict), highlight=False)
    out.print(f"HTML report: {html}", highlight=False)
    out.print(f"Changed leads (CSV): {csv}", highlight=False)
