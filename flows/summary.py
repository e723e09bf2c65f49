"""What a run says it did: one result per lead, and one summary, built as groups end.

Every run that takes leads in (a file, a poll, a quarantine replay) counts its leads
through `RunTally`, group by group, so its summary holds no lead beyond its group:
the same figures for 60 leads or 200,000. The lists keep their first
`SUMMARY_LIST_LIMIT` items (the quarantine, the failed-effects table and the log keep
every one); the totals count all.

A run that had records and processed none of them did not do its job: `RunTally`
says so (`nothing_processed`), the flow ends Failed with the reason, and the command
line exits non-zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, Field

from leadflow.intake import FieldWarning, Rejection
from leadflow.logging import get_logger
from leadflow.markdown import escape, table
from leadflow.models import BranchStatus, LeadOutcome

log = get_logger(__name__)

SOURCE_AGAIN = "what it gave before was kept; the next poll reads the rest again"

# Items kept in the summary's lists; the quarantine and the log hold every one.
SUMMARY_LIST_LIMIT = 1000


class FailedBranch(BaseModel):
    """A step or side effect that failed for one lead after its retries."""

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
    """A lead whose exact version leadflow's records show done: nothing was run."""

    lead_id: str
    tier: str
    rep: str
    email: str = ""


class LeftToCurrentProcess(BaseModel):
    """A lead the cut-over mode (leadflow.flows.mode) left to the current process:
    `current process` (legacy mode, or outside the pilot share: leadflow did nothing),
    `shadow` (leadflow decided it beside, with no effect) or `fallback` (a pilot lead
    leadflow failed, handed back)."""

    lead_id: str
    mode: str
    route: str = "current process"
    email: str = ""

    @property
    def described(self) -> str:
        return f"{self.route} (mode {self.mode})"


EngineResult = LeadOutcome | FailedBranch | AlreadyDone
"""What the engine (flows/engine.py) makes of a lead."""
LeadResult = EngineResult | LeftToCurrentProcess
"""What a run reports for a lead: the engine's result, or the lead left to the current
process by the cut-over mode (flows/cutover.py routes leads; only it makes the last)."""


class FileRunSummary(BaseModel):
    """What `leadflow run` prints and the run's summary artifact shows."""

    file: str
    records: int = 0
    processed: int = 0
    already_done: int = 0
    overdue: int = 0
    columns: str = ""
    by_tier: dict[str, int] = Field(default_factory=dict)
    by_rep: dict[str, int] = Field(default_factory=dict)
    failed: list[FailedBranch] = Field(default_factory=list)
    set_aside: list[SetAside] = Field(default_factory=list)
    merged: list[Merged] = Field(default_factory=list)
    warnings: list[FieldWarning] = Field(
        default_factory=list,
        description="fields a lead went on without (a value that could not be read)",
    )
    warnings_total: int = 0
    wall_seconds: float = 0.0
    modes: list[str] = Field(
        default_factory=lambda: ["live"], description="the run modes its leads saw, in order"
    )
    routes: dict[str, int] = Field(
        default_factory=dict,
        description="where the leads went, when not all through leadflow (leadflow.flows.mode)",
    )
    groups: int = 0
    group_size: int = 0
    set_aside_total: int = 0
    failed_total: int = 0
    resent: int = Field(
        default=0,
        description="side effects sent again under their key: their earlier holder was gone",
    )
    leads_per_second: float = 0.0
    source_error: str = Field(
        default="",
        description="a polled source that failed while read: the next poll reads from there",
    )
    truncated: bool = Field(default=False, description="lists hold only the first items")

    @property
    def nothing_processed(self) -> bool:
        """Records came in and not one of them was processed or routed."""
        return self.records > 0 and self.processed == 0 and not self.routes

    def as_markdown(self) -> str:
        """Every value from a lead goes through `escape()`: it is text, never markup."""
        lines = [
            f"# Leads from {escape(self.file)}",
            "",
            f"{self.processed} of {self.records} records processed in {self.wall_seconds:.1f} s; "
            f"{self.set_aside_total} set aside; {len(self.merged)} merged into an earlier row; "
            f"{self.failed_total} failed branches; {self.warnings_total} fields left out "
            "of a lead that went on.",
            *(
                ["", f"The source failed: {escape(self.source_error)}. {SOURCE_AGAIN}"]
                if self.source_error
                else []
            ),
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
        if self.warnings:
            lines += ["", "## Fields left out (the lead went on)", ""]
            lines += [
                table(
                    ("row", "lead", "field", "value", "why"),
                    [(w.position, w.lead_ref, w.field, w.value, w.problem) for w in self.warnings],
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
    """Some leads had a side effect fail after retries, or none was processed; the
    summary says which."""

    def __init__(self, summary: FileRunSummary) -> None:
        if summary.source_error:
            message = f"the source failed: {summary.source_error}; {SOURCE_AGAIN}"
            if summary.failed_total:
                message += f"; {summary.failed_total} side effects failed"
        elif summary.nothing_processed:
            message = (
                f"none of the {summary.records} records of {summary.file} was processed: "
                f"{summary.set_aside_total} set aside, {summary.failed_total} failed"
            )
        else:
            names = ", ".join(sorted({f"{f.who}/{f.branch}" for f in summary.failed}))
            more = summary.failed_total - len(summary.failed)
            message = f"{summary.failed_total} side effects failed: {names}" + (
                f" and {more} more" if more > 0 else ""
            )
        super().__init__(message)
        self.summary = summary

    def __reduce__(self):
        return (type(self), (self.summary,))


class ProgressListener(Protocol):
    def started(self, total: int) -> None: ...
    def finished(self, lead_id: str, ok: bool) -> None: ...


_listener: ContextVar[ProgressListener | None] = ContextVar("leadflow_progress", default=None)


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Report per-lead progress of the runs in this block (the CLI's progress bar)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def progress() -> ProgressListener | None:
    return _listener.get()


class RunTally:
    """The summary of one run, counted as its records are read and its groups end."""

    def __init__(self, file: str, group_size: int = 0) -> None:
        self.summary = FileRunSummary(file=file, group_size=group_size)
        self.tiers: Counter[str] = Counter()
        self.reps: Counter[str] = Counter()
        self.listener = progress()
        self.modes: list[str] = []
        self._now = datetime.now(UTC)

    def started(self, total: int) -> None:
        if self.listener:
            self.listener.started(total)

    def set_aside(self, rejections: list[Rejection]) -> None:
        summary = self.summary
        summary.records += len(rejections)
        summary.set_aside_total += len(rejections)
        room = SUMMARY_LIST_LIMIT - len(summary.set_aside)
        summary.truncated |= len(rejections) > room
        summary.set_aside += [SetAside.of(r) for r in rejections[: max(room, 0)]]
        for rejection in rejections:
            log.info("record set aside", where=rejection.where, reason=rejection.reason)

    def warned(self, warnings: list[FieldWarning]) -> None:
        """Fields dropped from leads that went on (leadflow.intake.FieldWarning)."""
        summary = self.summary
        summary.warnings_total += len(warnings)
        room = SUMMARY_LIST_LIMIT - len(summary.warnings)
        summary.truncated |= len(warnings) > room
        summary.warnings += warnings[: max(room, 0)]
        for warning in warnings:
            log.info("field left out", detail=warning.text)

    def merged(self, merged: list[Merged]) -> None:
        """Rows merged into an earlier row with the same email: one lead, not set aside."""
        self.summary.records += len(merged)
        room = SUMMARY_LIST_LIMIT - len(self.summary.merged)
        self.summary.truncated |= len(merged) > room
        self.summary.merged += merged[: max(room, 0)]

    def add(self, results: Sequence[LeadResult], *, group: bool = True) -> None:
        """Count the results of one group of leads."""
        summary = self.summary
        summary.groups += group
        failures: list[FailedBranch] = []
        for result in results:
            summary.records += 1
            lead_failures = FailedBranch.all_in(result)
            failures += lead_failures
            if isinstance(result, LeftToCurrentProcess):
                self._routed(result.route, result.mode)
            elif isinstance(result, AlreadyDone):
                summary.processed += 1
                summary.already_done += 1
                self.tiers[result.tier] += 1
                self.reps[result.rep] += 1
            elif isinstance(result, LeadOutcome):
                summary.processed += 1
                self.tiers[result.decision.tier] += 1
                self.reps[result.decision.rep] += 1
                due = result.decision.due_at
                summary.overdue += bool(due and due <= self._now)
                branches = result.branches.values()
                if all(b.status is BranchStatus.SKIPPED for b in branches):
                    summary.already_done += 1
                summary.resent += sum(b.resent for b in branches)
            if self.listener:
                self.listener.finished(result.lead_id, not lead_failures)
        summary.failed_total += len(failures)
        room = SUMMARY_LIST_LIMIT - len(summary.failed)
        summary.truncated |= len(failures) > room
        summary.failed += failures[: max(room, 0)]

    def saw(self, mode: str) -> None:
        """The mode as a group of the run was taken in: `modes` lists them in order."""
        if not self.modes or self.modes[-1] != mode:
            self.modes.append(mode)

    def _routed(self, route: str, mode: str) -> None:
        routes = self.summary.routes
        routes[route] = routes.get(route, 0) + 1
        self.saw(mode)

    def final(self, wall_seconds: float) -> FileRunSummary:
        summary = self.summary
        summary.by_tier = dict(self.tiers)
        summary.by_rep = dict(self.reps)
        summary.modes = self.modes or ["live"]
        summary.wall_seconds = round(wall_seconds, 3)
        if summary.processed and (summary.routes or set(summary.modes) - {"live"}):
            summary.routes["leadflow"] = summary.processed
        if wall_seconds > 0:
            summary.leads_per_second = round(summary.processed / wall_seconds, 1)
        return summary
