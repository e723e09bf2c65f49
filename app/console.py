"""What every `leadflow` command shares: its consoles, how it fails (one line, an exit
code), its settings checked before anything starts, its runtime, and running its flow
(`run_flow`: against PREFECT_API_URL or a temporary server, the runtime opened and
closed, the Prefect API watched, the progress bar fed).

The command modules (leadflow.app.cli, cli_shadow, cli_db) import from here; none of
them imports another for its side effects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leadflow.logging import configure_logging
from leadflow.rules import RulesError
from leadflow.settings import (
    Settings,
    SettingsError,
    check_database_url,
    load_settings,
    unknown_variables,
)

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime
    from leadflow.flows.temporary_server import ServerTrouble

out = Console()
# Error, warning and progress lines are one line each, wrapped by the terminal, never by
# rich: a message copied from an 80-column terminal stays whole, and a test reads it
# whatever COLUMNS was when this module was imported.
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def fail(message: str, code: int = 2) -> typer.Exit:
    """`error: <message>` on one line (the terminal wraps it, not rich: a copied
    message stays whole), printed as text: a rules key such as [assignment.teams] is
    not console markup. Returns the exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def checked_settings(verbose: bool) -> Settings:
    """Settings checked in full, the database included, before anything starts; then
    logging, with Prefect's console kept to warnings unless --verbose."""
    if not verbose:
        quiet_prefect_console()
    try:
        settings = load_settings()
        check_database_url(settings.database_url)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    from leadflow.app.cli_db import prepare_database

    prepare_database(settings.database_url)
    configure_logging(settings.log, console_level="DEBUG" if verbose else "WARNING")
    warn_about_unknown_variables()
    if not verbose:
        no_tracebacks_on_prefect_console()
    return settings


def offline_defaults() -> None:
    """The temporary Prefect server reports usage unless told not to; offline, every
    attempt logs an error. Opt in with PREFECT_SERVER_ANALYTICS_ENABLED=true. Called
    by the command line before any command runs (not at import)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def quiet_prefect_console() -> None:
    """Keep Prefect's per-run INFO lines ("Task run ... Finished in state Completed()")
    off the terminal (the progress bar shows progress); they still go to the Prefect
    API and its UI. Prefect reads this when it sets up logging, at its import, so it
    is set before anything imports Prefect."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def no_tracebacks_on_prefect_console() -> None:
    """A failing task's traceback stays in the Prefect UI; the terminal gets its one
    line (and the summary names the lead and the reason)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, WithoutTraceback
            ):
                handler.setFormatter(WithoutTraceback(handler.formatter))


class WithoutTraceback(logging.Formatter):
    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def settings_classes() -> list[type]:
    """Every settings class that reads LEADFLOW_* variables, once each: leadflow's,
    shadow mode's, the receiver's, the real-time stream's and every adapter's
    (plug-ins included)."""
    from leadflow.flows.stream import StreamSettings
    from leadflow.flows.webhook_app import ReceiverSettings
    from leadflow.integrations.registry import adapter_settings_classes
    from leadflow.shadow_settings import ShadowSettings

    found = [Settings, ShadowSettings, ReceiverSettings, StreamSettings]
    return list(dict.fromkeys([*found, *adapter_settings_classes()]))


def warn_about_unknown_variables() -> None:
    from dotenv import dotenv_values

    variables = {**dotenv_values(".env"), **os.environ}
    for warning in unknown_variables(variables, settings_classes()):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


def runtime_for(settings: Settings) -> Runtime:
    from leadflow.app.runtime import build_runtime

    try:
        return build_runtime(settings)
    except (SettingsError, RulesError) as exc:
        raise fail(str(exc)) from None


def run_command(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's flows; a temporary server that did not start is an error to
    act on (the message says how), not a traceback."""
    from leadflow.flows.temporary_server import ServerStartError
    from leadflow.flows.watchdog import OrchestratorDown

    started = time.time()
    try:
        return asyncio.run(work)
    except ServerStartError as exc:
        raise fail(str(exc)) from None
    except OrchestratorDown as exc:
        _orchestrator_down(exc, started)


def _orchestrator_down(exc, started: float) -> NoReturn:
    """One line for a run whose Prefect API went away: what failed, what was done (from
    leadflow's own records), what to run next; then out, without waiting for Prefect's
    client to give up retrying (its background threads would hold the process)."""
    done = _leads_done_since(started)
    err.print(
        f"[bold red]error:[/] {exc}; {done} leads were finished before that and are kept; "
        "run the same command again once the Prefect API is back: it does the rest and "
        "repeats nothing",
        highlight=False,
        soft_wrap=True,
    )
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(3)


def _leads_done_since(started: float) -> int:
    """Leads whose side effects were all confirmed since `started`, from the database."""
    import sqlite3
    from datetime import UTC, datetime

    from sqlalchemy.engine import make_url

    try:
        url = make_url(load_settings().database_url)
        if url.get_backend_name() != "sqlite" or not url.database:
            return 0
        since = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S")
        with sqlite3.connect(url.database, timeout=5) as connection:
            (count,) = connection.execute(
                "select count(*) from lead_decisions where done_at >= ?", (since,)
            ).fetchone()
        return count
    except Exception:
        return 0


class _Bar:
    """Adapts a rich Progress to leadflow.flows.summary.ProgressListener."""

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


@contextmanager
def _progress_bar() -> Iterator[None]:
    """A progress bar on stderr, fed by the file flows' progress events."""
    from leadflow.flows.summary import listening

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    with progress, listening(_Bar(progress)):
        yield


async def run_flow(
    runtime: Runtime, flow_fn: Any, *, progress: bool = False, **parameters: Any
) -> tuple[Any, UUID | None, ServerTrouble | None]:
    """Every command runs its flow through here: against PREFECT_API_URL or a
    temporary server, inside the opened runtime (its stores ready, then its run
    settled, adapters closed and engines disposed), and the server's trouble read
    before it stops. Returns the flow's result (a failed run's exception, not raised),
    its run id and the trouble."""
    from leadflow.flows.temporary_server import prefect_api
    from leadflow.flows.watchdog import watched

    async with prefect_api() as server:
        async with runtime.opened():
            with _progress_bar() if progress else nullcontext():
                state = await watched(runtime.run_flow(flow_fn, **parameters))
                result = await state.aresult(raise_on_failure=False)
        trouble = server.trouble() if server else None
    return result, state.state_details.flow_run_id, trouble


def unless_failed(result: T) -> T:
    """The flow's result; an error the command does not expect stops it (exit 2)."""
    if isinstance(result, BaseException):
        raise fail(f"{type(result).__name__}: {result}")
    return result


def where_to_look(flow_run_id: UUID | None) -> str:
    """The run's page in the Prefect UI of the server this command used: the
    PREFECT_UI_URL setting, which Prefect derives from PREFECT_API_URL unless it is set.
    With neither, the run went to a temporary server that is gone now; its runs are in
    the local Prefect database, which `prefect server start` serves."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_API_HOST,
        PREFECT_SERVER_API_PORT,
        PREFECT_UI_URL,
    )

    path = f"/runs/flow-run/{flow_run_id}" if flow_run_id else "/runs"
    if PREFECT_API_URL.value() and PREFECT_UI_URL.value():
        return f"This run in the Prefect UI: {PREFECT_UI_URL.value().rstrip('/')}{path}"
    local = f"http://{PREFECT_SERVER_API_HOST.value()}:{PREFECT_SERVER_API_PORT.value()}"
    return f"Runs are kept by Prefect: `prefect server start`, then {local}{path}"
