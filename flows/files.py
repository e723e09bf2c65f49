"""`process_file`: every lead in a file, through the one engine, in groups.

    file --stream, validate--> groups of batch_size --> the engine (flows/engine.py)
         (bad records to the                            look-up, decide, side effects
          quarantine as read)                            per group, groups overlapped

- The file is streamed (flows/batch_intake.py): encoding, delimiter and columns
  found, rows with the same email merged into one lead, the leads in memory only a
  group at a time; the summary is counted as groups end (flows/summary.py), so
  memory stays flat however long the file is.
- Each lead's cut-over mode is read when its group is taken in (leadflow.flows.mode):
  live leads go to the engine, the others where the mode sends them
  (flows/cutover.py).
- A rerun repeats nothing: leads done before are answered from the decisions store,
  and side effects are once-only (leadflow.once). A run that was killed is finished
  by running it again; what the dead run had claimed but not confirmed is sent again
  under the same idempotency keys.
- An interrupted run stops reading and gives the groups it already took
  `LEADFLOW_PIPELINE__DRAIN_SECONDS` to finish, then cancels them (their claims are
  handed back, so the next run does them).

The run ends Failed if a side effect failed after its retries, or if the file had
records and none was processed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from pydantic import AfterValidator, Field, FilePath, TypeAdapter, ValidationError

from leadflow.flows.alerts import alert_on_failure
from leadflow.flows.artifacts import publish_leads
from leadflow.flows.batch_intake import Piece, StreamedIntake
from leadflow.flows.context import current_runtime
from leadflow.flows.engine import Group, Pipeline
from leadflow.flows.mode import needs_legacy, start_run
from leadflow.flows.naming import file_run_name
from leadflow.flows.summary import FileRunSummary, LeadResult, LeadsFailedError, RunTally
from leadflow.intake import Reading
from leadflow.integrations.file_source import READ, SUFFIXES, FileStream, open_file
from leadflow.logging import get_logger
from leadflow.models import Lead
from leadflow.shadow_settings import ShadowSettings

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)

# Files of at most this many leads also get a row per lead in the run's artifacts.
LEADS_TABLE_LIMIT = 1000


def _lead_file(path: Path) -> Path:
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: leadflow reads {READ} files; export it as CSV (UTF-8)")
    return path


LeadFile = Annotated[FilePath, AfterValidator(_lead_file)]
_lead_file_adapter = TypeAdapter(LeadFile)


def check_lead_file(path: Path) -> Path:
    """The check `process_file` applies to its `path` parameter, for callers that want
    to fail before starting a run. Raises ValueError naming the file."""
    try:
        return _lead_file_adapter.validate_python(path)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(reason if str(path) in reason else f"{path}: {reason}") from None


def open_contents(path: Path, runtime: Runtime) -> FileStream:
    """The file's records, read one at a time when asked for, with their columns mapped
    to lead fields (the settings' mapping, the aliases, and the rules' engagement
    columns kept)."""
    return open_file(
        path,
        columns=runtime.settings.columns,
        rule_attributes=[rule.attribute for rule in runtime.rules.scoring.engagement.rules],
        sheet=runtime.settings.sheet,
    )


def open_intake(path: Path, runtime: Runtime) -> StreamedIntake:
    """The file opened for a run: its values read as the rules and settings say
    (the yes/no and number columns the rules read, LEADFLOW_DATE_ORDER)."""
    reading = Reading.for_rules(runtime.rules.scoring, runtime.settings.date_order)
    return StreamedIntake(open_contents(path, runtime), reading)


@flow(name="process-file", flow_run_name=file_run_name, on_failure=[alert_on_failure])
async def process_file(
    path: LeadFile,
    batch_size: Annotated[int, Field(ge=1, le=1000)] | None = None,
    concurrency: Annotated[int, Field(ge=1, le=512)] | None = None,
) -> FileRunSummary:
    """Process every lead in a file (CSV, TSV, workbook, JSON); bad records are set aside.

    Args:
        path: The lead file: an existing .csv, .tsv, .txt, .xlsx, .xls, .ods, .json or
            .jsonl file, absolute or relative to
            the repository root (e.g. examples/leads.csv). Checked before any lead runs.
        batch_size: Leads per group, 1 to 1000. Empty: LEADFLOW_PIPELINE__BATCH_SIZE
            (100 by default). The decisions are the same whatever the size.
        concurrency: Groups in flight at once, 1 to 512. Empty: the
            LEADFLOW_PIPELINE__CONCURRENCY setting (8 by default).
    """
    runtime = current_runtime()
    needs_legacy(await start_run(), ShadowSettings().legacy)
    summary = await run_file(runtime, Path(path), batch_size=batch_size, concurrency=concurrency)
    await acreate_markdown_artifact(
        key="process-file-summary", markdown=summary.as_markdown(), description=str(path)
    )
    log.info(
        "file processed",
        file=str(path),
        processed=summary.processed,
        set_aside=summary.set_aside_total,
        failed=summary.failed_total,
        groups=summary.groups,
        leads_per_second=summary.leads_per_second,
    )
    if summary.failed_total or summary.nothing_processed:
        raise LeadsFailedError(summary)
    return summary


async def run_file(
    runtime: Runtime,
    path: Path,
    *,
    batch_size: int | None = None,
    concurrency: int | None = None,
    legacy: str | None = None,
) -> FileRunSummary:
    """The pipeline over a file, inside the current flow run (see the module docstring).
    `legacy`: the current process for leads the mode routes (default the setting)."""
    started = time.perf_counter()
    settings = runtime.settings.pipeline
    size = batch_size or settings.batch_size
    intake = await asyncio.to_thread(open_intake, path, runtime)
    tally = RunTally(str(path), size)
    total = await asyncio.to_thread(intake.count)
    tally.summary.columns = intake.stream.report()  # after the first pass: footers, dates
    log.info("file opened", file=str(path), report=tally.summary.columns)
    tally.started(total)
    table = _LeadsTable(total)

    async def done(group: Group) -> None:
        results = group.results()
        tally.add(results)
        table.add(group, results)

    pipeline = Pipeline(runtime, in_flight=concurrency or settings.concurrency, on_done=done)
    reading = asyncio.create_task(_read(runtime, intake, size, pipeline, tally, legacy))
    try:
        await reading
        await pipeline.drain()
    except asyncio.CancelledError:
        reading.cancel()
        log.warning("interrupted: finishing the groups in flight", seconds=settings.drain_seconds)
        try:
            await asyncio.wait_for(pipeline.drain(), settings.drain_seconds)
        except (TimeoutError, asyncio.CancelledError):
            await pipeline.cancel()
        raise
    except BaseException:
        await pipeline.cancel()
        raise
    await table.publish(str(path))
    return tally.final(time.perf_counter() - started)


async def _read(
    runtime: Runtime,
    intake: StreamedIntake,
    size: int,
    pipeline: Pipeline,
    tally: RunTally,
    legacy: str | None,
) -> None:
    """Read the file a piece at a time (in a worker thread), set aside the bad
    records, and hand each piece's leads to the engine, or where the mode sends them."""
    pieces = intake.pieces(size)
    number = 0
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
        await runtime.quarantine.put(piece.bad)
        tally.set_aside(piece.bad)
        tally.merged(piece.merged)
        tally.warned(piece.warnings)
        if not piece.leads:
            continue
        number += 1
        await pipeline.wait_for_room()  # the mode as it is when the group can start
        mode = await runtime.modes.get()
        tally.saw(mode)
        if mode == "live":
            await pipeline.submit(Group(piece.leads, number=number, rows=piece.positions))
        else:
            tally.add(await route_piece(runtime, piece, mode, legacy))


async def route_piece(
    runtime: Runtime, piece: Piece, mode: str, legacy: str | None = None
) -> list[LeadResult]:
    """The leads of a piece taken in while the mode is not `live` (flows/cutover.py)."""
    from leadflow.flows.cutover import route_leads  # it builds on this module

    return await route_leads(
        runtime, piece.leads, piece.rows, mode, rows=piece.positions, legacy=legacy
    )


class _LeadsTable:
    """A row per lead for the run's `process-file-leads` artifact, for files small
    enough to read a row per lead in the UI (LEADS_TABLE_LIMIT)."""

    def __init__(self, total: int) -> None:
        self.wanted = total <= LEADS_TABLE_LIMIT
        self.groups: list[tuple[int, list[Lead], Sequence[LeadResult]]] = []

    def add(self, group: Group, results: Sequence[LeadResult]) -> None:
        if self.wanted:
            self.groups.append((group.number, group.leads, results))

    async def publish(self, file: str) -> None:
        """In file order (groups may end out of order)."""
        if self.wanted and self.groups:
            ordered = sorted(self.groups, key=lambda item: item[0])
            leads = [lead for _n, group, _r in ordered for lead in group]
            results = [result for _n, _g, group in ordered for result in group]
            await publish_leads(file, leads, results)
