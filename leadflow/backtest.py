"""`leadflow backtest`: what new rules would have decided for the leads leadflow
decided over a window, and what would change.

The decisions store keeps each lead with the CRM match it was decided from
(leadflow.stores.decisions), so a replay needs no vendor: every lead of the window
(its latest version) is decided again with the new rules in a Rehearsal (the rules'
scoring, a scratch round robin, the clock set to the instant it was routed), oldest
first so the rotation and the caps build up as they would have. The rotation starts
fresh at the window's start, so a rep picked by round robin may differ where nothing
in the rules changed; the rule field (territory and team) says whether the routing
itself changed.

The result is a list of shadow-report records (the stored decision as the control,
the new one as the candidate), so the terminal table, the HTML report and the CSV
are the shadow report's renderers (leadflow.report_render with its BACKTEST labels).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from leadflow.compare import CompareRules, Comparison, FieldResult, Outcome, compare
from leadflow.models import Decision, Score
from leadflow.rehearsal import Rehearsal, scratch_database
from leadflow.report import ShadowReport, build_report
from leadflow.rules import Rules
from leadflow.shadow_settings import Gates
from leadflow.shadow_store import ComparisonRecord
from leadflow.stores.decisions import DecisionStore, StoredDecision

# The fields a backtest reports on, as the shadow report names them.
FIELDS = ("tier", "follow_up", "rep", "rule")
RoutedAt = Literal["decided", "created"]
# Judged as they are: no score tolerance, no "same team" for reps, no side effects.
_EXACT = CompareRules(rep_equivalence="exact", effects=[])


def window_start(since: str, now: datetime) -> datetime:
    """The start of the window `since` names: a duration back from `now` (14d, 36h)
    or a date or instant (2026-11-01, 2026-11-01T09:00:00Z)."""
    text = since.strip().lower()
    units = {"d": "days", "h": "hours"}
    if text[-1:] in units and text[:-1].isdigit():
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(since.strip())
    except ValueError:
        raise ValueError(
            f"--since {since!r}: give a duration such as 14d or 36h, or a date such as 2026-11-01"
        ) from None
    return _aware(moment)


def _aware(moment: datetime) -> datetime:
    """SQLite hands stored instants back without their zone; leadflow stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def routed_at(stored: StoredDecision, at: RoutedAt) -> datetime:
    """When the lead is routed in the replay: when it was decided, or (`created`, for
    leads loaded from files after the fact) when it was created, if known."""
    if at == "created" and stored.lead.created_at is not None:
        return _aware(stored.lead.created_at)
    return _aware(stored.decided_at)


async def replay(
    store: DecisionStore,
    rules: Rules,
    since: datetime,
    until: datetime,
    *,
    at: RoutedAt = "decided",
    keep_scores: bool = False,
) -> list[ComparisonRecord]:
    """Each lead decided in [since, until) (its latest version), decided again with
    `rules`, as a comparison record: stored decision against new. `keep_scores`: use
    the stored score (a scorer other than the rules' made it) and re-decide the rest."""
    latest: dict[str, StoredDecision] = {}
    async for stored in store.between(since, until):
        latest[stored.lead.id] = stored  # oldest first: the last one is the latest
    ordered = sorted(latest.values(), key=lambda item: routed_at(item, at))
    records = []
    async with scratch_database() as url:
        rehearsal = Rehearsal(rules, url)
        for stored in ordered:
            old = stored.decision
            given = Score(value=old.score, reasons=old.score_reasons) if keep_scores else None
            when = routed_at(stored, at)
            new = await rehearsal.decide(stored.lead, stored.match, when, score=given)
            records.append(_record(stored, new, when))
    return records


def _record(stored: StoredDecision, new: Decision, when: datetime) -> ComparisonRecord:
    old = stored.decision
    judged = compare(old, new, rules=_EXACT)
    same_rule = old.assignment_rule == new.assignment_rule
    fields = {
        **judged.fields,
        "rule": FieldResult(
            outcome=Outcome.MATCHED if same_rule else Outcome.MISMATCHED,
            control=old.assignment_rule,
            candidate=new.assignment_rule,
        ),
    }
    changed = any(result.outcome is Outcome.MISMATCHED for result in fields.values())
    return ComparisonRecord(
        run_id="backtest",
        legacy=f"rules {old.rules_version or '-'}",
        lead_id=stored.lead.id,
        email=stored.lead.email,
        compared_at=when,
        comparison=Comparison(
            outcome=Outcome.MISMATCHED if changed else judged.outcome, fields=fields
        ),
        control=old,
        candidate=new,
    )


@dataclass(frozen=True)
class FieldChanges:
    """How many leads would get another value in one field, and which changes."""

    field: str
    leads: int
    changed: int
    how: Counter[tuple[str, str]]

    def commonest(self, top: int = 3) -> str:
        shown = [f"{old} -> {new}: {n}" for (old, new), n in self.how.most_common(top)]
        rest = sum(self.how.values()) - sum(n for _, n in self.how.most_common(top))
        return "; ".join(shown) + (f"; {rest} other" if rest else "")


def changes(records: list[ComparisonRecord]) -> list[FieldChanges]:
    """Per reported field: leads compared, leads changed, and the changes counted."""
    found = []
    for name in FIELDS:
        how: Counter[tuple[str, str]] = Counter()
        for record in records:
            result = record.comparison.fields[name]
            if result.outcome is Outcome.MISMATCHED:
                how[(str(result.control), str(result.candidate))] += 1
        found.append(FieldChanges(name, len(records), sum(how.values()), how))
    return found


def report(
    records: list[ComparisonRecord], since: datetime, until: datetime, rules: Rules
) -> ShadowReport:
    """The shadow report's figures over the replay: what is unchanged per field (the
    rule included), tier confusion, the commonest changes with examples."""
    built = build_report(records, since=since, until=until, gates=Gates(min_sample=1))
    agreement: dict[str, float | None] = {
        found.field: 1 - found.changed / found.leads if found.leads else None
        for found in changes(records)
    }
    unchanged = sum(r.outcome is not Outcome.MISMATCHED for r in records)
    return built.model_copy(
        update={
            "agreement": agreement,
            "gates": [],
            "verdict": (
                f"{len(records) - unchanged} of {len(records)} leads would change "
                f"with rules {rules.version}"
            ),
            "legacy": [f"decided with {', '.join(built.legacy) or 'nothing'}"],
        }
    )
