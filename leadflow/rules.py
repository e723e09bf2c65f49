"""The rules file: scoring points, tiers with their follow-up, and the assignment waterfall.

Operations people own this file, so it is validated in full at start-up and every
error names the key that is wrong (`assignment.territories.1.team: ...`). Loading is
the only I/O here; everything else in this module is a pure function of the rules.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadflow.availability import Away, WorkingHours
from leadflow.models import CrmMatch, FollowUpType, Lead, Score, ScoreReason
from leadflow.validation import describe_errors
from leadflow.values import parse_bool, parse_number


class RulesError(ValueError):
    """The rules file cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    # A typo in a key is an error, not a silently ignored rule.
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- scoring -----------------------------------------------------------------------


class TitleRule(_Strict):
    keywords: list[str] = Field(min_length=1)
    points: int


class SizeBand(_Strict):
    min: int = Field(default=0, ge=0)
    max: int | None = Field(default=None, ge=0)
    points: int

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self

    def contains(self, count: int) -> bool:
        return count >= self.min and (self.max is None or count <= self.max)


class FitRules(_Strict):
    cap: int | None = Field(default=None, ge=0)
    title_keywords: list[TitleRule] = Field(default_factory=list)
    company_size: list[SizeBand] = Field(default_factory=list)
    countries: dict[str, int] = Field(default_factory=dict)
    sources: dict[str, int] = Field(default_factory=dict)


class EngagementRule(_Strict):
    attribute: str
    equals: bool | int | float | str | None = None
    at_least: float | None = None
    points: int

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        if (self.equals is None) == (self.at_least is None):
            raise ValueError("give exactly one of 'equals' or 'at_least'")
        return self

    def matches(self, attributes: dict[str, Any]) -> bool:
        if self.attribute not in attributes:
            return False
        value = attributes[self.attribute]
        if self.at_least is not None:
            number = _as_number(value)
            return number is not None and number >= self.at_least
        if isinstance(self.equals, bool):
            return _as_bool(value) is self.equals
        return str(value).strip().lower() == str(self.equals).strip().lower()


class EngagementRules(_Strict):
    cap: int | None = Field(default=None, ge=0)
    rules: list[EngagementRule] = Field(default_factory=list)

    @property
    def flags(self) -> frozenset[str]:
        """The columns read as yes/no (`equals = true`)."""
        return frozenset(r.attribute for r in self.rules if isinstance(r.equals, bool))

    @property
    def numbers(self) -> frozenset[str]:
        """The columns read as numbers (`at_least`)."""
        return frozenset(r.attribute for r in self.rules if r.at_least is not None)


class DomainList(_Strict):
    points: int = Field(le=0)
    domains: list[str] = Field(default_factory=list)


class DisqualifierRules(_Strict):
    cap: int | None = Field(default=None, le=0, description="the most the group can take away")
    free_mail: DomainList | None = None
    competitors: DomainList | None = None


class ScoringRules(_Strict):
    max_total: int = Field(default=100, gt=0)
    fit: FitRules = Field(default_factory=FitRules)
    engagement: EngagementRules = Field(default_factory=EngagementRules)
    disqualifiers: DisqualifierRules = Field(default_factory=DisqualifierRules)


# --- tiers -------------------------------------------------------------------------


class Tier(_Strict):
    name: str
    min_score: int
    follow_up: FollowUpType
    sla_minutes: int | None = Field(default=None, gt=0)
    escalate_after_minutes: float | None = Field(
        default=None,
        gt=0,
        description=(
            "when the CRM still shows no first touch this many minutes after the SLA's "
            "reminder, the lead goes to the next rep who can take it and the team's "
            "manager is told (watch-slas); none: a reminder only"
        ),
    )
    may_wait_for_shift: bool = Field(
        default=False,
        description=(
            "a lead of this tier may be held for the first rep on shift when a territory "
            "says when_nobody_available = 'hold' (its SLA then starts with that shift)"
        ),
    )

    @model_validator(mode="after")
    def _escalates_a_deadline(self) -> Self:
        if self.escalate_after_minutes is not None and self.sla_minutes is None:
            raise ValueError("escalate_after_minutes needs sla_minutes: a deadline to escalate")
        return self


# --- assignment --------------------------------------------------------------------


class Rep(_Strict):
    id: str
    weight: int = Field(default=1, gt=0)
    available: bool = True
    hours: str | None = Field(
        default=None, description="working hours: a name under [assignment.hours]"
    )
    days_off: list[date] = Field(default_factory=list)
    away: list[Away] = Field(default_factory=list)
    max_per_day: int | None = Field(
        default=None, gt=0, description="leads a day (the rep's own day), any rule"
    )
    max_open_hot: int | None = Field(
        default=None,
        gt=0,
        description="leads of the hot tiers assigned in the last open_hours hours",
    )


class Team(_Strict):
    reps: list[Rep] = Field(min_length=1)
    hours: str | None = Field(
        default=None, description="working hours of reps that name none of their own"
    )
    manager: str | None = Field(
        default=None, description="who is told when a lead of this team misses its SLA"
    )

    @model_validator(mode="after")
    def _unique(self) -> Self:
        ids = [rep.id for rep in self.reps]
        duplicated = sorted({rep for rep in ids if ids.count(rep) > 1})
        if duplicated:
            raise ValueError(f"rep listed twice: {', '.join(duplicated)}")
        return self


NobodyAvailable = Literal["next_territory", "fallback", "hold"]


class Territory(_Strict):
    name: str
    team: str
    countries: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    min_employees: int | None = Field(default=None, ge=0)
    max_employees: int | None = Field(default=None, ge=0)
    when_nobody_available: NobodyAvailable = Field(
        default="next_territory",
        description=(
            "when every rep of the team is away, off shift or at a cap: try the next "
            "territory, give the lead to the fallback owner, or hold it for the first rep "
            "on shift (tiers with may_wait_for_shift; other tiers try the next territory)"
        ),
    )

    def matches(self, lead: Lead, regions: dict[str, list[str]]) -> bool:
        places = set(self.countries)
        for region in self.regions:
            places.update(regions[region])
        if places and lead.country not in places:
            return False
        if self.min_employees is not None or self.max_employees is not None:
            if lead.employee_count is None:
                return False
            if self.min_employees is not None and lead.employee_count < self.min_employees:
                return False
            if self.max_employees is not None and lead.employee_count > self.max_employees:
                return False
        return True


class AssignmentRules(_Strict):
    use_crm_owner: bool = True
    fallback_owner: str
    manager: str | None = Field(
        default=None,
        description=(
            "who is told when a lead misses its SLA and its team names no manager (or it "
            "was routed to no team: a CRM owner, the fallback owner)"
        ),
    )
    regions: dict[str, list[str]] = Field(default_factory=dict)
    territories: list[Territory] = Field(default_factory=list)
    teams: dict[str, Team] = Field(default_factory=dict)
    hours: dict[str, WorkingHours] = Field(default_factory=dict)
    hot_tiers: list[str] = Field(
        default_factory=lambda: ["hot"], description="the tiers max_open_hot counts"
    )
    open_hours: int = Field(
        default=24,
        gt=0,
        description="how long an assigned hot lead counts against its rep's max_open_hot",
    )

    def team_of(self, rep: str) -> str | None:
        """The first team (in the file's order) that lists `rep`, or None."""
        return next((name for name, t in self.teams.items() if rep in {r.id for r in t.reps}), None)

    def manager_for(self, team: str | None) -> str | None:
        """Who is told about a missed SLA in `team`: its manager, else the rules' one."""
        found = self.teams.get(team) if team is not None else None
        return (found.manager if found else None) or self.manager

    @property
    def rep_ids(self) -> list[str]:
        """Every rep the rules can assign: the fallback owner and each team's reps."""
        ids = [self.fallback_owner, *(r.id for team in self.teams.values() for r in team.reps)]
        return list(dict.fromkeys(ids))

    @property
    def recipient_ids(self) -> list[str]:
        """Everyone a notifier may have to reach: the reps, and the managers told
        about missed SLAs."""
        managers = [self.manager, *(team.manager for team in self.teams.values())]
        return list(dict.fromkeys([*self.rep_ids, *(m for m in managers if m)]))

    @model_validator(mode="after")
    def _references_exist(self) -> Self:
        for index, territory in enumerate(self.territories):
            if territory.team not in self.teams:
                raise ValueError(
                    f"territories.{index}.team: team {territory.team!r} is not defined "
                    "under [assignment.teams]"
                )
            for region in territory.regions:
                if region not in self.regions:
                    raise ValueError(
                        f"territories.{index}.regions: region {region!r} is not defined "
                        "under [assignment.regions]"
                    )
        for name, team in self.teams.items():
            named = [("", team.hours)] + [(f"reps.{i}.", r.hours) for i, r in enumerate(team.reps)]
            for where, hours in named:
                if hours is not None and hours not in self.hours:
                    raise ValueError(
                        f"teams.{name}.{where}hours: {hours!r} is not defined under "
                        "[assignment.hours]"
                    )
        return self


# --- examples ----------------------------------------------------------------------


class CrmFound(_Strict):
    """What the CRM look-up would find for an example lead."""

    contact_owner: str | None = None
    account_owner: str | None = None
    enrichment: dict[str, Any] = Field(default_factory=dict)

    def as_match(self) -> CrmMatch:
        return CrmMatch(**self.model_dump())


class Expected(_Strict):
    """The outcome an example lead must get; only the fields given are checked."""

    score: int | None = None
    tier: str | None = None
    follow_up: FollowUpType | None = None
    rep: str | None = None
    rule: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one of score, tier, follow_up, rep, rule")
        return self


class RulesExample(_Strict):
    """A lead with the outcome the rules must give it (`leadflow rules test`). It is
    routed at `at` (its created_at when not given) as the first lead of a fresh
    rotation: no credits, nobody's caps used."""

    name: str = ""
    at: datetime | None = None
    lead: dict[str, Any]
    crm: CrmFound | None = None
    expect: Expected

    @model_validator(mode="after")
    def _valid(self) -> Self:
        try:
            lead = Lead.from_record(self.lead)
        except ValidationError as exc:
            raise ValueError("lead: " + "; ".join(describe_errors(exc.errors()))) from None
        if self.at is None and lead.created_at is None:
            raise ValueError("give `at`, the instant the lead is routed (or a lead created_at)")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("at: give a time zone offset, e.g. 2026-11-23T15:00:00Z")
        return self

    @property
    def routed_at(self) -> datetime:
        moment = self.at or Lead.from_record(self.lead).created_at
        assert moment is not None  # checked by _valid
        return moment


# --- the file ----------------------------------------------------------------------


class Rules(_Strict):
    scoring: ScoringRules = Field(default_factory=ScoringRules)
    tiers: list[Tier] = Field(min_length=1)
    assignment: AssignmentRules
    examples: list[RulesExample] = Field(default_factory=list)
    version: str = ""

    @model_validator(mode="after")
    def _tiers_cover_every_score(self) -> Self:
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tiers: tier names must be unique")
        if min(tier.min_score for tier in self.tiers) > 0:
            raise ValueError("tiers: one tier needs min_score = 0 so that every lead has a tier")
        for index, example in enumerate(self.examples):
            tier = example.expect.tier
            if tier is not None and tier not in names:
                raise ValueError(f"examples.{index}.expect.tier: {tier!r} is not a tier")
        capped = any(
            rep.max_open_hot is not None
            for team in self.assignment.teams.values()
            for rep in team.reps
        )
        unknown = [tier for tier in self.assignment.hot_tiers if tier not in names]
        if capped and unknown:
            raise ValueError(
                f"assignment.hot_tiers: {', '.join(map(repr, unknown))} is not a tier "
                "(max_open_hot counts the hot tiers' leads)"
            )
        return self

    def tier_for(self, score: int) -> Tier:
        """The highest tier whose threshold the score reaches."""
        eligible = [tier for tier in self.tiers if score >= tier.min_score]
        return max(eligible, key=lambda tier: tier.min_score)


def load_rules(path: Path | str) -> Rules:
    """Read and validate a TOML or YAML rules file; RulesError names the bad key."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RulesError(f"rules file {path}: cannot be read ({exc.strerror})") from None
    try:
        if path.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text.decode())
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RulesError(f"rules file {path}: not valid {path.suffix[1:]}: {exc}") from None
    if not isinstance(data, dict):
        raise RulesError(f"rules file {path}: the top level must be a table of keys")
    data.setdefault("version", hashlib.sha256(text).hexdigest()[:12])
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        lines = describe_errors(exc.errors())
        raise RulesError(
            f"rules file {path}:\n" + "\n".join(f"  {line}" for line in lines)
        ) from None


# --- scoring -----------------------------------------------------------------------


def score_lead(lead: Lead, rules: ScoringRules) -> Score:
    """Points for fit and engagement, minus disqualifiers, each group capped, then
    the total clamped to [0, max_total]. Every point comes with its reason."""
    reasons: list[ScoreReason] = []
    reasons += _capped("fit", _fit_points(lead, rules.fit), rules.fit.cap)
    engagement = [
        ScoreReason(group="engagement", rule=_engagement_label(rule), points=rule.points)
        for rule in rules.engagement.rules
        if rule.matches(lead.attributes)
    ]
    reasons += _capped("engagement", engagement, rules.engagement.cap)
    reasons += _capped("disqualifiers", _disqualifier_points(lead, rules.disqualifiers), None)
    floor = rules.disqualifiers.cap
    negative = sum(r.points for r in reasons if r.group == "disqualifiers")
    if floor is not None and negative < floor:
        reasons.append(
            ScoreReason(group="disqualifiers", rule=f"capped at {floor}", points=floor - negative)
        )
    total = sum(reason.points for reason in reasons)
    clamped = max(0, min(total, rules.max_total))
    if clamped != total:
        reasons.append(
            ScoreReason(
                group="total", rule=f"clamped to 0..{rules.max_total}", points=clamped - total
            )
        )
    return Score(value=clamped, reasons=reasons)


def _capped(group: str, reasons: list[ScoreReason], cap: int | None) -> list[ScoreReason]:
    total = sum(reason.points for reason in reasons)
    if cap is not None and total > cap:
        reasons = [*reasons, ScoreReason(group=group, rule=f"capped at {cap}", points=cap - total)]
    return reasons


def _fit_points(lead: Lead, fit: FitRules) -> list[ScoreReason]:
    reasons = []
    title = (lead.title or "").lower()
    for rule in fit.title_keywords:  # first matching rule wins: list the strongest first
        hit = next((word for word in rule.keywords if _has_words(title, word)), None)
        if hit:
            reasons.append(ScoreReason(group="fit", rule=f"title has {hit!r}", points=rule.points))
            break
    if lead.employee_count is not None:
        band = next((b for b in fit.company_size if b.contains(lead.employee_count)), None)
        if band:
            upper = f"-{band.max}" if band.max is not None else "+"
            reasons.append(
                ScoreReason(group="fit", rule=f"company size {band.min}{upper}", points=band.points)
            )
    if lead.country and lead.country in fit.countries:
        reasons.append(
            ScoreReason(
                group="fit", rule=f"country {lead.country}", points=fit.countries[lead.country]
            )
        )
    if lead.source and lead.source in fit.sources:
        reasons.append(
            ScoreReason(group="fit", rule=f"source {lead.source}", points=fit.sources[lead.source])
        )
    return reasons


def _has_words(text: str, words: str) -> bool:
    """Whether `words` (a keyword or phrase) occurs in the lower-cased `text` as whole
    words: "cto" matches "CTO" and "CEO/CTO" but not "Director"."""
    pattern = rf"(?<![^\W_]){re.escape(words.strip().lower())}(?![^\W_])"
    return re.search(pattern, text) is not None


def _disqualifier_points(lead: Lead, rules: DisqualifierRules) -> list[ScoreReason]:
    reasons = []
    for label, domains in (("free-mail", rules.free_mail), ("competitor", rules.competitors)):
        if domains and lead.domain in {d.lower() for d in domains.domains}:
            reasons.append(
                ScoreReason(
                    group="disqualifiers",
                    rule=f"{label} domain {lead.domain}",
                    points=domains.points,
                )
            )
    return reasons


def _engagement_label(rule: EngagementRule) -> str:
    if rule.at_least is not None:
        return f"{rule.attribute} >= {rule.at_least:g}"
    return f"{rule.attribute} = {rule.equals}"


def _as_number(value: Any) -> float | None:
    """`4`, `1,250`, `12.5` (leadflow.values.parse_number); a flag counts as 0 or 1."""
    if isinstance(value, bool):
        return float(value)
    try:
        return parse_number(value)
    except ValueError:
        return None


def _as_bool(value: Any) -> bool | None:
    """`Yes`/`No`, `TRUE`/`FALSE`, `1`/`0` (leadflow.values.parse_bool)."""
    try:
        return parse_bool(value)
    except ValueError:
        return None
