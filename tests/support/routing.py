"""Routing on a fixed clock: the reps of the example territories, Monday 10:00 in Berlin,
a clock the test moves by hand, the rules with a team's or reps' settings changed, a
German lead and a tier by name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadflow.models import Lead
from leadflow.rules import Rules, Tier

ANNA, BEN, WES, QUEUE = "anna@example.com", "ben@example.com", "wes@example.com", "q@example.com"


# Monday 12 January 2026, 10:00 in Berlin (UTC+1)
MONDAY_TEN = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_rules(
    *, emea: dict[str, Any] | None = None, reps: dict[str, dict[str, Any]] | None = None
) -> Rules:
    reps = reps or {}
    return Rules.model_validate(
        {
            "tiers": [
                {"name": "hot", "min_score": 70, "follow_up": "call", "sla_minutes": 15},
                {
                    "name": "warm",
                    "min_score": 40,
                    "follow_up": "email_sequence",
                    "sla_minutes": 60,
                    "may_wait_for_shift": True,
                },
                {"name": "cold", "min_score": 0, "follow_up": "nurture"},
            ],
            "assignment": {
                "fallback_owner": QUEUE,
                "hours": {
                    "berlin": {
                        "timezone": "Europe/Berlin",
                        "days": ["mon", "tue", "wed", "thu", "fri"],
                        "start": "09:00",
                        "end": "17:00",
                    }
                },
                "territories": [
                    {"name": "emea", "countries": ["DE"], "team": "emea", **(emea or {})},
                    {"name": "world", "team": "world"},
                ],
                "teams": {
                    "emea": {
                        "hours": "berlin",
                        "reps": [
                            {"id": ANNA, "weight": 2, **reps.get(ANNA, {})},
                            {"id": BEN, "weight": 1, **reps.get(BEN, {})},
                        ],
                    },
                    "world": {"reps": [{"id": WES}]},
                },
            },
        }
    )


def de_lead(n: int | str) -> Lead:
    return Lead.from_record({"email": f"p{n}@kunde.test", "country": "DE"})


def tier(rules: Rules, name: str) -> Tier:
    return next(t for t in rules.tiers if t.name == name)
