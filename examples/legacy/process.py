"""The sales team's current lead process, as it was before leadflow: one script, one
call after another, rules written into the code.

It is the example "current process" for shadow mode. Its rules differ from
examples/rules.toml on purpose, in three places, so that a shadow run shows real
mismatches next to real agreements:

1. a lead is hot from 80 points (leadflow: 70);
2. Canada is not part of North America here: Canadian leads go to the rest-of-world
   team (leadflow routes them to the NA team);
3. there is no free-mail rule (leadflow takes 25 points off gmail.com and the like).

Everything else scores and routes as leadflow does. `decide(record)` is what
`--legacy python:examples.legacy.process:decide` calls: it only decides, it sends
nothing. Run as a script it processes a CSV file the old way, one lead after another,
and writes what it decided (`--export decisions.csv`), which is how
examples/legacy/decisions.csv was made:

    python examples/legacy/process.py examples/leads.csv --export examples/legacy/decisions.csv
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRM_SEED = HERE.parent / "crm_seed.json"

HOT_SCORE = 80  # leadflow: 70
WARM_SCORE = 40
NA_COUNTRIES = ["US"]  # leadflow: US and CA
EMEA_COUNTRIES = ["GB", "DE", "FR", "NL", "ES", "IT", "SE", "IE"]
COMPETITOR_DOMAINS = ["rivalsoft.test", "competitor.test"]
# (no free-mail list: leadflow takes 25 points off gmail.com, yahoo.com, ...)

TITLE_POINTS = [
    (["chief", "ceo", "cto", "cro", "vp", "svp", "evp", "vice president", "head of"], 25),
    (["director"], 20),
    (["manager", "lead"], 10),
]
SIZE_POINTS = [(1000, None, 25), (200, 999, 20), (50, 199, 12), (1, 49, 4)]
COUNTRY_POINTS = {"US": 10, "CA": 8, "GB": 8, "DE": 8, "FR": 6, "NL": 6, "AU": 6}
SOURCE_POINTS = {
    "demo_request": 20,
    "referral": 15,
    "webinar": 8,
    "website": 5,
    "purchased_list": -5,
}

TEAMS = {
    "enterprise": [("erin@example.com", 2), ("frank@example.com", 1)],
    "na": [("alice@example.com", 3), ("bob@example.com", 2), ("carol@example.com", 1)],
    "emea": [("greta@example.com", 1), ("henri@example.com", 1)],
    "global": [("ivan@example.com", 1)],
}
ON_LEAVE = ["dave@example.com"]
FALLBACK = "sales-queue@example.com"

_credit: dict[str, dict[str, int]] = {}


def truthy(value):
    return str(value).strip().lower() in ("true", "yes", "y", "1")


def number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def has_words(text, words):
    return re.search(rf"(?<![^\W_]){re.escape(words)}(?![^\W_])", text) is not None


def lead_id(record, email):
    if (record.get("id") or "").strip():
        return record["id"].strip()
    source = (record.get("source") or "").strip().lower()
    return "lead_" + hashlib.sha256(f"{source}|{email}".encode()).hexdigest()[:16]


def look_up(email, domain):
    seed = json.loads(CRM_SEED.read_text())
    contact = next((c for c in seed["contacts"] if c["email"] == email), None)
    account = next((a for a in seed["accounts"] if a["domain"] == domain), None)
    return contact, account


def next_rep(team):
    credit = _credit.setdefault(team, {})
    total = sum(weight for _, weight in TEAMS[team])
    for rep, weight in TEAMS[team]:
        credit[rep] = credit.get(rep, 0) + weight
    best = max(TEAMS[team], key=lambda pair: credit[pair[0]])[0]
    credit[best] -= total
    return best


def decide(record):
    """What the old process decided for one raw lead record (a CSV row as a dict)."""
    started = time.perf_counter()
    steps = []

    def step(name, began):
        steps.append({"step": name, "duration_ms": (time.perf_counter() - began) * 1000})
        return time.perf_counter()

    t = started
    email = str(record.get("email") or "").strip().lower()
    domain = email.rsplit("@", 1)[-1]
    title = str(record.get("title") or "").lower()
    country = str(record.get("country") or "").strip().upper()
    source = str(record.get("source") or "").strip().lower()
    employees = int(record["employee_count"]) if record.get("employee_count") else None
    t = step("validate", t)

    contact, account = look_up(email, domain)
    if account:
        company_size = employees if employees is not None else account.get("employee_count")
        employees = company_size
        country = country or (account.get("country") or "")
    t = step("look_up", t)

    reasons = []
    fit = 0
    for words, points in TITLE_POINTS:
        hit = next((w for w in words if has_words(title, w)), None)
        if hit:
            fit += points
            reasons.append(f"title has {hit!r}: {points:+d}")
            break
    if employees is not None:
        for low, high, points in SIZE_POINTS:
            if employees >= low and (high is None or employees <= high):
                fit += points
                reasons.append(f"company size {low}{'-' + str(high) if high else '+'}: {points:+d}")
                break
    if country in COUNTRY_POINTS:
        fit += COUNTRY_POINTS[country]
        reasons.append(f"country {country}: {COUNTRY_POINTS[country]:+d}")
    if source in SOURCE_POINTS:
        fit += SOURCE_POINTS[source]
        reasons.append(f"source {source}: {SOURCE_POINTS[source]:+d}")
    fit = min(fit, 60)

    engagement = 0
    if truthy(record.get("demo_requested")):
        engagement += 20
        reasons.append("demo requested: +20")
    if number(record.get("pricing_page_views")) >= 3:
        engagement += 10
        reasons.append("pricing page views >= 3: +10")
    if truthy(record.get("webinar_attended")):
        engagement += 8
        reasons.append("webinar attended: +8")
    if number(record.get("emails_opened")) >= 5:
        engagement += 5
        reasons.append("emails opened >= 5: +5")
    engagement = min(engagement, 30)

    penalty = 0
    if domain in COMPETITOR_DOMAINS:
        penalty = -100
        reasons.append(f"competitor {domain}: -100")
    score = max(0, min(fit + engagement + penalty, 100))
    t = step("score", t)

    if score >= HOT_SCORE:
        tier, follow_up, sla = "hot", "call", 15
    elif score >= WARM_SCORE:
        tier, follow_up, sla = "warm", "email_sequence", 1440
    else:
        tier, follow_up, sla = "cold", "nurture", None
    t = step("follow_up", t)

    owners = [
        (contact or {}).get("owner") and ((contact or {})["owner"], "crm_owner:contact"),
        (account or {}).get("owner") and ((account or {})["owner"], "crm_owner:account"),
    ]
    owner = next((o for o in owners if o and o[0] not in ON_LEAVE), None)
    if owner:
        rep, rule = owner
    elif employees is not None and employees >= 1000:
        rep, rule = next_rep("enterprise"), "territory:enterprise/round_robin:enterprise"
    elif country in NA_COUNTRIES:
        rep, rule = next_rep("na"), "territory:north-america/round_robin:na"
    elif country in EMEA_COUNTRIES:
        rep, rule = next_rep("emea"), "territory:emea/round_robin:emea"
    else:
        rep, rule = next_rep("global"), "territory:rest-of-world/round_robin:global"
    step("assign", t)

    return {
        "lead_id": lead_id(record, email),
        "email": email,
        "score": score,
        "score_reasons": reasons,
        "tier": tier,
        "follow_up": follow_up,
        "sla_minutes": sla,
        "rep": rep,
        "assignment_rule": rule,
        "steps": steps,
    }


EXPORT_COLUMNS = ["lead_id", "email", "score", "tier", "follow_up", "sla_minutes", "owner"]


def main(argv):
    """Process a CSV file the old way and write what was decided. A row without a
    usable email is skipped, as the old process did."""
    source, export = Path(argv[0]), None
    if "--export" in argv:
        export = Path(argv[argv.index("--export") + 1])
    rows = []
    with source.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            email = str(record.get("email") or "").strip()
            if "@" not in email or "." not in email.rsplit("@", 1)[-1]:
                continue
            if record.get("employee_count") and not record["employee_count"].isdigit():
                continue
            if not re.match(r"\d{4}-\d\d-\d\d", record.get("created_at") or ""):
                continue
            decision = decide(record)
            rows.append({**{k: decision.get(k) for k in EXPORT_COLUMNS}, "owner": decision["rep"]})
            tier, score, rep = decision["tier"], decision["score"], decision["rep"]
            print(f"{decision['email']}: {tier} ({score}) -> {rep}")
    if export:
        with export.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
