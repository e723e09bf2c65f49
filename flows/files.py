"""`process_file`: every lead in a CSV or JSONL file, with bounded concurrency.

Records are read and validated up front: bad ones go to the quarantine with their
row and reason. The rest go through the same tasks as `process_lead`, inside this one
flow run, at most `concurrency` leads at a time. They are not child flow runs: a flow
run costs API round trips that a task run does not, and on the default SQLite-backed
Prefect server creating flow runs while task events are being recorded hits "database
is locked" (HTTP 503), which the client retries after a pause.

The run ends with a summary (also a Prefect artifact) and ends Failed if any lead had
a side effect fail after its retries.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from pydantic import AfterValidator, BaseModel, Field, FilePath, TypeAdapter, ValidationError

from leadflow.done import DoneLead
from leadflow.flows.alerts import alert_on_failure
from leadflow.flows.artifacts import publish_leads
from leadflow.flows.context import current_runtime
from leadflow.flows.lead import run_pipeline
from leadflow.flows.mode import mode_now, start_run
from leadflow.flows.naming import file_run_name
from leadflow.intake import Rejection, validate_record
from leadflow.integrations.file_source import (
    SUFFIXES,
    FileContents,
    FileStream,
    open_file,
    read_file,
)
from leadflow.logging import get_logger
from leadflow.markdown import escape, table
from leadflow.models import BranchStatus, Lead, LeadOutcome

if TYPE_CHECKING:
    from leadflow.app.runtime import Runtime

log = get_logger(__name__)


def _lead_file(path: Path) -> Path:
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: expected a .csv or .jsonl file")
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


class FailedBranch(BaseModel):
    lead_id: str
    branch: str
    reason: str
    email: str = ""
    row: int = 0

    @property
    def who(self) -> str:
        """The lead as a user finds it in the file: email and row."""
        where = f" (row {self.row})" if self.row else ""
        return f"{self.email or self.lead_id}{where}"

    @classmethod
    def all_in(cls, result: LeadResult, row: int = 0) -> list[FailedBranch]:
        """Every failure in one lead's result: the pipeline's, or each failed branch."""
        if isinstance(result, FailedBranch):
            return [result]
        if not isinstance(result, LeadOutcome):
            return []
        email = result.email or ""
        return [
            cls(lead_id=result.lead_id, branch=name, reason=reason, email=email, row=row)
            for name, reason in result.failed_branches.items()
        ]


class SetAside(BaseModel):
    position: int
    lead_ref: str
    reason: str

    @classmethod
    def of(cls, rejection: Rejection) -> SetAside:
        return cls(
            position=rejection.position, lead_ref=rejection.lead_ref, reason=rejection.reason
        )


class Merged(BaseModel):
    """A row with the email of an earlier row: one person, so one lead; its non-empty
    values update the earlier row's."""

    position: int
    email: str
    into_row: int


class AlreadyDone(BaseModel):
    """A lead found done in leadflow's records before any task was created."""

    lead_id: str
    tier: str
    rep: str


class LeftToCurrentProcess(BaseModel):
    """A lead that started after the mode left `live` (leadflow.flows.mode): leadflow
    did nothing with it and did not mark it done; the current process has it."""

    lead_id: str
    mode: str

    @property
    def route(self) -> str:
        return f"left to the current process (mode {self.mode})"


LeadResult = LeadOutcome | FailedBranch | AlreadyDone | LeftToCurrentProcess


class FileRunSummary(BaseModel):
    """What `leadflow run` prints and the `process-file` artifact shows."""

    file: str
    records: int
    processed: int = 0
    already_done: int = 0
    overdue: int = 0
    columns: str = ""
    by_tier: dict[str, int] = Field(default_factory=dict)
    by_rep: dict[str, int] = Field(default_factory=dict)
    failed: list[FailedBranch] = Field(default_factory=list)
    set_aside: list[SetAside] = Field(default_factory=list)
    merged: list[Merged] = Field(default_factory=list)
    wall_seconds: float = 0.0
    modes: list[str] = Field(
        default_factory=lambda: ["live"], description="the run modes its leads saw, in order"
    )
    routes: dict[str, int] = Field(
        default_factory=dict,
        description="where the leads went, when not all through leadflow (leadflow.flows.mode)",
    )

    def as_markdown(self) -> str:
        """Every value from a lead goes through `escape()`: it is text, never markup."""
        lines = [
            f"# Leads from {escape(self.file)}",
            "",
            f"{self.processed} of {self.records} records processed in {self.wall_seconds:.1f} s; "
            f"{len(self.set_aside)} set aside; {len(self.merged)} merged into an earlier row; "
            f"{len(self.failed)} failed branches.",
            *(
                [
                    "",
                    f"Modes: {' -> '.join(self.modes)}. Where the leads went: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(self.routes.items()))
                    + ".",
                ]
                if self.routes
                else []
            ),
            "",
            "## By tier",
            "",
            table(("tier", "leads"), sorted(self.by_tier.items())),
            "",
            "## By rep",
            "",
            table(("rep", "leads"), sorted(self.by_rep.items())),
        ]
        if self.failed:
            lines += ["", "## Failed branches", ""]
            lines += [
                table(
                    ("lead", "row", "branch", "reason"),
                    [(f.email or f.lead_id, f.row or "", f.branch, f.reason) for f in self.failed],
                )
            ]
        if self.set_aside:
            lines += ["", "## Set aside", ""]
            lines += [
                table(
                    ("row", "record", "reason"),
                    [(s.position, s.lead_ref, s.reason) for s in self.set_aside],
                )
            ]
        if self.merged:
            lines += ["", "## Merged into an earlier row", ""]
            lines += [
                table(
                    ("row", "email", "merged into row"),
                    [(m.position, m.email, m.into_row) for m in self.merged],
                )
            ]
        if self.columns:
            lines += ["", "## Columns", ""]
            lines += [f"- {escape(line)}" for line in self.columns.splitlines()]
        return "\n".join(lines)


class LeadsFailedError(RuntimeError):
    """Some leads had a side effect fail after retries; the summary says which."""

    def __init__(self, summary: FileRunSummary) -> None:
        names = ", ".join(sorted({f"{f.who}/{f.branch}" for f in summary.failed}))
        super().__init__(f"{len(summary.failed)} side effects failed: {names}")
        self.summary = summary

    def __reduce__(self):
        return (type(self), (self.summary,))


class ProgressListener(Protocol):
    def started(self, total: int) -> None: ...
    def finished(self, lead_id: str, ok: bool) -> None: ...


_listener: ContextVar[ProgressListener | None] = ContextVar("leadflow_progress", default=None)


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Report per-lead progress of flows run in this block (the CLI's progress bar)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


class Intake(BaseModel):
    """A file split for processing: one lead per person, with the row it starts at."""

    leads: list[Lead]
    rows: dict[str, int]  # lead id -> row
    bad: list[Rejection]
    merged: list[Merged]
    contents_report: str = ""


def read_leads(path: Path, runtime: Runtime) -> Intake:
    """Read and validate a file. Bad records go to `bad` (for the quarantine). Rows
    with the same normalised email are one person: the first row's lead, updated with
    each later row's non-empty values (so the latest export wins), processed once."""
    return split_records(read_contents(path, runtime))


def read_contents(path: Path, runtime: Runtime) -> FileContents:
    """The file's records with their columns mapped to lead fields (the settings'
    mapping, the aliases, and the rules' engagement columns kept)."""
    return read_file(path, **_column_options(runtime))


def open_contents(path: Path, runtime: Runtime) -> FileStream:
    """`read_contents`, streamed: the records are read one at a time when asked for."""
    return open_file(path, **_column_options(runtime))


def _column_options(runtime: Runtime) -> dict:
    return {
        "columns": runtime.settings.columns,
        "rule_attributes": [rule.attribute for rule in runtime.rules.scoring.engagement.rules],
    }


def split_records(contents: FileContents) -> Intake:
    by_email: dict[str, Lead] = {}
    rows: dict[str, int] = {}
    bad: list[Rejection] = []
    merged: list[Merged] = []
    for record in contents.records:
        checked = validate_record(record)
        if isinstance(checked, Rejection):
            bad.append(checked)
            continue
        first = by_email.get(checked.email)
        if first is None:
            by_email[checked.email] = checked
            rows[checked.id] = record.position
            continue
        by_email[checked.email] = _updated(first, checked)
        into = rows[first.id]
        merged.append(Merged(position=record.position, email=checked.email, into_row=into))
    return Intake(
        leads=list(by_email.values()),
        rows=rows,
        bad=bad,
        merged=merged,
        contents_report=contents.report(),
    )


def _updated(first: Lead, later: Lead) -> Lead:
    """`first` with `later`'s non-empty values; the id stays the first row's."""
    values = {
        name: value
        for name, value in later
        if name not in ("id", "attributes") and value is not None and name in later.model_fields_set
    }
    return first.model_copy(
        update={**values, "attributes": {**first.attributes, **later.attributes}}
    )


@flow(name="process-file", flow_run_name=file_run_name, on_failure=[alert_on_failure])
async def process_file(
    path: LeadFile, concurrency: Annotated[int, Field(ge=1, le=512)] | None = None
) -> FileRunSummary:
    """Process every lead in a CSV or JSONL file; bad records are set aside.

    Args:
        path: The lead file: an existing .csv or .jsonl file, absolute or relative to
            the repository root (e.g. examples/leads.csv). Checked before any lead runs.
        concurrency: Leads in flight at once, 1 to 512. Empty: the
            LEADFLOW_PIPELINE__CONCURRENCY setting (8 by default).
    """
    runtime = current_runtime()
    if (mode := await start_run()) != "live":  # the cut-over switch (leadflow.flows.mode)
        from leadflow.flows.cutover import file_in_mode  # it builds on this module

        return await file_in_mode(Path(path), mode, concurrency)
    started = time.perf_counter()
    intake = read_leads(Path(path), runtime)
    log.info("columns", report=intake.contents_report)
    await runtime.quarantine.put(intake.bad)
    for rejection in intake.bad:
        log.info("record set aside", where=rejection.where, reason=rejection.reason)
    results = await run_leads(runtime, intake.leads, concurrency, rows=intake.rows)
    summary = summarise(
        str(path),
        len(intake.leads) + len(intake.bad) + len(intake.merged),
        results,
        sorted(intake.bad, key=lambda rejection: rejection.position),
        rows=intake.rows,
    )
    summary.merged = intake.merged
    summary.columns = intake.contents_report
    summary.wall_seconds = round(time.perf_counter() - started, 3)
    await acreate_markdown_artifact(
        key="process-file-summary", markdown=summary.as_markdown(), description=str(path)
    )
    await publish_leads(str(path), intake.leads, results)
    log.info(
        "file processed",
        file=str(path),
        processed=summary.processed,
        set_aside=len(summary.set_aside),
        failed=len(summary.failed),
    )
    if summary.failed:
        raise LeadsFailedError(summary)
    return summary


async def run_leads(
    runtime: Runtime,
    leads: list[Lead],
    concurrency: int | None = None,
    *,
    rows: dict[str, int] | None = None,
) -> list[LeadResult]:
    """Every lead through the pipeline inside the current flow run, at most
    `concurrency` at a time, in input order; progress goes to the listener, if any.

    Leads that leadflow's own records show done (`leadflow.done`) are answered from
    there, before any task is created: a rerun of a finished file takes seconds."""
    listener = _listener.get()
    done = await runtime.done.find(leads)
    if listener:
        listener.started(len(leads))
    limit = asyncio.Semaphore(concurrency or runtime.settings.pipeline.concurrency)
    rows = rows or {}

    async def one(lead: Lead) -> LeadResult:
        if lead.id in done:
            found: DoneLead = done[lead.id]
            result: LeadResult = AlreadyDone(lead_id=lead.id, tier=found.tier, rep=found.rep)
        else:
            async with limit:
                if (mode := await mode_now()) != "live":  # switched since the run started
                    result = LeftToCurrentProcess(lead_id=lead.id, mode=mode)
                    if listener:
                        listener.finished(lead.id, True)
                    return result
                try:
                    result = await run_pipeline(lead, runtime, [])
                    result.email = lead.email
                except Exception as exc:  # the look-up or decision failed: nothing could follow
                    reason = f"{type(exc).__name__}: {exc}"
                    log.warning("lead failed", lead_id=lead.id, error=reason)
                    result = FailedBranch(
                        lead_id=lead.id,
                        branch="pipeline",
                        reason=reason,
                        email=lead.email,
                        row=rows.get(lead.id, 0),
                    )
        if listener:
            listener.finished(lead.id, not FailedBranch.all_in(result))
        return result

    results = list(await asyncio.gather(*(one(lead) for lead in leads)))
    await runtime.done.add(
        (lead, result.decision.tier, result.decision.rep)
        for lead, result in zip(leads, results, strict=True)
        if isinstance(result, LeadOutcome) and result.ok
    )
    return results


def summarise(
    file: str,
    records: int,
    results: list[LeadResult],
    rejected: list[Rejection],
    *,
    rows: dict[str, int] | None = None,
) -> FileRunSummary:
    tiers: Counter[str] = Counter()
    reps: Counter[str] = Counter()
    failed: list[FailedBranch] = []
    processed = already_done = overdue = 0
    now = datetime.now(UTC)
    left: Counter[str] = Counter()
    for result in results:
        failed += FailedBranch.all_in(result, (rows or {}).get(result.lead_id, 0))
        if isinstance(result, LeftToCurrentProcess):
            left[result.mode] += 1
            continue
        if isinstance(result, FailedBranch):
            continue
        processed += 1
        if isinstance(result, AlreadyDone):
            tiers[result.tier] += 1
            reps[result.rep] += 1
            already_done += 1
            continue
        tiers[result.decision.tier] += 1
        reps[result.decision.rep] += 1
        if result.decision.due_at and result.decision.due_at <= now:
            overdue += 1
        if all(b.status is BranchStatus.SKIPPED for b in result.branches.values()):
            already_done += 1
    return FileRunSummary(
        file=file,
        modes=["live", *sorted(left)],
        routes={"leadflow": len(results) - left.total(), "current process": left.total()}
        if left
        else {},
        records=records,
        processed=processed,
        already_done=already_done,
        overdue=overdue,
        by_tier=dict(tiers),
        by_rep=dict(reps),
        failed=failed,
        set_aside=[SetAside.of(rejection) for rejection in rejected],
    )
