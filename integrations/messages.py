"""What a notification says, independent of where it goes.

`LeadSummary` gathers the lines a rep needs (who, score and its top reasons, the
follow-up and its deadline, the rep) once, as plain text; each notifier renders it
in its own format (Slack Block Kit, a Teams Adaptive Card, an email, a digest) and
escapes it for that format. Lead data is untrusted text: it is never interpreted as
markup by any renderer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leadflow.models import Decision, Lead

TOP_REASONS = 3


@dataclass(frozen=True)
class LeadSummary:
    lead_id: str
    tier: str
    score: int
    who: str  # "Ava Stone, VP Sales at Northwind"
    email: str
    reasons: tuple[str, ...]  # "+30 fit: title: vp"
    follow_up: str  # "call, due 2026-11-22 09:15 UTC (SLA 15 min)"
    rep: str

    @classmethod
    def of(cls, lead: Lead, decision: Decision) -> LeadSummary:
        name = " ".join(part for part in (lead.first_name, lead.last_name) if part) or lead.email
        role = f", {lead.title}" if lead.title else ""
        where = f" at {lead.company or lead.domain}"
        reasons = sorted(decision.score_reasons, key=lambda r: -abs(r.points))[:TOP_REASONS]
        due = f", due {decision.due_at:%Y-%m-%d %H:%M} UTC" if decision.due_at else ""
        sla = f" (SLA {decision.sla_minutes} min)" if decision.sla_minutes else ""
        return cls(
            lead_id=lead.id,
            tier=decision.tier,
            score=decision.score,
            who=f"{name}{role}{where}",
            email=lead.email,
            reasons=tuple(f"{r.points:+d} {r.group}: {r.rule}" for r in reasons),
            follow_up=f"{decision.follow_up.value}{due}{sla}",
            rep=decision.rep,
        )

    @property
    def headline(self) -> str:
        return f"{self.tier.capitalize()} lead ({self.score}): {self.who}"

    def text(self) -> str:
        """The plain-text version: the notification fallback and the email body."""
        lines = [
            self.headline,
            f"Email: {self.email}",
            f"Why: {'; '.join(self.reasons) or 'no points'}",
            f"Follow-up: {self.follow_up}",
            f"Assigned to: {self.rep}",
        ]
        return "\n".join(lines)


TIER_ORDER = ("hot", "warm", "cold")


def hot_first(summaries: Sequence[LeadSummary]) -> list[LeadSummary]:
    """Leads in the order a rep should work them: hot, warm, cold, then by score."""

    def rank(s: LeadSummary) -> tuple[int, int]:
        tier = TIER_ORDER.index(s.tier) if s.tier in TIER_ORDER else len(TIER_ORDER)
        return (tier, -s.score)

    return sorted(summaries, key=rank)


def group_by_rep(
    items: Sequence[tuple[Lead, Decision, str]],
) -> dict[str, list[tuple[LeadSummary, str]]]:
    """{rep: [(summary, key), ...] hot first}, for digests: one message per rep."""
    groups: dict[str, list[tuple[LeadSummary, str]]] = {}
    for lead, decision, key in items:
        groups.setdefault(decision.rep, []).append((LeadSummary.of(lead, decision), key))
    for rep, entries in groups.items():
        order = {id(s): i for i, s in enumerate(hot_first([s for s, _ in entries]))}
        groups[rep] = sorted(entries, key=lambda e: order[id(e[0])])
    return groups
