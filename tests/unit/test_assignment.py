"""Rep assignment: the weighted round robin's fairness, and the waterfall on a real
(temporary) SQLite database, including concurrent and cross-instance picks."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from leadflow.assignment import Assigner, pick_weighted
from leadflow.models import CrmMatch, Lead
from leadflow.rules import AssignmentRules, Rep, Rules, load_rules

EXAMPLE_RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.toml"
NA_TEAM = {"alice@example.com": 3, "bob@example.com": 2, "carol@example.com": 1}


# --- pick_weighted --------------------------------------------------------------------


def team(weights: list[int], unavailable: frozenset[int] = frozenset()) -> list[Rep]:
    return [
        Rep(id=f"rep{i}", weight=w, available=i not in unavailable) for i, w in enumerate(weights)
    ]


def run_picks(reps: list[Rep], n: int) -> list[str]:
    credit: dict[str, int] = {}
    picks = []
    for _ in range(n):
        chosen, credit = pick_weighted(reps, credit)
        picks.append(chosen)
    return picks


@pytest.mark.parametrize(
    ("weights", "unavailable"),
    [
        pytest.param([1], frozenset(), id="1"),
        pytest.param([1, 1], frozenset(), id="1-1"),
        pytest.param([3, 2, 1], frozenset(), id="3-2-1"),
        pytest.param([5, 1], frozenset(), id="5-1"),
        pytest.param([2, 2, 1, 7], frozenset(), id="2-2-1-7"),
        pytest.param([3, 2, 1, 1], frozenset({3}), id="3-2-1-unavailable"),
        pytest.param([4, 9, 1], frozenset({1}), id="heaviest-unavailable"),
        pytest.param([1, 1, 1, 1, 1, 20], frozenset(), id="one-heavy"),
        pytest.param([7, 3, 3, 1], frozenset({0, 2}), id="two-unavailable"),
    ],
)
@pytest.mark.parametrize("n", [1, 7, 60, 500])
def test_pick_weighted_every_prefix_within_one(
    weights: list[int], unavailable: frozenset[int], n: int
) -> None:
    reps = team(weights, unavailable)
    available = [rep for rep in reps if rep.available]
    total = sum(rep.weight for rep in available)
    picks = run_picks(reps, n)
    counts: Counter[str] = Counter()
    for done, chosen in enumerate(picks, start=1):
        counts[chosen] += 1
        for rep in available:
            assert abs(counts[rep.id] - done * rep.weight / total) < 1, (done, rep.id, counts)
    assert not {rep.id for rep in reps if not rep.available} & set(picks)
    assert run_picks(reps, n) == picks  # deterministic


def test_pick_weighted_interleaves_and_breaks_ties_by_order() -> None:
    assert run_picks(team([1, 1]), 4) == ["rep0", "rep1", "rep0", "rep1"]
    # smooth, not bursty: a 5:1 team does not give rep0 five in a row then rep1
    assert run_picks(team([5, 1]), 6) == ["rep0", "rep0", "rep0", "rep1", "rep0", "rep0"]
    assert run_picks(team([3, 2, 1]), 6) == ["rep0", "rep1", "rep0", "rep2", "rep1", "rep0"]


def test_pick_weighted_does_not_touch_its_input_or_unavailable_reps() -> None:
    reps = team([2, 1, 5], unavailable=frozenset({2}))
    credit = {"rep0": 1, "rep2": 40}
    chosen, new_credit = pick_weighted(reps, credit)
    assert credit == {"rep0": 1, "rep2": 40}
    assert chosen == "rep0"
    assert new_credit == {"rep0": 1 + 2 - 3, "rep1": 1, "rep2": 40}
    assert sum(v for k, v in new_credit.items() if k != "rep2") == 1  # credits stay balanced


def test_pick_weighted_resumes_from_stored_credit() -> None:
    """Persisting the credits between picks is the same as one long run."""
    reps = team([3, 2, 1])
    credit: dict[str, int] = {}
    resumed = []
    for _ in range(30):
        chosen, credit = pick_weighted(reps, dict(credit))
        resumed.append(chosen)
    assert resumed == run_picks(reps, 30)


# --- Assigner ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(EXAMPLE_RULES)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/assign.db"


def lead(n: int | str = 1, **fields: object) -> Lead:
    return Lead.from_record({"email": f"person{n}@customer.test", **fields})


def na_lead(n: int | str = 1) -> Lead:
    return lead(n, country="US", employee_count=50)


def na_sequence(n: int) -> list[str]:
    """The round-robin order the NA team should see."""
    return run_picks(
        [
            Rep(id="alice@example.com", weight=3),
            Rep(id="bob@example.com", weight=2),
            Rep(id="carol@example.com", weight=1),
            Rep(id="dave@example.com", weight=1, available=False),
        ],
        n,
    )


@pytest.mark.parametrize(
    ("match", "rep", "rule"),
    [
        pytest.param(
            CrmMatch(contact_owner="zed@example.com", account_owner="erin@example.com"),
            "zed@example.com",
            "crm_owner:contact",
            id="contact-owner-first",
        ),
        pytest.param(
            CrmMatch(account_owner="erin@example.com"),
            "erin@example.com",
            "crm_owner:account",
            id="account-owner-next",
        ),
        pytest.param(
            CrmMatch(contact_owner="dave@example.com"),
            "alice@example.com",
            "territory:north-america/round_robin:na",
            id="unavailable-owner-skipped",
        ),
        pytest.param(
            CrmMatch(contact_owner="dave@example.com", account_owner="erin@example.com"),
            "erin@example.com",
            "crm_owner:account",
            id="unavailable-contact-owner-then-account-owner",
        ),
        pytest.param(
            CrmMatch(enrichment={"company": "x"}),
            "alice@example.com",
            "territory:north-america/round_robin:na",
            id="no-owner",
        ),
        pytest.param(
            None,
            "alice@example.com",
            "territory:north-america/round_robin:na",
            id="no-match",
        ),
    ],
)
async def test_crm_owner_step(
    rules: Rules, db_url: str, match: CrmMatch | None, rep: str, rule: str
) -> None:
    assignment = await Assigner(rules.assignment, db_url).assign(na_lead(), match)
    assert (assignment.rep, assignment.rule) == (rep, rule)


async def test_crm_owner_ignored_when_disabled(rules: Rules, db_url: str) -> None:
    off = rules.assignment.model_copy(update={"use_crm_owner": False})
    assignment = await Assigner(off, db_url).assign(
        na_lead(), CrmMatch(contact_owner="zed@example.com")
    )
    assert assignment.rule == "territory:north-america/round_robin:na"


@pytest.mark.parametrize(
    ("fields", "rep", "rule"),
    [
        pytest.param(
            {"country": "US", "employee_count": 10},
            "alice@example.com",
            "territory:north-america/round_robin:na",
            id="region-na-us",
        ),
        pytest.param(
            {"country": "ca"},
            "alice@example.com",
            "territory:north-america/round_robin:na",
            id="region-na-ca-no-size",
        ),
        pytest.param(
            {"country": "DE", "employee_count": 999},
            "greta@example.com",
            "territory:emea/round_robin:emea",
            id="region-emea",
        ),
        pytest.param(
            {"country": "GB", "employee_count": 1000},
            "erin@example.com",
            "territory:enterprise/round_robin:enterprise",
            id="min-employees-boundary",
        ),
        pytest.param(
            {"country": "US", "employee_count": 40_000},
            "erin@example.com",
            "territory:enterprise/round_robin:enterprise",
            id="enterprise-before-region",
        ),
        pytest.param(
            {"country": "JP", "employee_count": 20},
            "ivan@example.com",
            "territory:rest-of-world/round_robin:global",
            id="catch-all",
        ),
        pytest.param(
            {}, "ivan@example.com", "territory:rest-of-world/round_robin:global", id="no-country"
        ),
    ],
)
async def test_territories(rules: Rules, db_url: str, fields: dict, rep: str, rule: str) -> None:
    assignment = await Assigner(rules.assignment, db_url).assign(lead(**fields), None)
    assert (assignment.rep, assignment.rule) == (rep, rule)


async def test_territory_max_employees(db_url: str) -> None:
    rules = AssignmentRules.model_validate(
        {
            "fallback_owner": "queue@example.com",
            "territories": [{"name": "smb", "max_employees": 49, "team": "smb"}],
            "teams": {"smb": {"reps": [{"id": "sam@example.com"}]}},
        }
    )
    assigner = Assigner(rules, db_url)
    assert (await assigner.assign(lead(1, employee_count=49), None)).rep == "sam@example.com"
    assert (await assigner.assign(lead(2, employee_count=50), None)).rule == "fallback"
    assert (await assigner.assign(lead(3), None)).rule == "fallback"  # size unknown


async def test_fallback_without_territories(rules: Rules, db_url: str) -> None:
    bare = rules.assignment.model_copy(update={"territories": []})
    assignment = await Assigner(bare, db_url).assign(na_lead(), CrmMatch())
    assert (assignment.rep, assignment.rule) == ("sales-queue@example.com", "fallback")


async def test_team_with_nobody_available_falls_through(db_url: str) -> None:
    rules = AssignmentRules.model_validate(
        {
            "fallback_owner": "queue@example.com",
            "territories": [
                {"name": "first", "team": "away"},
                {"name": "second", "team": "here"},
            ],
            "teams": {
                "away": {"reps": [{"id": "gone@example.com", "available": False}]},
                "here": {"reps": [{"id": "here@example.com"}]},
            },
        }
    )
    assignment = await Assigner(rules, db_url).assign(lead(), None)
    assert (assignment.rep, assignment.rule) == (
        "here@example.com",
        "territory:second/round_robin:here",
    )


async def test_same_lead_twice_does_not_advance_rotation(rules: Rules, db_url: str) -> None:
    assigner = Assigner(rules.assignment, db_url)
    expected = na_sequence(3)
    first = await assigner.assign(na_lead("a"), None)
    again = await assigner.assign(na_lead("a"), None)
    # a retry with a CRM owner found meanwhile still gets the first answer
    retried = await assigner.assign(na_lead("a"), CrmMatch(contact_owner="zed@example.com"))
    assert first == again == retried
    assert first.rep == expected[0]
    assert (await assigner.assign(na_lead("b"), None)).rep == expected[1]
    # another worker (a new Assigner) sees the stored answer and the stored rotation
    other = Assigner(rules.assignment, db_url)
    assert await other.assign(na_lead("a"), None) == first
    assert (await other.assign(na_lead("c"), None)).rep == expected[2]


async def test_sequential_assignments_follow_the_rotation(rules: Rules, db_url: str) -> None:
    assigner = Assigner(rules.assignment, db_url)
    reps = [(await assigner.assign(na_lead(i), None)).rep for i in range(12)]
    assert reps == na_sequence(12)


def assert_split_exact(reps: list[str]) -> None:
    counts = Counter(reps)
    total = sum(NA_TEAM.values())
    assert set(counts) <= set(NA_TEAM), counts  # dave (unavailable) never gets a lead
    for rep, weight in NA_TEAM.items():
        assert abs(counts[rep] - len(reps) * weight / total) < 1, counts


async def test_concurrent_assignments_split_exactly(rules: Rules, db_url: str) -> None:
    assigner = Assigner(rules.assignment, db_url)
    results = await asyncio.gather(*(assigner.assign(na_lead(i), None) for i in range(200)))
    assert all(r.rule == "territory:north-america/round_robin:na" for r in results)
    reps = [r.rep for r in results]
    assert_split_exact(reps)
    assert Counter(reps) == Counter(na_sequence(200))


@pytest.mark.parametrize("second_url", ["same", "alias"])
async def test_two_assigners_interleaved_split_exactly(
    rules: Rules, tmp_path: Path, second_url: str
) -> None:
    """Two workers on one database. With "alias" the second one spells the URL
    differently, so it gets its own engine and connection pool, like another process."""
    url = f"sqlite+aiosqlite:///{tmp_path}/assign.db"
    other_url = url if second_url == "same" else f"sqlite+aiosqlite:///{tmp_path}/./assign.db"
    first, second = Assigner(rules.assignment, url), Assigner(rules.assignment, other_url)
    results = await asyncio.gather(
        *((first if i % 2 else second).assign(na_lead(i), None) for i in range(200))
    )
    assert_split_exact([r.rep for r in results])
    # and each lead was stored once: asking either worker again gives the same answers
    again = await asyncio.gather(
        *((second if i % 2 else first).assign(na_lead(i), None) for i in range(200))
    )
    assert again == results
