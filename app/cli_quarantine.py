"""`leadflow quarantine list|export|replay`: the records set aside by validation.

Added to the app by leadflow.app.cli.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leadflow.app.console import (
    checked_settings,
    err,
    out,
    quiet_prefect_console,
    run_command,
    run_flow,
    runtime_for,
    unless_failed,
)
from leadflow.settings import Settings

quarantine_app = typer.Typer(
    help="Records set aside by validation: list, export for fixing, replay.",
    no_args_is_help=True,
)


@quarantine_app.command("list")
def quarantine_list() -> None:
    """Show records waiting in the quarantine, with their file, row and reason."""
    settings = checked_settings(False)
    rejected = asyncio.run(_pending(settings))
    if not rejected:
        out.print("The quarantine is empty.")
        return
    table = Table(title=f"{len(rejected)} records set aside", title_justify="left")
    for column in ("key", "file", "row", "record", "reason"):
        table.add_column(column)
    for r in rejected:
        table.add_row(r.key, r.origin, str(r.position), r.lead_ref, r.reason)
    out.print(table)


@quarantine_app.command("export")
def quarantine_export(
    target: Annotated[Path, typer.Argument(help="JSONL file to write.")],
) -> None:
    """Write waiting records to a JSONL file to fix by hand, then `quarantine replay FILE`."""
    from leadflow.flows.replay import KEY_FIELD, REASON_FIELD

    settings = checked_settings(False)
    rejected = asyncio.run(_pending(settings))
    with target.open("w", encoding="utf-8") as handle:
        for r in rejected:
            handle.write(json.dumps({KEY_FIELD: r.key, REASON_FIELD: r.reason, **r.data}) + "\n")
    out.print(f"{len(rejected)} records written to {target}")


@quarantine_app.command("replay")
def quarantine_replay(
    fixed: Annotated[
        Path | None,
        typer.Argument(help="JSONL from `quarantine export`, fixed; default: records as stored."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Send set-aside records through the pipeline again. Those that now pass are
    processed and leave the quarantine; those that still fail stay, with the new reason."""
    if not verbose:
        quiet_prefect_console()  # before the import below brings Prefect in
    from leadflow.flows.replay import replay_quarantine

    runtime = runtime_for(checked_settings(verbose))
    corrected = str(fixed) if fixed else None
    result, _run_id, _trouble = run_command(
        run_flow(runtime, replay_quarantine, corrected=corrected)
    )
    summary = unless_failed(result)
    for item in summary.still_set_aside:
        err.print(
            f"still set aside: row {item.position} ({item.lead_ref}): {item.reason}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for item in summary.failed:
        err.print(f"failed: {item.lead_id} {item.branch}: {item.reason}", highlight=False)
    out.print(
        f"{summary.replayed} records processed and out of the quarantine; "
        f"{len(summary.still_set_aside)} still set aside; {len(summary.failed)} failed"
    )
    raise typer.Exit(1 if summary.still_set_aside or summary.failed else 0)


async def _pending(settings: Settings):
    from leadflow.db import dispose_engines
    from leadflow.intake import Quarantine

    try:
        return await Quarantine(settings.database_url).pending()
    finally:
        await dispose_engines()
