"""`process_file`: every lead in a CSV or JSONL file, with bounded concurrency.

Records are read and validated up front: bad ones go to the quarantine with their
row and reason. The rest go through the same tasks as `process_lead`, inside this one
flow run, at most `concurrency` leads at a time. They are not child flow runs: a flow
run costs API round trips that a task run does not, and on the default SQLite-backed
Prefect server creating flow runs while task events are being recorded hits "database
is locked" (HTTP 503), which the client retries after 2 s. One lead per flow run
made a 55-lead file take 73 s here; tasks in one run take a few seconds.

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
from pathlib import Path
from typing import Annotated, Protocol

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from pydantic import AfterValidator, BaseModel, Field, FilePath, TypeAdapter, ValidationError

from flows.alerts import alert_on_failure
from flows.artifacts import publish_leads
from flows.lead import run_pipeline
from flows.naming import file_run_name
from flows.runtime import Runtime, current_runtime
from integrations.file_source import SUFFIXES, read_records
from leadflow.intake import Rejection, validate_record
from leadflow.logging import get_logger
from leadflow.markdown import escape, table
from leadflow.models import BranchStatus, Lead, LeadOutcome

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

    @classmethod
    def all_in(cls, result: LeadOutcome | FailedBranch) -> list[FailedBranch]:
        """Every failure in one lead's result: the pipeline's, or each failed branch."""
        if isinstance(result, FailedBranch):
            return [result]
        return [
            cls(lead_id=result.lead_id, branch=name, reason=reason)
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


class FileRunSummary(BaseModel):
    """What `leadflow run` prints and the `process-file` artifact shows."""

    file: str
    records: int
    processed: int = 0
    already_done: int = 0
    by_tier: dict[str, int] = Field(default_factory=dict)
    by_rep: dict[str, int] = Field(default_factory=dict)
    failed: list[FailedBranch] = Field(default_factory=list)
    set_aside: list[SetAside] = Field(default_factory=list)
    wall_seconds: float = 0.0

    def as_markdown(self) -> str:
        lines = [
            f"# Leads from {escape(self.file)}",
            "",
            f"{self.processed} of {self.records} records processed in {self.wall_seconds:.1f} s; "
            f"{len(self.set_aside)} set aside; {len(self.failed)} failed branches.",
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
                    ("lead", "branch", "reason"),
                    [(f.lead_id, f.branch, f.reason) for f in self.failed],
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
        return "\n".join(lines)


class LeadsFailedError(RuntimeError):
    """Some leads had a side effect fail after retries; the summary says which."""

    def __init__(self, summary: FileRunSummary) -> None:
        names = ", ".join(sorted({f"{f.lead_id}/{f.branch}" for f in summary.failed}))
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


def split_records(path: Path) -> tuple[list[Lead], list[Rejection], list[Rejection]]:
    """Valid leads, bad records (for the quarantine) and repeats. A lead that appears
    twice in the file is set aside the second time, but it is not bad: processing it
    would change nothing, so it is not quarantined."""
    leads: list[Lead] = []
    bad: list[Rejection] = []
    repeats: list[Rejection] = []
    first_row: dict[str, int] = {}
    for record in read_records(path):
        checked = validate_record(record)
        if isinstance(checked, Rejection):
            bad.append(checked)
        elif checked.id in first_row:
            repeats.append(
                Rejection(
                    key=f"dup-{checked.id}-{record.origin}-{record.position}",
                    origin=record.origin,
                    position=record.position,
                    lead_ref=checked.id,
                    reason=f"duplicate: the same lead as row {first_row[checked.id]}",
                    data=record.data,
                )
            )
        else:
            first_row[checked.id] = record.position
            leads.append(checked)
    return leads, bad, repeats


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
    started = time.perf_counter()
    leads, bad, repeats = split_records(Path(path))
    await runtime.quarantine.put(bad)
    rejected = sorted(bad + repeats, key=lambda rejection: rejection.position)
    for rejection in rejected:
        log.info("record set aside", where=rejection.where, reason=rejection.reason)
    results = await run_leads(runtime, leads, concurrency)
    summary = summarise(str(path), len(leads) + len(rejected), results, rejected)
    summary.wall_seconds = round(time.perf_counter() - started, 3)
    await acreate_markdown_artifact(
        key="process-file-summary", markdown=summary.as_markdown(), description=str(path)
    )
    await publish_leads(str(path), leads, results)
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
    runtime: Runtime, leads: list[Lead], concurrency: int | None = None
) -> list[LeadOutcome | FailedBranch]:
    """Every lead through the pipeline inside the current flow run, at most
    `concurrency` at a time, in input order; progress goes to the listener, if any."""
    listener = _listener.get()
    if listener:
        listener.started(len(leads))
    limit = asyncio.Semaphore(concurrency or runtime.settings.pipeline.concurrency)

    async def one(lead: Lead) -> LeadOutcome | FailedBranch:
        async with limit:
            try:
                result: LeadOutcome | FailedBranch = await run_pipeline(lead, runtime, [])
            except Exception as exc:  # the look-up or decision failed: nothing could follow
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("lead failed", lead_id=lead.id, error=reason)
                result = FailedBranch(lead_id=lead.id, branch="pipeline", reason=reason)
        if listener:
            listener.finished(lead.id, isinstance(result, LeadOutcome) and result.ok)
        return result

    return list(await asyncio.gather(*(one(lead) for lead in leads)))


def summarise(
    file: str,
    records: int,
    results: list[LeadOutcome | FailedBranch],
    rejected: list[Rejection],
) -> FileRunSummary:
    tiers: Counter[str] = Counter()
    reps: Counter[str] = Counter()
    failed: list[FailedBranch] = []
    processed = already_done = 0
    for result in results:
        failed += FailedBranch.all_in(result)
        if isinstance(result, FailedBranch):
            continue
        processed += 1
        tiers[result.decision.tier] += 1
        reps[result.decision.rep] += 1
        if all(b.status is BranchStatus.SKIPPED for b in result.branches.values()):
            already_done += 1
    return FileRunSummary(
        file=file,
        records=records,
        processed=processed,
        already_done=already_done,
        by_tier=dict(tiers),
        by_rep=dict(reps),
        failed=failed,
        set_aside=[SetAside.of(rejection) for rejection in rejected],
    )
