"""The legacy adapters: each way of reaching the current process, and the example one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from leadflow.compare import LegacyDecisionError
from leadflow.integrations.errors import TransientError
from leadflow.integrations.legacy_command import CommandLegacy, LegacyCommandError
from leadflow.integrations.legacy_http import HttpLegacy
from leadflow.integrations.legacy_observed import NotObservedError, ObservedLegacy
from leadflow.integrations.legacy_python import PythonLegacy
from leadflow.integrations.legacy_rules import RulesLegacy
from leadflow.integrations.legacy_spec import build_legacy
from leadflow.integrations.local_crm import LocalCRM
from leadflow.models import FollowUpType
from leadflow.rules import load_rules
from leadflow.settings import SettingsError
from leadflow.shadow_settings import ShadowSettings
from tests.support.builders import make_settings
from tests.support.paths import EXAMPLES, ROOT

RECORD = {
    "email": "Kim@Example.ORG",
    "title": "VP Sales",
    "country": "US",
    "source": "referral",
    "employee_count": "320",
    "demo_requested": "yes",
}
ANSWER = {
    "score": 80,
    "tier": "hot",
    "follow_up": "call",
    "sla_minutes": 15,
    "rep": "alice@example.com",
    "score_reasons": ["title has 'vp': +25", "demo requested: +20"],
    "steps": [{"step": "score", "duration_ms": 1.5}],
}


def _rules():
    return load_rules(EXAMPLES / "rules.toml")


async def test_python_adapter_runs_the_example_current_process(tmp_path, monkeypatch):
    from examples.legacy import process

    # The example keeps its round robin in memory for the life of the process, as a
    # script would: earlier tests' leads must not decide this one's rep.
    monkeypatch.setattr(process, "_credit", {})
    legacy = build_legacy(
        "python:examples.legacy.process:decide",
        make_settings(tmp_path),
        ShadowSettings(_env_file=None),
    )
    assert isinstance(legacy, PythonLegacy)
    decision, steps = await legacy.decide_with_steps(RECORD)
    # 25 title + 20 size + 10 US + 15 referral = 70 fit, capped at 60; +20 demo = 80
    assert (decision.score, decision.tier, decision.follow_up) == (80, "hot", FollowUpType.CALL)
    assert decision.rep == "alice@example.com"
    assert decision.assignment_rule == "territory:north-america/round_robin:na"
    assert [s.step for s in steps] == ["validate", "look_up", "score", "follow_up", "assign"]
    assert any(r.rule == "title has 'vp'" and r.points == 25 for r in decision.score_reasons)


async def test_python_adapter_accepts_async_functions_and_names_bad_answers():
    async def answer(record):
        return {**ANSWER, "tier": None}

    with pytest.raises(LegacyDecisionError, match="has no tier"):
        await PythonLegacy(answer).decide(RECORD)

    async def not_a_decision(record):
        return 42

    with pytest.raises(LegacyDecisionError, match="returned int"):
        await PythonLegacy(not_a_decision).decide(RECORD)


async def test_python_adapter_decides_records_asked_together_in_one_thread_trip():
    """A plain function: the records asked for at once go to one worker thread, in
    one trip, in order; one that raises fails only itself; one that hangs holds up its
    trip, whose callers time out, and the next trip answers."""
    import asyncio
    import threading

    threads: list[int] = []
    release = threading.Event()

    def answer(record):
        threads.append(threading.get_ident())
        if record["email"] == "bad@example.org":
            raise RuntimeError("the old script fell over")
        if record["email"] == "slow@example.org":
            release.wait(5)
        return {**ANSWER, "rep": record["email"]}

    legacy = PythonLegacy(answer)
    emails = ["a@example.org", "bad@example.org", "b@example.org"]
    answers = await asyncio.gather(
        *(legacy.decide({**RECORD, "email": e}) for e in emails), return_exceptions=True
    )
    assert [a.rep if not isinstance(a, Exception) else str(a) for a in answers] == [
        "a@example.org",
        "the old script fell over",
        "b@example.org",
    ]
    assert len(threads) == 3 and len(set(threads)) == 1 and threads[0] != threading.get_ident()

    waiting = [legacy.decide({**RECORD, "email": e}) for e in ("slow@example.org", "c@x.org")]
    timed_out = await asyncio.gather(
        *(asyncio.wait_for(w, 0.2) for w in waiting), return_exceptions=True
    )
    assert all(isinstance(t, TimeoutError) for t in timed_out)
    release.set()
    assert (await legacy.decide({**RECORD, "email": "d@example.org"})).rep == "d@example.org"


async def test_command_adapter_reads_stdout_and_enforces_its_timeout():
    program = (
        "import json, sys; lead = json.load(sys.stdin); "
        f"print(json.dumps({{**{ANSWER!r}, 'rep': lead['email'].lower()}}))"
    )
    decision = await CommandLegacy([sys.executable, "-c", program]).decide(RECORD)
    assert decision.rep == "kim@example.org" and decision.sla_minutes == 15

    slow = CommandLegacy([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3)
    with pytest.raises(LegacyCommandError, match=r"no answer within 0\.3 s"):
        await slow.decide(RECORD)
    failing = CommandLegacy([sys.executable, "-c", "import sys; sys.exit('rules missing')"])
    with pytest.raises(LegacyCommandError, match="exit 1: rules missing"):
        await failing.decide(RECORD)


async def test_http_adapter_posts_the_lead_and_translates_errors():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if seen[-1]["lead"]["email"] == "down@example.org":
            return httpx.Response(503)
        return httpx.Response(200, json=ANSWER)

    legacy = HttpLegacy("http://legacy.test/decide", transport=httpx.MockTransport(handler))
    decision = await legacy.decide(RECORD)
    assert decision.tier == "hot" and seen[0] == {"lead": RECORD}
    with pytest.raises(TransientError, match="HTTP 503"):
        await legacy.decide({**RECORD, "email": "down@example.org"})
    await legacy.aclose()


async def test_observed_adapter_matches_by_id_then_email_with_a_field_mapping(tmp_path):
    export = tmp_path / "hubspot.csv"
    export.write_text(
        "record_id,email,hubspot_owner,lifecycle,hs_score\n"
        ",kim@example.org,bob@example.com,hot,71\n"
    )
    legacy = ObservedLegacy(
        export, fields={"hubspot_owner": "rep", "lifecycle": "tier", "hs_score": "score"}
    )
    assert legacy.provides == ("score", "tier", "rep")  # no follow-up, no SLA: not compared
    decision = await legacy.decide(RECORD)
    assert (decision.rep, decision.tier, decision.score) == ("bob@example.com", "hot", 71)
    with pytest.raises(NotObservedError, match="not in"):
        await legacy.decide({**RECORD, "email": "nobody@example.org"})


async def test_observed_adapter_reads_the_example_export_by_lead_id(tmp_path):
    legacy = build_legacy(
        "observed:examples/legacy/decisions.csv",
        make_settings(tmp_path),
        ShadowSettings(_env_file=None),
    )
    assert legacy.provides == ("score", "tier", "follow_up", "sla_minutes", "rep")
    decision = await legacy.decide({"id": "crm-hank", "email": "hank.scorpio@globex.test"})
    assert (decision.tier, decision.rep) == ("hot", "frank@example.com")


async def test_rules_adapter_is_leadflow_with_another_rules_file(tmp_path):
    settings = make_settings(tmp_path)
    crm = LocalCRM(settings.database_url, EXAMPLES / "crm_seed.json")
    old = load_rules(EXAMPLES / "legacy" / "rules.toml")
    legacy = RulesLegacy(old, crm, f"sqlite+aiosqlite:///{tmp_path / 'backtest.db'}")
    canadian = {**RECORD, "country": "CA", "demo_requested": "no"}  # 25+20+8+15 -> 60
    decision = await legacy.decide(canadian)
    assert (decision.score, decision.tier) == (60, "warm")
    assert decision.assignment_rule == "territory:rest-of-world/round_robin:global"
    hot_at_70 = await legacy.decide({**RECORD, "email": "x@example.org", "title": "Manager"})
    assert (hot_at_70.score, hot_at_70.tier) == (75, "warm")  # hot from 80 in the old rules
    await legacy.aclose()


def test_specs_are_checked(tmp_path):
    settings, shadow = make_settings(tmp_path), ShadowSettings(_env_file=None)
    with pytest.raises(SettingsError, match="expected KIND:TARGET"):
        build_legacy("examples.legacy.process", settings, shadow)
    with pytest.raises(SettingsError, match="no legacy adapter named 'zapier'"):
        build_legacy("zapier:abc", settings, shadow)
    with pytest.raises(SettingsError, match="has no function nope"):
        build_legacy("python:examples.legacy.process:nope", settings, shadow)
    with pytest.raises(SettingsError, match=r"existing \.csv or \.jsonl"):
        build_legacy("observed:missing.csv", settings, shadow)


def test_the_example_export_is_what_the_example_script_decides(tmp_path):
    """examples/legacy/decisions.csv never drifts from examples/legacy/process.py."""
    fresh = tmp_path / "decisions.csv"
    subprocess.run(
        [sys.executable, "examples/legacy/process.py", "examples/leads.csv", "--export", fresh],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert fresh.read_text() == (EXAMPLES / "legacy" / "decisions.csv").read_text()
    assert Path(ROOT / "examples/legacy/decisions.csv").read_text().count("\n") == 56


async def test_observed_crm_reads_the_owner_the_old_process_wrote(tmp_path):
    settings = make_settings(tmp_path)
    crm = LocalCRM(settings.database_url, EXAMPLES / "crm_seed.json")
    legacy = ObservedLegacy(crm=crm)
    assert legacy.provides == ("rep",)  # only the owner is on the contact by default
    decision = await legacy.decide({"id": "crm-hank", "email": "hank.scorpio@globex.test"})
    assert decision.rep == "frank@example.com"
    with pytest.raises(NotObservedError, match="no CRM contact"):
        await legacy.decide({"email": "stranger@globex.test"})
    await legacy.aclose()
