"""What a shadow run of a file found, counted as its comparisons are made.

A shadow run stores its comparisons a group at a time and keeps none of them, so its
summary is a running count (`ShadowTally`), not a look over a list; its lists (the
errors of either side, the records set aside) keep their first `SUMMARY_LIST_LIMIT`
items, as a file run's do, and the totals count all: memory stays flat even when the
current process fails for every lead of a long file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, Field

from leadflow.compare import EFFECT_FIELDS
from leadflow.flows.summary import SUMMARY_LIST_LIMIT, Merged, SetAside
from leadflow.intake import Rejection
from leadflow.markdown import escape, table
from leadflow.models import Decision
from leadflow.shadow_store import ComparisonRecord


class ShadowRunSummary(BaseModel):
    """What `leadflow shadow` prints and the `shadow-run-summary` artifact shows."""

    file: str
    legacy: str
    records: int
    compared: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    agreement: dict[str, float] = Field(default_factory=dict)
    mismatched_fields: dict[str, int] = Field(default_factory=dict)
    control_errors: list[str] = Field(default_factory=list)
    candidate_errors: list[str] = Field(default_factory=list)
    set_aside: list[SetAside] = Field(default_factory=list)
    control_errors_total: int = 0
    candidate_errors_total: int = 0
    set_aside_total: int = 0
    baseline: int = 0
    wall_seconds: float = 0.0

    def as_markdown(self) -> str:
        """Lead text (file name, errors) goes through `leadflow.markdown`: text, never markup."""
        lines = [
            f"# Shadow run over {escape(self.file)} against {escape(self.legacy)}",
            "",
            f"{self.compared} leads compared in {self.wall_seconds:.1f} s; "
            f"{self.set_aside_total} records set aside; nothing was sent or written.",
            "",
            table(("outcome", "leads"), sorted(self.outcomes.items())),
            "",
            table(
                ("field", "agreement", "mismatches"),
                [
                    (f, f"{a:.1%}", self.mismatched_fields.get(f, 0))
                    for f, a in self.agreement.items()
                ],
            ),
        ]
        for side, errors in (
            ("current process", self.control_errors),
            ("leadflow", self.candidate_errors),
        ):
            if errors:
                lines += ["", f"Errors on the {side}'s side:", *(f"- {escape(e)}" for e in errors)]
        return "\n".join(lines)


class ShadowTally:
    """The running counts behind a `ShadowRunSummary`: outcomes, and per field (and
    intended side effect) how many comparisons matched and mismatched."""

    def __init__(self, file: str, spec: str) -> None:
        self.summary = ShadowRunSummary(file=file, legacy=spec, records=0)
        self.outcomes: Counter[str] = Counter()
        self.matched: Counter[str] = Counter()
        self.mismatched: Counter[str] = Counter()

    def set_aside(self, rejections: Iterable[Rejection]) -> None:
        summary = self.summary
        for rejection in rejections:
            summary.records += 1
            summary.set_aside_total += 1
            _keep(summary.set_aside, SetAside.of(rejection))

    def merged(self, merged: Iterable[Merged]) -> None:
        self.summary.records += sum(1 for _ in merged)

    def add(self, results: Iterable[ComparisonRecord]) -> None:
        """Count a lead's comparisons (its baseline ones count apart)."""
        summary = self.summary
        for record in results:
            if record.kind != "shadow":
                summary.baseline += record.kind == "baseline"
                continue
            summary.records += 1
            summary.compared += 1
            self.outcomes[record.outcome.value] += 1
            judged = {**record.comparison.fields, **record.comparison.effects}
            for field, comparison in judged.items():
                outcome = comparison.outcome.value
                if outcome == "matched":
                    self.matched[field] += 1
                elif outcome == "mismatched":
                    self.mismatched[field] += 1
            if record.control_error:
                summary.control_errors_total += 1
                _keep(summary.control_errors, f"{record.lead_id}: {record.control_error}")
            if record.candidate_error:
                summary.candidate_errors_total += 1
                _keep(summary.candidate_errors, f"{record.lead_id}: {record.candidate_error}")

    def final(self) -> ShadowRunSummary:
        """The summary so far, fields in `Decision.COMPARED_FIELDS` order, then effects."""
        summary = self.summary.model_copy(deep=True)
        summary.outcomes = dict(self.outcomes)
        summary.agreement = {}
        for field in (*Decision.COMPARED_FIELDS, *EFFECT_FIELDS):
            counted = self.matched[field] + self.mismatched[field]
            if counted:
                summary.agreement[field] = self.matched[field] / counted
        summary.mismatched_fields = {
            field: self.mismatched[field] for field in summary.agreement if self.mismatched[field]
        }
        return summary


def _keep(kept: list, item: object) -> None:
    """Add to one of the summary's lists while it has room (SUMMARY_LIST_LIMIT)."""
    if len(kept) < SUMMARY_LIST_LIMIT:
        kept.append(item)
