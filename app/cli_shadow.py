"""`leadflow shadow`, `leadflow report` and `leadflow mode`: the cut-over commands.

Plain functions, added to the main `leadflow` app by leadflow.app.cli; flows are
imported inside the commands, as there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from leadflow.app.console import (
    checked_settings,
    err,
    fail,
    out,
    quiet_prefect_console,
    run_command,
    run_flow,
    runtime_for,
    unless_failed,
)
from leadflow.settings import SettingsError, load_settings
from leadflow.shadow_settings import ShadowSettings

if TYPE_CHECKING:
    from leadflow.flows.shadow_summary import ShadowRunSummary

LEGACY_HELP = (
    "The current process: python:module:function, command:PROGRAM, http:URL, "
    "observed:EXPORT.csv|jsonl|crm, rules:RULES.toml."
)


def shadow(
    file: Annotated[
        Path, typer.Argument(help="The lead file: CSV, TSV, .txt, workbook, JSON or JSON Lines.")
    ],
    legacy: Annotated[str, typer.Option("--legacy", "-l", help=LEGACY_HELP)],
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="The current process's calls at once.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            help="Leads per group.",
            show_default="LEADFLOW_PIPELINE__BATCH_SIZE",
        ),
    ] = None,
) -> None:
    """Run leadflow beside the current process over FILE, with no side effects, and
    store each lead's comparison (then see `leadflow report`).

    Nothing is sent, written to the CRM or logged as an event: leadflow's side effects
    are recorded, not performed. Exit 0 when every lead was compared, 1 when either
    side failed for some lead, 2 for bad input or settings.
    """
    if not verbose:
        quiet_prefect_console()  # before the imports below bring Prefect in
    from leadflow.flows.files import check_lead_file
    from leadflow.integrations.legacy_spec import build_legacy

    try:
        check_lead_file(file)
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = checked_settings(verbose)
    runtime = runtime_for(settings)
    try:
        # fail before starting a run
        build_legacy(legacy, settings, load_settings(ShadowSettings))
    except SettingsError as exc:
        raise fail(str(exc)) from None
    from leadflow.flows.shadow import shadow_file

    result, _run_id, _trouble = run_command(
        run_flow(
            runtime,
            shadow_file,
            progress=True,
            path=file,
            legacy=legacy,
            concurrency=concurrency,
            batch_size=batch_size,
        )
    )
    summary = unless_failed(result)
    print_shadow_summary(summary)
    if summary.control_errors or summary.candidate_errors:
        raise typer.Exit(1)


def print_shadow_summary(summary: ShadowRunSummary) -> None:
    out.print()
    out.print(
        f"[bold]{summary.compared}[/] of {summary.records} records compared from "
        f"{summary.file} against {summary.legacy} in {summary.wall_seconds:.1f} s; "
        "nothing sent or written",
        highlight=False,
    )
    outcomes = Table(title="By outcome", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("leads", justify="right")
    for outcome in ("matched", "mismatched", "ignored", "error"):
        if summary.outcomes.get(outcome):
            outcomes.add_row(outcome, str(summary.outcomes[outcome]))
    out.print(outcomes)
    fields = Table(title="Agreement by field", title_justify="left")
    for column in ("field", "agreement", "mismatches"):
        fields.add_column(column, justify="left" if column == "field" else "right")
    for field, share in summary.agreement.items():
        fields.add_row(field, f"{share:.1%}", str(summary.mismatched_fields.get(field, 0)))
    out.print(fields)
    for side, errors, total in (
        ("current process", summary.control_errors, summary.control_errors_total),
        ("leadflow", summary.candidate_errors, summary.candidate_errors_total),
    ):
        for error in errors:
            err.print(f"[red]{side} failed:[/] {error}", highlight=False)
        if total > len(errors):
            err.print(f"[red]{side} failed:[/] and {total - len(errors)} more", highlight=False)
    if summary.set_aside_total:
        out.print(f"Set aside (not compared): {summary.set_aside_total} records")
    out.print(f"Wall time: {summary.wall_seconds:.2f} s")
    out.print("Next: `leadflow report` for agreement over the window and the verdict")


def report(
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Window in days.", show_default="LEADFLOW_SHADOW__WINDOW_DAYS"),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for the HTML and CSV.",
            show_default="LEADFLOW_SHADOW__REPORT_DIR",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Report on the shadow comparisons over the window: agreement per field, tier
    confusion, commonest mismatches, latency and errors of both sides, and the verdict
    (ready / not ready, naming each failed gate / not enough data). Writes an HTML
    report and a CSV of mismatches, and publishes Prefect artifacts."""
    if not verbose:
        quiet_prefect_console()
    from rich.markdown import Markdown

    from leadflow.flows.report import shadow_report

    runtime = runtime_for(checked_settings(verbose))
    found, _run_id, _trouble = run_command(
        run_flow(
            runtime, shadow_report, window_days=days, out_dir=str(out_dir) if out_dir else None
        )
    )
    result = unless_failed(found)
    out.print(Markdown(result.markdown))
    out.print(f"HTML report: {result.html_path}", highlight=False)
    out.print(f"Mismatches (CSV): {result.csv_path}", highlight=False)


def mode(
    new: Annotated[
        str | None,
        typer.Argument(help="legacy, shadow, pilot or live; omit to show the current mode."),
    ] = None,
) -> None:
    """Show or set the run mode (the Prefect Variable leadflow_mode), read as leads
    are taken in, a group at a time (`leadflow run`, the deployments, the poll, webhook
    leads, `leadflow cutover`; `leadflow lead` once): legacy (leadflow does nothing),
    shadow (both run, leadflow records instead of acting; the current process from
    LEADFLOW_SHADOW__LEGACY), pilot (a sticky share through leadflow for real, falling
    back to the current process on failure), live (leadflow acts on every lead).
    Setting `legacy` is the kill switch."""
    quiet_prefect_console()
    from leadflow.flows.mode import stored_mode_offline

    if new is None and (stored := stored_mode_offline()) is not None:
        out.print(f"mode: [bold]{stored}[/]", highlight=False)  # no server needed to read it
        return
    from leadflow.flows.cutover import ModeError, current_mode, set_mode
    from leadflow.flows.temporary_server import prefect_api

    checked_settings(False)

    async def work() -> str:
        async with prefect_api():
            if new is not None:
                await set_mode(new)
            return await current_mode()

    try:
        shown = asyncio.run(work())
    except ModeError as exc:
        raise fail(str(exc)) from None
    out.print(f"mode: [bold]{shown}[/]" + (" (set)" if new else ""), highlight=False)


def cutover(
    file: Annotated[
        Path, typer.Argument(help="The lead file: CSV, TSV, .txt, workbook, JSON or JSON Lines.")
    ],
    legacy: Annotated[
        str | None, typer.Option("--legacy", "-l", help=LEGACY_HELP + " Needed in shadow/pilot.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Groups in flight at once.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, max=1000, help="Leads per group [default: LEADFLOW_PIPELINE__BATCH_SIZE]."
        ),
    ] = None,
) -> None:
    """Process FILE the way the current mode (`leadflow mode`) says, and print where
    each lead went: the current process, shadow, leadflow, or a pilot fallback. The
    mode is read as each group of leads is taken in."""
    if not verbose:
        quiet_prefect_console()
    from leadflow.flows.files import check_lead_file

    try:
        check_lead_file(file)
    except ValueError as exc:
        raise fail(str(exc)) from None
    runtime = runtime_for(checked_settings(verbose))
    from leadflow.flows.cutover import cutover_file

    result, _run_id, _trouble = run_command(
        run_flow(
            runtime,
            cutover_file,
            progress=True,
            path=file,
            legacy=legacy,
            concurrency=concurrency,
            batch_size=batch_size,
        )
    )
    from leadflow.flows.summary import LeadsFailedError

    summary = result.summary if isinstance(result, LeadsFailedError) else unless_failed(result)
    out.print(f"modes: {' -> '.join(summary.modes)}", highlight=False)
    table = Table(title=f"Leads from {summary.file}", title_justify="left")
    table.add_column("went to")
    table.add_column("leads", justify="right")
    for route, count in sorted((summary.routes or {"leadflow": summary.processed}).items()):
        table.add_row(route, str(count))
    out.print(table)
    for failure in summary.failed:
        err.print(f"[red]failed:[/] {failure.who}: {failure.branch}: {failure.reason}")
    if summary.failed_total:
        raise typer.Exit(1)
