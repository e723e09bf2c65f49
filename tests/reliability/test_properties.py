"""Property-based tests (hypothesis) of validation, scoring and routing.

- No input makes validation raise: every record becomes a Lead or a Rejection whose
  reason names a field, and a reason never carries an oversized value whole.
- Scores stay within their caps: each group within its cap, the disqualifiers above
  their floor, the total within 0..max_total, and the reasons add up to the score.
- The same lead always gets the same decision (scoring is a function of the lead;
  a lead keeps its first assignment).
- Every valid lead gets exactly one rep: a rep of the territory's team, the CRM
  owner, or the fallback owner.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow.assignment import Assigner
from leadflow.db import dispose_engines
from leadflow.intake import RawRecord, Rejection, validate_record
from leadflow.models import LEAD_FIELDS, CrmMatch, Lead
from leadflow.rules import load_rules, score_lead
from tests.support.paths import EXAMPLES

RULES = load_rules(EXAMPLES / "rules.toml")
SCORING = RULES.scoring
FIELDS = [*LEAD_FIELDS, "demo_requested", "pricing_page_views", "webinar_attended", "notes"]

HOSTILE = [
    "<!channel>",
    "<!here>",
    "<@U123>",
    "<https://x.test|click>",
    "*bold*",
    "<script>alert(1)</script>",
    "'; DROP TABLE crm_contacts; --",
    '=HYPERLINK("http://x")',
    "+1",
    "-2",
    "@SUM(A1)",
    "\u202egnp.exe",
    "Ünïcödé 名前",
    "x" * 300,
]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(HOSTILE),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
emails = st.one_of(
    st.emails(),
    st.sampled_from(
        [
            "Ada@Example.ORG ",
            "ünïcode@bücher.de",
            "user@xn--bcher-kva.de",
            "not-an-email",
            "a@b",
            "@x.y",
            "x@@y.z",
            "",
            "<!channel>@x.y",
        ]
    ),
    st.text(max_size=30),
)
records = st.dictionaries(st.sampled_from(FIELDS), values, max_size=12).flatmap(
    lambda base: st.builds(lambda email: {**base, "email": email}, emails) | st.just(base)
)


@given(records)
@settings(max_examples=400, deadline=None)
def test_validation_never_raises_and_names_the_field(raw: dict[str, Any]) -> None:
    checked = validate_record(RawRecord(origin="fuzz.csv", position=7, data=raw))
    if isinstance(checked, Rejection):
        assert checked.reason and ":" in checked.reason
        assert checked.where == "fuzz.csv row 7"
        assert len(checked.reason) < 2000, "a reason carries a value whole"
    else:
        assert isinstance(checked, Lead) and "@" in checked.email


def valid_leads() -> st.SearchStrategy[Lead]:
    engagement = {
        "demo_requested": st.sampled_from(["true", "false", "yes", "", "1", "0", "maybe"]),
        "pricing_page_views": st.one_of(
            st.integers(-(10**9), 10**9).map(str), st.sampled_from(["", "nan", "inf", "-inf"])
        ),
        "webinar_attended": st.sampled_from(["true", "false", "", "TRUE"]),
        "emails_opened": st.integers(-5, 10**6).map(str),
    }
    return st.builds(
        lambda email, title, country, employees, source, extra: Lead.from_record(
            {
                "email": email,
                "title": title,
                "country": country,
                "employee_count": employees,
                "source": source,
                **extra,
            }
        ),
        st.emails(),
        st.one_of(
            st.none(),
            st.sampled_from(["CTO", "VP Sales", "Intern", "Head of Ops"]),
            st.text(max_size=20),
        ),
        st.one_of(st.none(), st.sampled_from(["US", "GB", "DE", "CA", "BR", "JP", "ZZ"])),
        st.one_of(st.none(), st.integers(0, 10**7)),
        st.one_of(st.none(), st.sampled_from(["website", "referral", "event", "webinar"])),
        st.fixed_dictionaries({}, optional=engagement),
    )


@given(valid_leads())
@settings(max_examples=300, deadline=None)
def test_scores_stay_within_their_caps_and_are_deterministic(lead: Lead) -> None:
    score = score_lead(lead, SCORING)
    assert 0 <= score.value <= SCORING.max_total
    assert sum(r.points for r in score.reasons) == score.value
    by_group: dict[str, int] = {}
    for reason in score.reasons:
        by_group[reason.group] = by_group.get(reason.group, 0) + reason.points
    if SCORING.fit.cap is not None:
        assert by_group.get("fit", 0) <= SCORING.fit.cap
    if SCORING.engagement.cap is not None:
        assert by_group.get("engagement", 0) <= SCORING.engagement.cap
    if SCORING.disqualifiers.cap is not None:
        assert by_group.get("disqualifiers", 0) >= SCORING.disqualifiers.cap
    assert score_lead(lead, SCORING) == score
    tier = RULES.tier_for(score.value)
    assert tier == RULES.tier_for(score_lead(lead, SCORING).value)


def _reps() -> set[str]:
    return {rep.id for team in RULES.assignment.teams.values() for rep in team.reps}


@given(
    st.lists(valid_leads(), min_size=1, max_size=8, unique_by=lambda lead: lead.id),
    st.one_of(st.none(), st.emails()),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_lead_gets_exactly_one_rep_and_keeps_it(
    tmp_path_factory, leads: list[Lead], owner: str | None
) -> None:
    folder: Path = tmp_path_factory.mktemp("assign")
    url = f"sqlite+aiosqlite:///{folder / 'assign.db'}"
    match = CrmMatch(contact_owner=owner.lower()) if owner else None

    async def run() -> tuple[list, list]:
        try:
            assigner = Assigner(RULES.assignment, url)
            first = [await assigner.assign(lead, match) for lead in leads]
            again = await assigner.assign_many(leads, [match] * len(leads))
            return first, again
        finally:
            await dispose_engines()

    first, again = asyncio.run(run())
    allowed = _reps() | {RULES.assignment.fallback_owner} | ({owner.lower()} if owner else set())
    for assignment in first:
        assert assignment.rep in allowed and assignment.rep
        if owner and RULES.assignment.use_crm_owner:
            assert assignment.rep == owner.lower()
    assert [a.rep for a in again] == [a.rep for a in first]
