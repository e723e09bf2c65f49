"""The `leadflow` command line.

The command line is an entry point, so it is the one place in the core allowed to
start flows; it imports them inside the commands, keeping `leadflow --help` fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leadflow.logging import configure_logging
from leadflow.rules import RulesError
from leadflow.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from flows.files import FileRunSummary
    from flows.runtime import Runtime

app = typer.Typer(
    help=(
        "leadflow: the sales lead pipeline on Prefect. Settings come from LEADFLOW_* "
        "environment variables and .env (see .env.example)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
quarantine_app = typer.Typer(
    help="Records set aside by validation: list, export for fixing, replay.",
    no_args_is_help=True,
)
app.add_typer(quarantine_app, name="quarantine")

out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _settings(verbose: bool) -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    configure_logging(settings.log, console_level="DEBUG" if verbose else "WARNING")
    if not verbose:
        _quiet_prefect_console()
    return settings


# The temporary Prefect server reports usage unless told not to; offline, every
# attempt logs an error. Opt in with PREFECT_SERVER_ANALYTICS_ENABLED=true.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _quiet_prefect_console() -> None:
    """Keep Prefect's per-run INFO lines off the terminal (the progress bar shows
    progress); they still go to the Prefect API and its UI. Prefect reads this when it
    sets up logging, at the first run, so it must be set before then."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def _runtime(settings: Settings) -> Runtime:
    from flows.runtime import build_runtime

    try:
        return build_runtime(settings)
    except (SettingsError, RulesError) as exc:
        raise _fail(str(exc)) from None


class _Bar:
    """Adapts a rich Progress to flows.files.ProgressListener."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("leads", total=None)
        self.failed = 0

    def started(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def finished(self, lead_id: str, ok: bool) -> None:
        self.failed += not ok
        label = f"leads ([red]{self.failed} failed[/])" if self.failed else "leads"
        self.progress.update(self.task, advance=1, description=label)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL file of leads, one per row/line.")],
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Leads in flight at once [default: LEADFLOW_PIPELINE__CONCURRENCY]."
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 if any record was set aside (bad or duplicate).")
    ] = False,
    batch: Annotated[
        bool | None,
        typer.Option(
            "--batch/--per-lead",
            help="Micro-batches (the backlog path) or one set of tasks per lead "
            "[default: batches above LEADFLOW_PIPELINE__BATCH_THRESHOLD records].",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, max=1000, help="Leads per batch [default: LEADFLOW_PIPELINE__BATCH_SIZE]."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Run the pipeline over every lead in FILE and print a summary.

    Bad records are set aside in the quarantine with their row and reason and the rest
    go on. Exit codes: 0 done; 1 a side effect failed after its retries (or, with
    --strict, a record was set aside); 2 bad input or settings. Running the same file
    again repeats no side effect.
    """
    # Settings first: they quiet Prefect's console, which must happen before Prefect
    # is imported (importing a flow sets up Prefect's logging).
    settings = _settings(verbose)
    from flows.files import check_lead_file

    try:
        check_lead_file(file)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    runtime = _runtime(settings)
    if batch is None:
        from integrations.file_source import count_records

        batch = count_records(file) > settings.pipeline.batch_threshold
    options = {"batch_size": batch_size} if batch else {"concurrency": concurrency}
    summary = asyncio.run(_run_file(runtime, file, batch=batch, **options))
    _print_summary(summary)
    if summary.failed or (strict and summary.set_aside):
        raise typer.Exit(1)


async def _run_file(runtime: Runtime, file: Path, *, batch: bool, **options) -> FileRunSummary:
    from flows.batch import process_file_batched
    from flows.files import LeadsFailedError, listening, process_file
    from flows.runtime import use_runtime
    from flows.settle import settle
    from leadflow.db import dispose_engines

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    try:
        with use_runtime(runtime), progress, listening(_Bar(progress)):
            flow = process_file_batched if batch else process_file
            state = await flow(path=file, **options, return_state=True)
            result = await state.aresult(raise_on_failure=False)
        if state.state_details.flow_run_id:
            await settle(state.state_details.flow_run_id)
    finally:
        await runtime.aclose()
        await dispose_engines()
    if isinstance(result, LeadsFailedError):
        return result.summary
    if isinstance(result, BaseException):
        raise _fail(f"{type(result).__name__}: {result}")
    return result


def _print_summary(summary: FileRunSummary) -> None:
    out.print()
    out.print(
        f"[bold]{summary.processed}[/] of {summary.records} records processed from "
        f"{summary.file} in {summary.wall_seconds:.1f} s"
        + (
            f" ({summary.already_done} already done before: nothing repeated)"
            if summary.already_done
            else ""
        ),
        highlight=False,
    )
    tiers = Table(title="By tier", title_justify="left")
    tiers.add_column("tier")
    tiers.add_column("leads", justify="right")
    for tier, count in sorted(summary.by_tier.items(), key=lambda kv: -kv[1]):
        tiers.add_row(tier, str(count))
    out.print(tiers)
    reps = Table(title="By rep", title_justify="left")
    reps.add_column("rep")
    reps.add_column("leads", justify="right")
    for rep, count in sorted(summary.by_rep.items(), key=lambda kv: (-kv[1], kv[0])):
        reps.add_row(rep, str(count))
    out.print(reps)
    if summary.failed:
        failed = Table(title="Failed branches", title_justify="left", title_style="bold red")
        for column in ("lead", "branch", "reason"):
            failed.add_column(column)
        for f in summary.failed:
            failed.add_row(f.lead_id, f.branch, f.reason)
        out.print(failed)
        more = getattr(summary, "failed_total", 0) - len(summary.failed)
        if more > 0:
            out.print(f"... and {more} more failed (see the log)")
    else:
        out.print("Failed branches: none")
    if summary.set_aside:
        aside = Table(
            title="Set aside (see `leadflow quarantine list`)",
            title_justify="left",
            title_style="bold yellow",
        )
        for column in ("row", "record", "reason"):
            aside.add_column(column)
        for s in summary.set_aside:
            aside.add_row(str(s.position), s.lead_ref, s.reason)
        out.print(aside)
        more = getattr(summary, "set_aside_total", 0) - len(summary.set_aside)
        if more > 0:
            out.print(f"... and {more} more set aside (all in the quarantine)")
    else:
        out.print("Set aside: none")
    out.print(f"Wall time: {summary.wall_seconds:.2f} s")
    out.print(
        "Runs are kept by Prefect: `prefect server start`, then http://127.0.0.1:4200/runs",
        highlight=False,
    )


@app.command()
def lead(
    record: Annotated[
        str,
        typer.Argument(help='One lead as a JSON object, e.g. \'{"email": "ada@example.org"}\'.'),
    ],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Process one lead as a `process-lead` flow run and print its Decision and the
    result of each side effect. Exit 1 if a side effect failed, 2 if the lead is bad."""
    try:
        data = json.loads(record)
    except json.JSONDecodeError as exc:
        raise _fail(f"the lead is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise _fail("the lead must be a JSON object")
    settings = _settings(verbose)
    runtime = _runtime(settings)
    outcome, code = asyncio.run(_run_lead(runtime, data))
    if outcome is not None:
        _print_outcome(outcome)
    raise typer.Exit(code)


async def _run_lead(runtime: Runtime, data: dict):
    from flows.lead import BranchesFailedError, InvalidLeadError, process_lead
    from flows.runtime import use_runtime
    from flows.settle import settle
    from leadflow.db import dispose_engines

    try:
        with use_runtime(runtime):
            state = await process_lead(record=data, origin="cli", return_state=True)
            result = await state.aresult(raise_on_failure=False)
        await settle(state.state_details.flow_run_id)
    finally:
        await runtime.aclose()
        await dispose_engines()
    if isinstance(result, InvalidLeadError):
        err.print(f"[bold red]set aside:[/] {result}", highlight=False)
        return None, 2
    if isinstance(result, BranchesFailedError):
        return result.outcome, 1
    if isinstance(result, BaseException):
        raise _fail(f"{type(result).__name__}: {result}")
    return result, 0


def _print_outcome(outcome) -> None:
    decision = outcome.decision
    due = f", due {decision.due_at:%Y-%m-%d %H:%M} UTC" if decision.due_at else ""
    out.print(
        f"[bold]{outcome.lead_id}[/]: {decision.tier} (score {decision.score}) -> "
        f"{decision.follow_up.value}{due}; rep {decision.rep} ({decision.assignment_rule})",
        highlight=False,
    )
    reasons = Table(title="Score", title_justify="left")
    for column in ("group", "rule", "points"):
        reasons.add_column(column)
    for reason in decision.score_reasons:
        reasons.add_row(reason.group, reason.rule, f"{reason.points:+d}")
    out.print(reasons)
    branches = Table(title="Side effects", title_justify="left")
    for column in ("branch", "status", "ms", "detail"):
        branches.add_column(column)
    for name, result in outcome.branches.items():
        branches.add_row(
            name,
            result.status.value,
            f"{result.duration_ms:.0f}",
            result.error or result.detail or "",
        )
    out.print(branches)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="A smaller run, under two minutes.")] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the figures to this JSON file.")
    ] = None,
    chart: Annotated[Path | None, typer.Option(help="Write an SVG chart to this file.")] = None,
    parts: Annotated[
        str, typer.Option(help="Which parts: a (one lead), b (backlog), c (memory).")
    ] = "abc",
) -> None:
    """Measure the single-lead path, the backlog path and memory against stub vendors
    on loopback, and print the figures (see benchmarks/bench.py and the README)."""
    code = Path(__file__).resolve().parent.parent / "benchmarks"
    if not (code / "bench.py").is_file():
        raise _fail("leadflow bench runs from a source checkout (benchmarks/ not found)")
    _quiet_prefect_console()
    sys.path.insert(0, str(code))
    from bench import run_bench

    run_bench(quick=quick, json_path=json_path, chart_path=chart, parts=parts)


@app.command()
def adapters() -> None:
    """List every registered adapter by kind (built-in and from installed plug-ins)."""
    from integrations.registry import list_adapters

    settings = load_settings()
    chosen = settings.adapters.model_dump()
    table = Table(title="Adapters (entry-point group leadflow.adapters)", title_justify="left")
    for column in ("kind", "name", "class", "side effects", "configured"):
        table.add_column(column)
    for info in list_adapters():
        table.add_row(
            info.kind,
            info.name,
            info.target if not info.load_error else f"[red]{info.load_error}[/]",
            {True: "yes", False: "no", None: "?"}[info.side_effects],
            "*" if chosen.get(info.kind) == info.name else "",
        )
    out.print(table)


@quarantine_app.command("list")
def quarantine_list() -> None:
    """Show records waiting in the quarantine, with their file, row and reason."""
    settings = _settings(False)
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
    from flows.replay import KEY_FIELD, REASON_FIELD

    settings = _settings(False)
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
    settings = _settings(verbose)
    runtime = _runtime(settings)
    summary = asyncio.run(_replay(runtime, fixed))
    for item in summary.still_set_aside:
        err.print(
            f"still set aside: row {item.position} ({item.lead_ref}): {item.reason}",
            highlight=False,
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


async def _replay(runtime: Runtime, fixed: Path | None):
    from flows.replay import replay_quarantine
    from flows.runtime import use_runtime
    from leadflow.db import dispose_engines

    try:
        with use_runtime(runtime):
            return await replay_quarantine(corrected=str(fixed) if fixed else None)
    finally:
        await runtime.aclose()
        await dispose_engines()


def main() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
