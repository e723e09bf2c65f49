"""Scoring, tiers and rules-file validation: pure functions of the rules, no I/O
except the rules files written to tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leadflow.models import FollowUpType, Lead, Score
from leadflow.rules import Rules, RulesError, ScoringRules, load_rules, score_lead

EXAMPLE_RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.toml"


def scoring(**groups: Any) -> ScoringRules:
    return ScoringRules.model_validate(groups)


def lead(**fields: Any) -> Lead:
    return Lead.from_record({"email": "someone@acme.test", **fields})


def assert_consistent(score: Score) -> None:
    """The reasons are the arithmetic: they always add up to the score."""
    assert sum(reason.points for reason in score.reasons) == score.value


def rule_names(score: Score, group: str | None = None) -> list[str]:
    return [r.rule for r in score.reasons if group is None or r.group == group]


# --- fit: title keywords ---------------------------------------------------------

TITLES = scoring(
    fit={
        "title_keywords": [
            {"keywords": ["VP", "Head Of", "cto"], "points": 25},
            {"keywords": ["director"], "points": 20},
            {"keywords": ["manager", "lead"], "points": 10},
        ]
    }
)


@pytest.mark.parametrize(
    ("title", "points", "reason"),
    [
        pytest.param("VP of Sales", 25, "title has 'VP'", id="first-rule"),
        pytest.param("vp sales", 25, "title has 'VP'", id="lowercase-title-uppercase-keyword"),
        pytest.param("HEAD OF GROWTH", 25, "title has 'Head Of'", id="uppercase-title"),
        pytest.param("Director, Marketing", 20, "title has 'director'", id="second-rule"),
        pytest.param("VP and Director", 25, "title has 'VP'", id="first-match-wins"),
        pytest.param("Director and VP", 25, "title has 'VP'", id="rule-order-not-title-order"),
        pytest.param("Team Lead", 10, "title has 'lead'", id="second-keyword-of-rule"),
        pytest.param("Director", 20, "title has 'director'", id="cto-inside-director-ignored"),
        pytest.param("MVP Coach", 0, None, id="vp-inside-word-ignored"),
        pytest.param("Founder/CTO", 25, "title has 'cto'", id="keyword-after-punctuation"),
        pytest.param("Head of Sales", 25, "title has 'Head Of'", id="phrase"),
        pytest.param("Engineer", 0, None, id="no-match"),
        pytest.param(None, 0, None, id="no-title"),
        pytest.param("", 0, None, id="empty-title-is-absent"),
    ],
)
def test_title_keywords(title: str | None, points: int, reason: str | None) -> None:
    score = score_lead(lead(title=title), TITLES)
    assert score.value == points
    assert rule_names(score) == ([reason] if reason else [])
    assert_consistent(score)


# --- fit: company size -------------------------------------------------------------

SIZES = scoring(
    fit={
        "company_size": [
            {"min": 1000, "points": 25},
            {"min": 200, "max": 999, "points": 20},
            {"min": 50, "max": 199, "points": 12},
            {"min": 1, "max": 49, "points": 4},
        ]
    }
)


@pytest.mark.parametrize(
    ("employees", "points", "reason"),
    [
        pytest.param(0, 0, None, id="zero-below-every-band"),
        pytest.param(1, 4, "company size 1-49", id="min-inclusive"),
        pytest.param(49, 4, "company size 1-49", id="max-inclusive"),
        pytest.param(50, 12, "company size 50-199", id="next-band-min"),
        pytest.param(199, 12, "company size 50-199", id="next-band-max"),
        pytest.param(200, 20, "company size 200-999", id="200"),
        pytest.param(999, 20, "company size 200-999", id="999"),
        pytest.param(1000, 25, "company size 1000+", id="open-ended-min"),
        pytest.param(250_000, 25, "company size 1000+", id="open-ended-large"),
        pytest.param(None, 0, None, id="unknown-size"),
    ],
)
def test_company_size_bands(employees: int | None, points: int, reason: str | None) -> None:
    score = score_lead(lead(employee_count=employees), SIZES)
    assert score.value == points
    assert rule_names(score) == ([reason] if reason else [])
    assert_consistent(score)


def test_company_size_gap_between_bands_scores_nothing() -> None:
    rules = scoring(
        fit={"company_size": [{"min": 10, "max": 20, "points": 5}, {"min": 30, "points": 9}]}
    )
    assert score_lead(lead(employee_count=25), rules).value == 0
    assert score_lead(lead(employee_count=20), rules).value == 5
    assert score_lead(lead(employee_count=30), rules).value == 9


def test_company_size_first_containing_band_wins() -> None:
    rules = scoring(
        fit={"company_size": [{"min": 0, "max": 100, "points": 3}, {"min": 50, "points": 30}]}
    )
    score = score_lead(lead(employee_count=75), rules)
    assert score.value == 3
    assert rule_names(score) == ["company size 0-100"]


# --- fit: country and source ------------------------------------------------------

PLACES = scoring(
    fit={
        "countries": {"US": 10, "DE": 8},
        "sources": {"demo_request": 20, "purchased_list": -5},
    },
    max_total=100,
)


@pytest.mark.parametrize(
    ("fields", "points", "reasons"),
    [
        pytest.param({"country": "US"}, 10, ["country US"], id="country"),
        pytest.param({"country": " de "}, 8, ["country DE"], id="country-normalised"),
        pytest.param({"country": "FR"}, 0, [], id="country-not-listed"),
        pytest.param({"source": "demo_request"}, 20, ["source demo_request"], id="source"),
        pytest.param({"source": "Demo_Request"}, 20, ["source demo_request"], id="source-case"),
        pytest.param(
            {"source": "purchased_list", "country": "US"},
            5,
            ["country US", "source purchased_list"],
            id="negative-source-points",
        ),
        pytest.param({"source": "webinar"}, 0, [], id="source-not-listed"),
    ],
)
def test_country_and_source_points(fields: dict, points: int, reasons: list[str]) -> None:
    score = score_lead(lead(**fields), PLACES)
    assert score.value == points
    assert rule_names(score) == reasons
    assert_consistent(score)


# --- engagement ---------------------------------------------------------------------

ENGAGEMENT = scoring(
    engagement={
        "rules": [
            {"attribute": "demo_requested", "equals": True, "points": 20},
            {"attribute": "unsubscribed", "equals": False, "points": 3},
            {"attribute": "plan", "equals": "Gold", "points": 7},
            {"attribute": "pricing_page_views", "at_least": 3, "points": 10},
        ]
    }
)


@pytest.mark.parametrize(
    ("attributes", "points", "reasons"),
    [
        pytest.param({"demo_requested": "yes"}, 20, ["demo_requested = True"], id="yes"),
        pytest.param({"demo_requested": "true"}, 20, ["demo_requested = True"], id="true"),
        pytest.param({"demo_requested": "TRUE"}, 20, ["demo_requested = True"], id="TRUE"),
        pytest.param({"demo_requested": "1"}, 20, ["demo_requested = True"], id="one"),
        pytest.param({"demo_requested": " Y "}, 20, ["demo_requested = True"], id="y-padded"),
        pytest.param({"demo_requested": True}, 20, ["demo_requested = True"], id="json-bool"),
        pytest.param({"demo_requested": "no"}, 0, [], id="no"),
        pytest.param({"demo_requested": "0"}, 0, [], id="zero"),
        pytest.param({"demo_requested": "false"}, 0, [], id="false"),
        pytest.param({"demo_requested": "maybe"}, 0, [], id="not-a-bool"),
        pytest.param({"unsubscribed": "no"}, 3, ["unsubscribed = False"], id="equals-false-no"),
        pytest.param({"unsubscribed": "yes"}, 0, [], id="equals-false-yes"),
        pytest.param({"unsubscribed": "maybe"}, 0, [], id="equals-false-garbage"),
        pytest.param({"plan": " gold "}, 7, ["plan = Gold"], id="equals-string-case"),
        pytest.param({"plan": "silver"}, 0, [], id="equals-string-other"),
        pytest.param({"pricing_page_views": "3"}, 10, ["pricing_page_views >= 3"], id="str-3"),
        pytest.param({"pricing_page_views": "12"}, 10, ["pricing_page_views >= 3"], id="str-12"),
        pytest.param({"pricing_page_views": "3.0"}, 10, ["pricing_page_views >= 3"], id="3.0"),
        pytest.param({"pricing_page_views": 4}, 10, ["pricing_page_views >= 3"], id="int-4"),
        pytest.param({"pricing_page_views": "2.9"}, 0, [], id="just-below"),
        pytest.param({"pricing_page_views": "lots"}, 0, [], id="garbage"),
        pytest.param({"pricing_page_views": "[3]"}, 0, [], id="garbage-brackets"),
        pytest.param({"pricing_page_views": ""}, 0, [], id="empty-is-absent"),
        pytest.param({}, 0, [], id="absent"),
        pytest.param(
            {"demo_requested": "yes", "pricing_page_views": "5"},
            30,
            ["demo_requested = True", "pricing_page_views >= 3"],
            id="several-add-up",
        ),
    ],
)
def test_engagement_rules(attributes: dict, points: int, reasons: list[str]) -> None:
    subject = lead(**attributes)
    score = score_lead(subject, ENGAGEMENT)
    assert score.value == points
    assert rule_names(score, "engagement") == reasons
    assert_consistent(score)


def test_engagement_reads_nested_attributes() -> None:
    subject = Lead.from_record({"email": "a@acme.test", "attributes": {"demo_requested": "yes"}})
    assert score_lead(subject, ENGAGEMENT).value == 20


# --- caps -----------------------------------------------------------------------------

CAPPED = scoring(
    max_total=200,
    fit={
        "cap": 30,
        "title_keywords": [{"keywords": ["vp"], "points": 25}],
        "countries": {"US": 10},
        "sources": {"referral": 15},
    },
    engagement={
        "cap": 12,
        "rules": [
            {"attribute": "a", "equals": True, "points": 10},
            {"attribute": "b", "at_least": 1, "points": 5},
        ],
    },
)


@pytest.mark.parametrize(
    ("fields", "value", "cap_reasons"),
    [
        pytest.param({"title": "VP", "country": "US"}, 35 - 5, {"fit": -5}, id="fit-capped"),
        pytest.param(
            {"title": "VP", "country": "US", "source": "referral"},
            30,
            {"fit": -20},
            id="fit-capped-more",
        ),
        pytest.param({"title": "VP"}, 25, {}, id="fit-under-cap"),
        pytest.param({"a": "yes", "b": "2"}, 12, {"engagement": -3}, id="engagement-capped"),
        pytest.param({"a": "yes"}, 10, {}, id="engagement-under-cap"),
        pytest.param(
            {"title": "VP", "country": "US", "a": "yes", "b": "1"},
            42,
            {"fit": -5, "engagement": -3},
            id="both-capped",
        ),
    ],
)
def test_group_caps(fields: dict, value: int, cap_reasons: dict[str, int]) -> None:
    score = score_lead(lead(**fields), CAPPED)
    assert score.value == value
    found = {r.group: r.points for r in score.reasons if r.rule.startswith("capped at")}
    assert found == cap_reasons
    for reason in score.reasons:
        if reason.rule.startswith("capped at"):
            cap = {"fit": 30, "engagement": 12}[reason.group]
            assert reason.rule == f"capped at {cap}"
            assert sum(r.points for r in score.reasons if r.group == reason.group) == cap
    assert_consistent(score)


def test_cap_exactly_reached_adds_no_reason() -> None:
    rules = scoring(fit={"cap": 10, "countries": {"US": 10}})
    score = score_lead(lead(country="US"), rules)
    assert score.value == 10
    assert rule_names(score) == ["country US"]


# --- disqualifiers --------------------------------------------------------------------

DISQUALIFIERS = scoring(
    fit={"countries": {"US": 40}, "sources": {"referral": 40}},
    disqualifiers={
        "cap": -50,
        "free_mail": {"points": -25, "domains": ["gmail.com", "Both.test"]},
        "competitors": {"points": -40, "domains": ["RivalSoft.test", "both.test"]},
    },
)


@pytest.mark.parametrize(
    ("email", "value", "reasons"),
    [
        pytest.param("jo@gmail.com", 55, ["free-mail domain gmail.com"], id="free-mail"),
        pytest.param("jo@GMAIL.com", 55, ["free-mail domain gmail.com"], id="free-mail-case"),
        pytest.param(
            "jo@rivalsoft.test", 40, ["competitor domain rivalsoft.test"], id="competitor"
        ),
        pytest.param(
            "jo@both.test",
            30,
            ["free-mail domain both.test", "competitor domain both.test", "capped at -50"],
            id="group-floor",
        ),
        pytest.param("jo@acme.test", 80, [], id="none"),
    ],
)
def test_disqualifiers(email: str, value: int, reasons: list[str]) -> None:
    subject = Lead.from_record({"email": email, "country": "US", "source": "referral"})
    score = score_lead(subject, DISQUALIFIERS)
    assert score.value == value
    assert rule_names(score, "disqualifiers") == reasons
    if reasons:
        assert sum(r.points for r in score.reasons if r.group == "disqualifiers") >= -50
    assert_consistent(score)


def test_group_floor_reason_points() -> None:
    subject = Lead.from_record({"email": "jo@both.test", "country": "US", "source": "referral"})
    floor = next(r for r in score_lead(subject, DISQUALIFIERS).reasons if r.rule.startswith("cap"))
    assert (floor.group, floor.points) == ("disqualifiers", 15)


# --- total clamp ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "fields", "value", "clamp"),
    [
        pytest.param(
            scoring(max_total=50, fit={"countries": {"US": 70}}),
            {"country": "US"},
            50,
            ("clamped to 0..50", -20),
            id="above-max",
        ),
        pytest.param(
            scoring(max_total=50, fit={"countries": {"US": 50}}),
            {"country": "US"},
            50,
            None,
            id="exactly-max",
        ),
        pytest.param(
            scoring(disqualifiers={"free_mail": {"points": -25, "domains": ["acme.test"]}}),
            {},
            0,
            ("clamped to 0..100", 25),
            id="below-zero",
        ),
        pytest.param(
            scoring(fit={"sources": {"purchased_list": -5}}),
            {"source": "purchased_list"},
            0,
            ("clamped to 0..100", 5),
            id="negative-fit",
        ),
        pytest.param(scoring(), {}, 0, None, id="empty-rules"),
    ],
)
def test_total_clamped(
    rules: ScoringRules, fields: dict, value: int, clamp: tuple[str, int] | None
) -> None:
    score = score_lead(lead(**fields), rules)
    assert score.value == value
    totals = [(r.rule, r.points) for r in score.reasons if r.group == "total"]
    assert totals == ([clamp] if clamp else [])
    assert_consistent(score)


# --- the sample rules ------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Rules:
    return load_rules(EXAMPLE_RULES)


@pytest.mark.parametrize(
    ("record", "value", "tier"),
    [
        pytest.param(
            {
                "email": "ceo@bigco.test",
                "title": "CEO",
                "employee_count": "5000",
                "country": "US",
                "source": "demo_request",
                "demo_requested": "yes",
                "pricing_page_views": "4",
                "emails_opened": "9",
            },
            90,  # fit 25+25+10+20=80 capped at 60; engagement 35 capped at 30
            "hot",
            id="hot-both-capped",
        ),
        pytest.param(
            {"email": "dir@mid.test", "title": "Director", "employee_count": "300"},
            40,
            "warm",
            id="warm-at-threshold",
        ),
        pytest.param(
            {"email": "x@gmail.com", "title": "VP Sales", "country": "US"},
            10,
            "cold",
            id="free-mail",
        ),
        pytest.param(
            {"email": "spy@rivalsoft.test", "title": "CTO", "source": "demo_request"},
            0,
            "cold",
            id="competitor-clamped",
        ),
        pytest.param(
            {"email": "a@b.test", "source": "purchased_list"}, 0, "cold", id="negative-clamped"
        ),
    ],
)
def test_example_rules(example: Rules, record: dict, value: int, tier: str) -> None:
    score = score_lead(Lead.from_record(record), example.scoring)
    assert score.value == value
    assert example.tier_for(score.value).name == tier
    assert_consistent(score)


def test_example_rules_load(example: Rules) -> None:
    assert [t.name for t in example.tiers] == ["hot", "warm", "cold"]
    assert example.assignment.fallback_owner == "sales-queue@example.com"
    assert len(example.version) == 12  # derived from the file's bytes
    assert load_rules(EXAMPLE_RULES).version == example.version


# --- tiers ----------------------------------------------------------------------------


def base_rules(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tiers": [
            {"name": "hot", "min_score": 70, "follow_up": "call", "sla_minutes": 15},
            {"name": "cold", "min_score": 0, "follow_up": "nurture"},
            {"name": "warm", "min_score": 40, "follow_up": "email_sequence", "sla_minutes": 60},
        ],
        "assignment": {"fallback_owner": "queue@example.com"},
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("value", "tier", "follow_up"),
    [
        pytest.param(0, "cold", FollowUpType.NURTURE, id="0"),
        pytest.param(39, "cold", FollowUpType.NURTURE, id="39"),
        pytest.param(40, "warm", FollowUpType.EMAIL_SEQUENCE, id="40-exactly-min"),
        pytest.param(69, "warm", FollowUpType.EMAIL_SEQUENCE, id="69"),
        pytest.param(70, "hot", FollowUpType.CALL, id="70-exactly-min"),
        pytest.param(100, "hot", FollowUpType.CALL, id="100"),
    ],
)
def test_tier_for(value: int, tier: str, follow_up: FollowUpType) -> None:
    rules = Rules.model_validate(base_rules())  # tiers listed out of order on purpose
    chosen = rules.tier_for(value)
    assert (chosen.name, chosen.follow_up) == (tier, follow_up)


# --- validation -----------------------------------------------------------------------

VALID_TOML = """
[scoring.fit]
countries = { US = 10 }

[[tiers]]
name = "hot"
min_score = 50
follow_up = "call"

[[tiers]]
name = "cold"
min_score = 0
follow_up = "nurture"

[assignment]
fallback_owner = "queue@example.com"

[assignment.regions]
NA = ["US"]

[[assignment.territories]]
name = "na"
regions = ["NA"]
team = "na"

[assignment.teams.na]
reps = [{ id = "alice@example.com" }]
"""


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_toml_loads(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, VALID_TOML))
    assert rules.scoring.fit.countries == {"US": 10}
    assert rules.assignment.territories[0].team == "na"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "countries = { US = 10 }",
            "countries = { US = 10 }\ncapp = 5",
            ["scoring.fit.capp", "unknown key"],
            id="unknown-key",
        ),
        pytest.param(
            'fallback_owner = "queue@example.com"',
            'fallback_owner = "queue@example.com"\nuse_crm_ownr = true',
            ["assignment.use_crm_ownr", "unknown key"],
            id="unknown-key-assignment",
        ),
        pytest.param(
            'team = "na"',
            'team = "nope"',
            ["assignment", "territories.0.team", "'nope' is not defined"],
            id="missing-team",
        ),
        pytest.param(
            'regions = ["NA"]',
            'regions = ["MARS"]',
            ["assignment", "territories.0.regions", "'MARS' is not defined"],
            id="missing-region",
        ),
        pytest.param(
            'name = "hot"', 'name = "cold"', ["tiers", "must be unique"], id="duplicate-tiers"
        ),
        pytest.param(
            "min_score = 0",
            "min_score = 10",
            ["tiers", "min_score = 0"],
            id="no-zero-tier",
        ),
        pytest.param(
            'follow_up = "call"',
            'follow_up = "telegram"',
            ["tiers.0.follow_up"],
            id="bad-follow-up",
        ),
        pytest.param(
            "countries = { US = 10 }",
            "company_size = [{ min = 50, max = 10, points = 1 }]",
            ["scoring.fit.company_size.0", "max (10) is below min (50)"],
            id="band-max-below-min",
        ),
        pytest.param(
            "countries = { US = 10 }",
            "countries = { US = 10 }\n[scoring.engagement]\n"
            'rules = [{ attribute = "x", equals = true, at_least = 1, points = 1 }]',
            ["scoring.engagement.rules.0", "exactly one of 'equals' or 'at_least'"],
            id="engagement-both",
        ),
        pytest.param(
            "countries = { US = 10 }",
            "countries = { US = 10 }\n[scoring.engagement]\n"
            'rules = [{ attribute = "x", points = 1 }]',
            ["scoring.engagement.rules.0", "exactly one of 'equals' or 'at_least'"],
            id="engagement-neither",
        ),
        pytest.param(
            "countries = { US = 10 }",
            'countries = { US = "ten" }',
            ["scoring.fit.countries.US"],
            id="wrong-type",
        ),
        pytest.param(
            'fallback_owner = "queue@example.com"',
            "",
            ["assignment.fallback_owner", "required, missing"],
            id="missing-required",
        ),
        pytest.param(
            'reps = [{ id = "alice@example.com" }]',
            'reps = [{ id = "alice@example.com" }, { id = "alice@example.com" }]',
            ["assignment.teams.na", "rep listed twice: alice@example.com"],
            id="duplicate-rep",
        ),
    ],
)
def test_validation_errors_name_the_key(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    assert old in VALID_TOML
    path = write(tmp_path, VALID_TOML.replace(old, new, 1))
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(f"rules file {path}:")
    for part in expected:
        assert part in message


def test_bad_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[scoring\nmax_total = 1")
    with pytest.raises(RulesError, match="not valid toml"):
        load_rules(path)


def test_yaml_rules_file(tmp_path: Path) -> None:
    text = """
scoring:
  fit:
    countries: {US: 10}
tiers:
  - {name: hot, min_score: 50, follow_up: call}
  - {name: cold, min_score: 0, follow_up: nurture}
assignment:
  fallback_owner: queue@example.com
"""
    rules = load_rules(write(tmp_path, text, "rules.yaml"))
    assert rules.scoring.fit.countries == {"US": 10}
    assert rules.tier_for(50).name == "hot"
    assert score_lead(lead(country="US"), rules.scoring).value == 10


def test_yaml_errors_name_the_key(tmp_path: Path) -> None:
    text = "tiers: [{name: cold, min_score: 0, follow_up: nurture, slaa: 3}]\n"
    text += "assignment: {fallback_owner: q@example.com}\n"
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, text, "rules.yml"))
    assert "tiers.0.slaa: unknown key" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param("rules.yaml", "tiers: [unclosed\n", "not valid yaml", id="bad-yaml"),
        pytest.param("rules.yaml", "- a\n- b\n", "top level must be a table", id="yaml-list"),
    ],
)
def test_bad_yaml(tmp_path: Path, name: str, text: str, expected: str) -> None:
    with pytest.raises(RulesError, match=expected):
        load_rules(write(tmp_path, text, name))


def test_explicit_version_kept(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, 'version = "2024-06"\n' + VALID_TOML))
    assert rules.version == "2024-06"


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope.toml" if kind == "missing" else tmp_path
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"rules file {path}: cannot be read")
