"""The `leadflow` command line.

Each command checks its input and settings before anything starts, builds the runtime
(leadflow.app.runtime) and runs its flow through `run_flow` (leadflow.app.console),
the one place that opens and closes it. Flows are imported inside the commands,
keeping `leadflow --help` fast. The cut-over commands (leadflow.app.cli_shadow), the
schema commands (leadflow.app.cli_db), the routing commands (leadflow.app.cli_routing),
the SLA commands (leadflow.app.cli_sla), the quarantine's (leadflow.app.cli_quarantine)
and the webhook receiver (leadflow.app.cli_receiver) are defined in their modules and
added to the app here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from leadflow.app import cli_db, cli_quarantine, cli_receiver, cli_routing, cli_shadow, cli_sla
from leadflow.app.console import (
    checked_settings,
    err,
    fail,
    offline_defaults,
    out,
    quiet_prefect_console,
    run_command,
    run_flow,
    runtime_for,
    unless_failed,
    where_to_look,
)
from leadflow.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime
    from leadflow.flows.summary import FileRunSummary

app = typer.Typer(
    help=(
        "leadflow: the sales lead pipeline on Prefect. Settings come from LEADFLOW_* "
        "environment variables and .env (see .env.example)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # a docstring's paragraphs are re-flowed to the terminal's width (the default keeps
    # its line breaks, so a narrow terminal breaks every line mid-sentence)
    rich_markup_mode="markdown",
)
limits_app = typer.Typer(
    help="Vendor limits shared by every worker (Prefect global concurrency limits).",
    no_args_is_help=True,
)
app.add_typer(limits_app, name="limits")


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        out.print(f"leadflow {version('leadflow')} (prefect {version('prefect')})", highlight=False)
        raise typer.Exit()


@app.callback()
def _defaults(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    offline_defaults()


@app.command()
def run(
    file: Annotated[
        Path,
        typer.Argument(
            help="The lead file: CSV, TSV, .txt, .xlsx, .xls, .ods, JSON array or JSON Lines."
        ),
    ],
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Groups in flight at once.", show_default="LEADFLOW_PIPELINE__CONCURRENCY"
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help=(
                "Exit 1 if any record was set aside as bad (rows merged into an earlier "
                "row with the same email are not set aside)."
            )
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show every log line, Prefect's per-task lines included."
        ),
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            show_default="LEADFLOW_PIPELINE__BATCH_SIZE",
            help="Leads per group; the decisions are the same whatever the size.",
        ),
    ] = None,
) -> None:
    """Run the pipeline over every lead in FILE and print a summary.

    Headers are matched to lead fields (CRM and form exports are recognised), the
    encoding and delimiter are detected. Bad records are set aside in the quarantine
    with their row and reason and the rest go on; rows with the same email are one
    lead. Exit codes: 0 done; 1 a side effect failed after its retries, or no record
    could be processed (or, with --strict, a record was set aside); 2 bad input or
    settings. Running the same file again repeats no side effect, and finishes what an
    interrupted run left.
    """
    if not verbose:
        quiet_prefect_console()  # before the import below brings Prefect in
    from leadflow.flows.files import check_lead_file

    try:
        check_lead_file(file)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not verbose:  # the outbox keeps every notification; the terminal keeps the summary
        os.environ.setdefault("LEADFLOW_TERMINAL_ECHO", "false")
    settings = checked_settings(verbose)
    runtime = runtime_for(settings)
    said = _report_file(runtime, file)
    from leadflow.flows.files import process_file
    from leadflow.flows.summary import LeadsFailedError

    result, run_id, trouble = run_command(
        run_flow(
            runtime,
            process_file,
            progress=True,
            path=file,
            batch_size=batch_size,
            concurrency=concurrency,
        )
    )
    summary = result.summary if isinstance(result, LeadsFailedError) else unless_failed(result)
    _print_summary(summary, said)
    if trouble:
        err.print(f"[bold yellow]warning:[/] {trouble.describe()}", highlight=False)
    out.print(where_to_look(run_id), highlight=False, soft_wrap=True)
    if summary.failed_total or summary.nothing_processed or (strict and summary.set_aside_total):
        raise typer.Exit(1)


def _report_file(runtime: Runtime, file: Path) -> str:
    """Read the file before any server starts: a file leadflow cannot read (not text,
    no email column) stops here; otherwise say once how it was read (what the whole
    file tells, its footer and its dates' order, the summary adds)."""
    from leadflow.flows.files import open_contents

    try:
        report = open_contents(file, runtime).report()  # the head and the encoding only
    except ValueError as exc:
        raise fail(str(exc)) from None
    err.print(report, style="dim", highlight=False, markup=False)
    return report


def _print_summary(summary: FileRunSummary, said: str = "") -> None:
    """The run's summary; `said`: the file's report printed before the run, whose
    lines are not repeated."""
    learned = [line for line in summary.columns.splitlines() if line not in said.splitlines()]
    for line in learned:
        err.print(line, style="dim", highlight=False, markup=False)
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
    if summary.resent:
        out.print(
            f"{summary.resent} side effects sent again under their keys: an earlier run "
            "claimed them and did not confirm them (it was stopped or killed)",
            highlight=False,
        )
    if summary.source_error:
        err.print(
            f"[bold red]error:[/] the source failed: {summary.source_error}; what it gave "
            "before was kept, the next poll reads the rest again",
            highlight=False,
        )
    if summary.nothing_processed:
        err.print(
            f"[bold red]error:[/] none of the {summary.records} records could be processed "
            "(see the tables below); fix them and run again",
            highlight=False,
        )
    if summary.routes:  # not every lead went through leadflow: the mode said so
        went = ", ".join(f"{route} {count}" for route, count in sorted(summary.routes.items()))
        out.print(f"Mode {' -> '.join(summary.modes)}: {went}", highlight=False)
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
    if summary.overdue:
        out.print(
            f"{summary.overdue} follow-ups were already overdue when assigned "
            "(the lead arrived longer ago than its SLA)",
            highlight=False,
        )
    if summary.failed:
        failed = Table(
            title="Failed branches (do them again, once: `leadflow replay`)",
            title_justify="left",
            title_style="bold red",
        )
        for column in ("lead", "row", "branch", "reason"):
            failed.add_column(column)
        for f in summary.failed:
            failed.add_row(f.email or f.lead_id, str(f.row or ""), f.branch, f.reason)
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
    if summary.warnings:
        _print_warnings(summary)
    if summary.merged:
        merged = Table(
            title="Same email as an earlier row: merged into it (one lead, one notification)",
            title_justify="left",
        )
        for column in ("row", "email", "merged into row"):
            merged.add_column(column)
        for m in summary.merged:
            merged.add_row(str(m.position), m.email, str(m.into_row))
        out.print(merged)
    out.print(f"Wall time: {summary.wall_seconds:.2f} s")


WARNINGS_SHOWN = 20  # lines; the run's artifact has them all (up to its list limit)


def _print_warnings(summary: FileRunSummary) -> None:
    """One line per field left out of a lead that went on, the first few of them."""
    out.print(
        f"[bold yellow]{summary.warnings_total} fields left out[/] of leads that went on "
        "(a value leadflow could not read; fix it in the file or map the column):",
        highlight=False,
    )
    for warning in summary.warnings[:WARNINGS_SHOWN]:
        out.print(f"  {warning.text}", highlight=False, markup=False, soft_wrap=True)
    more = summary.warnings_total - min(len(summary.warnings), WARNINGS_SHOWN)
    if more > 0:
        out.print(f"  ... and {more} more (the run's summary artifact lists them)")


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
        raise fail(f"the lead is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise fail("the lead must be a JSON object")
    settings = checked_settings(verbose)
    _set_aside_if_bad(settings, data)
    runtime = runtime_for(settings)
    from leadflow.flows.lead import (
        BranchesFailedError,
        InvalidLeadError,
        LeadFailedError,
        process_lead,
    )

    result, run_id, _trouble = run_command(
        run_flow(runtime, process_lead, record=data, origin="cli")
    )
    if isinstance(result, InvalidLeadError):
        err.print(f"[bold red]set aside:[/] {result}", highlight=False)
        code = 2
    elif isinstance(result, BranchesFailedError):
        _print_outcome(result.outcome)
        code = 1
    elif isinstance(result, LeadFailedError):
        err.print(f"[bold red]failed:[/] {result}", highlight=False)
        code = 1
    else:
        outcome = unless_failed(result)
        if hasattr(outcome, "decision"):
            _print_outcome(outcome)
        else:  # routed by the cut-over mode
            out.print(f"mode {outcome.mode}: {outcome.route}", highlight=False)
        code = 0
    out.print(where_to_look(run_id), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _set_aside_if_bad(settings: Settings, data: dict) -> None:
    """A bad lead is set aside (as `process_lead` would) and its reason printed, with
    no flow run and no traceback: nothing Prefect could add."""
    from leadflow.intake import RawRecord, Rejection, validate_record

    checked = validate_record(RawRecord(origin="cli", data=data))
    if isinstance(checked, Rejection):
        asyncio.run(_quarantine(settings, checked))
        err.print(f"[bold red]set aside:[/] {checked.lead_ref}: {checked.reason}", highlight=False)
        raise typer.Exit(2)


async def _quarantine(settings: Settings, rejection) -> None:
    from leadflow.db import dispose_engines
    from leadflow.intake import Quarantine

    try:
        await Quarantine(settings.database_url).put([rejection])
    finally:
        await dispose_engines()


def _print_outcome(outcome) -> None:
    from leadflow.when import due_text

    decision = outcome.decision
    due = f", {due_text(decision.due_at)}" if decision.due_at else ""
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
    quick: Annotated[bool, typer.Option(help="A smaller run, a few minutes at most.")] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the figures to this JSON file.")
    ] = None,
    chart: Annotated[Path | None, typer.Option(help="Write an SVG chart to this file.")] = None,
    parts: Annotated[
        str, typer.Option(help="Which parts: a (real time), b (backlog), c (memory).")
    ] = "abc",
    faults: Annotated[
        bool,
        typer.Option(
            "--faults",
            help="Instead: a run over failing stub vendors; what became of each side effect.",
        ),
    ] = False,
    leads: Annotated[int, typer.Option(help="With --faults: leads in the file.", min=10)] = 200,
) -> None:
    """Measure the real-time path (serve-webhook), a backlog and memory against stub
    vendors on loopback, and print the figures against their targets (see
    benchmarks/bench.py and the README)."""
    code = Path(__file__).resolve().parent.parent / "benchmarks"
    if not (code / "bench.py").is_file():
        raise fail("leadflow bench runs from a source checkout (benchmarks/ not found)")
    quiet_prefect_console()
    sys.path.insert(0, str(code))
    if faults:
        from fault_bench import run_fault_bench

        figures = run_fault_bench(leads=leads)
        bad = sum(
            figures[k]["duplicated"] + figures[k]["lost"] for k in ("notifications", "events")
        )
        raise typer.Exit(1 if bad else 0)
    from bench import run_bench

    run_bench(quick=quick, json_path=json_path, chart_path=chart, parts=parts)


@app.command()
def adapters() -> None:
    """List every registered adapter by kind (built-in and from installed plug-ins)."""
    from leadflow.integrations.registry import list_adapters

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


@app.command()
def serve(
    poll_interval: Annotated[
        float | None,
        typer.Option(
            min=1, help="Seconds between polls.", show_default="the prefect.yaml schedule"
        ),
    ] = None,
) -> None:
    """Serve the deployments of deployments/prefect.yaml from this process, schedules
    included: poll-leads on its interval, process-file and process-lead on demand.

    Needs a running Prefect server (PREFECT_API_URL): the temporary server Prefect
    starts for a single command cannot run schedules. Run it from the repository root;
    stop it with Ctrl-C.
    """
    from prefect.settings import get_current_settings

    api_url = get_current_settings().api.url
    if not api_url:
        raise fail(
            "PREFECT_API_URL is not set. Schedules need a running Prefect server; the "
            "temporary one Prefect starts for a single command cannot run them. Start one "
            "with `prefect server start`, then "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` and run this again."
        )
    _check_reachable(api_url)
    try:
        settings = load_settings()  # a wrong setting is named now, not in the first run
    except SettingsError as exc:
        raise fail(str(exc)) from None
    from leadflow.app.cli_db import prepare_database

    prepare_database(settings.database_url)  # and a schema that is behind

    from prefect import serve as prefect_serve

    from leadflow.flows.serve import served_deployments

    prefect_serve(*served_deployments(poll_interval=poll_interval))


app.command("serve-webhook")(cli_receiver.serve_webhook)


@limits_app.command("apply")
def limits_apply() -> None:
    """Create or update the Prefect server's limits for each adapter with
    LEADFLOW_LIMITS__<ADAPTER>__CONCURRENCY (calls at once) or __PER_SECOND (calls a
    second) set. Every worker's runs then share them. Needs PREFECT_API_URL."""
    from prefect.settings import get_current_settings

    settings = checked_settings(False)
    api_url = get_current_settings().api.url
    if not api_url:
        raise fail(
            "PREFECT_API_URL is not set: limits live on the Prefect server the workers "
            "use; point PREFECT_API_URL at it (e.g. http://127.0.0.1:4200/api)."
        )
    _check_reachable(api_url)
    if not settings.limits:
        raise fail(
            "no limits in the settings: set e.g. LEADFLOW_LIMITS__WEBHOOK__CONCURRENCY=4 "
            "or LEADFLOW_LIMITS__WEBHOOK__PER_SECOND=10"
        )
    from leadflow.flows.limits import apply_limits

    for limit in asyncio.run(apply_limits(settings)):
        rate = f", {limit.slot_decay_per_second:g} a second" if limit.slot_decay_per_second else ""
        out.print(f"{limit.name}: {limit.limit} slots{rate}", highlight=False)


def _check_reachable(api_url: str) -> None:
    import httpx

    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        raise fail(
            f"no Prefect server answers at PREFECT_API_URL={api_url} ({type(exc).__name__}); "
            "start it with `prefect server start`"
        ) from None


@app.command()
def replay(
    list_only: Annotated[
        bool, typer.Option("--list", help="Only show the open failures; replay nothing.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Do again, once, the side effects (CRM update, notification, event) that failed
    after their retries, with the lead's decision and once-only key; report each."""
    settings = checked_settings(verbose)
    if list_only:
        failures = asyncio.run(_open_failures(settings))
        table = Table(title=f"{len(failures)} failed side effects open", title_justify="left")
        for column in ("side effect", "lead", "attempts", "reason"):
            table.add_column(column)
        for f in failures:
            table.add_row(f.branch, f.lead.email, str(f.attempts), f.reason)
        out.print(table)
        return
    runtime = runtime_for(settings)
    report = run_command(_replay_effects(runtime))
    if report.effects:
        table = Table(title="Replayed", title_justify="left")
        for column in ("side effect", "lead", "result", "detail"):
            table.add_column(column)
        for e in report.effects:
            table.add_row(e.branch, e.email, e.result, e.detail)
        out.print(table)
    out.print(report.line())
    raise typer.Exit(0 if report.ok else 1)


async def _open_failures(settings: Settings):
    from leadflow.db import dispose_engines
    from leadflow.failed_effects import FailedEffects

    try:
        return await FailedEffects(settings.database_url).open()
    finally:
        await dispose_engines()


async def _replay_effects(runtime: Runtime):
    from leadflow.app.runtime import use_runtime
    from leadflow.db import dispose_engines
    from leadflow.flows.replay_effects import replay_side_effects
    from leadflow.flows.temporary_server import prefect_api

    try:
        async with prefect_api():
            with use_runtime(runtime):
                return await replay_side_effects()
    finally:
        await runtime.aclose()
        await dispose_engines()


@app.command()
def check(
    live: Annotated[
        bool,
        typer.Option("--live", help="Also make one harmless read call to each configured vendor."),
    ] = False,
) -> None:
    """Check the configuration without I/O: settings, rules, and every chosen adapter
    built from its settings; each problem names the variable to fix. Exit 2 if any.
    With --live, one read per adapter, results in a table; exit 1 if one fails."""
    from leadflow.integrations.checks import check_configuration, probe_adapters

    found = check_configuration()
    for problem in found.problems:
        err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
    table = Table(title="Configuration", title_justify="left")
    for column in ("kind", "adapter", "status"):
        table.add_column(column)
    table.add_column("detail", overflow="fold")  # a variable's name is never cut short
    for result in found.results:
        status = "[green]ok[/]" if result.ok else "[red]error[/]"
        table.add_row(result.kind, result.name, status, escape(result.detail))
    out.print(table)
    for result in found.results:
        if not result.ok:  # one whole line each, to copy, whatever the terminal's width
            err.print(f"[bold red]error:[/] {escape(result.detail)}", highlight=False)
    if not found.ok:
        asyncio.run(found.aclose())
        raise typer.Exit(2)
    if not live:
        out.print("configuration ok (add --live to call each vendor)")
        asyncio.run(found.aclose())
        return

    async def probe():
        try:
            return await probe_adapters(found.adapters)
        finally:
            await found.aclose()

    results = asyncio.run(probe())
    table = Table(title="Live check: one read per adapter", title_justify="left")
    for column in ("kind", "adapter", "result", "time", "detail"):
        table.add_column(column)
    for result in results:
        status = "[green]ok[/]" if result.ok else "[red]failed[/]"
        took = f"{result.seconds * 1000:.0f} ms" if result.seconds is not None else ""
        table.add_row(result.kind, result.name, status, took, result.detail)
    out.print(table)
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@app.command("poll-source")
def poll_source_command(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Poll the configured lead source (LEADFLOW_ADAPTERS__SOURCE=http or hubspot) once:
    what arrived since its watermark goes through the pipeline. Exit 1 if a side
    effect failed, 2 for bad settings."""
    settings = checked_settings(verbose)
    if settings.adapters.source is None:
        raise fail(
            "LEADFLOW_ADAPTERS__SOURCE is not set: poll-source needs a polled source (http, "
            "hubspot); a file is read by `leadflow run <file>`"
        )
    from leadflow.flows.source import poll_source
    from leadflow.flows.summary import LeadsFailedError

    runtime = runtime_for(settings)
    result, _run_id, _trouble = run_command(run_flow(runtime, poll_source))
    if isinstance(result, LeadsFailedError):
        summary, code = result.summary, 1
    elif isinstance(result, SettingsError):
        raise fail(str(result))
    else:
        summary, code = unless_failed(result), 0
    _print_summary(summary)
    raise typer.Exit(code)


# The cut-over commands and the schema commands, defined in their own modules.
for command in (cli_shadow.shadow, cli_shadow.report, cli_shadow.mode, cli_shadow.cutover):
    app.command()(command)
app.add_typer(cli_db.db_app, name="db")
app.add_typer(cli_quarantine.quarantine_app, name="quarantine")
app.command()(cli_routing.why)
app.command()(cli_routing.backtest)
app.add_typer(cli_routing.rules_app, name="rules")
app.command("watch-slas")(cli_sla.watch_slas)
app.add_typer(cli_sla.crm_app, name="crm")


def main() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
