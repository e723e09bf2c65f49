"""The SLA loop as a user runs it, on a real `prefect server start`, with a minute-long
SLA: `leadflow run` assigns two hot leads, `leadflow watch-slas` (the watch-slas
deployment's flow, run by hand so the test takes a minute and a half, not the
scheduler's minutes) watches them, a rep logs a call for one with `leadflow crm touch`,
and the other is reminded, then reassigned with its manager told. Every message goes
through the webhook notifier to a loopback vendor (leadflow.loopback_vendor's
FaultServer), which counts the reminder, the reassignment and the manager's message
once each although the watcher runs twice after each step; the server's event feed
holds each leadflow.lead.* event once; `leadflow why` prints the timeline.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from leadflow.loopback_vendor import FaultServer
from tests.support.cli import cli_env
from tests.support.stack import BIN, PrefectServer, prefect_stack

pytestmark = pytest.mark.e2e

ESCALATE_SECONDS = 15
AVA, BEN = "ava@northwind.test", "ben@proseware.test"
REP_A, REP_B, MANAGER = "alice@example.com", "bob@example.com", "nora@example.com"

# A minute-long SLA escalated 15 s after the reminder, a team of two with a manager,
# no working hours (whatever day the test runs on).
RULES = f"""
[scoring.fit]
title_keywords = [{{ keywords = ["vp"], points = 80 }}]

[[tiers]]
name = "hot"
min_score = 70
follow_up = "call"
sla_minutes = 1
escalate_after_minutes = {ESCALATE_SECONDS / 60}

[[tiers]]
name = "cold"
min_score = 0
follow_up = "nurture"

[assignment]
use_crm_owner = false
fallback_owner = "queue@example.com"

[[assignment.territories]]
name = "everywhere"
team = "na"

[assignment.teams.na]
manager = "{MANAGER}"
reps = [{{ id = "{REP_A}" }}, {{ id = "{REP_B}" }}]
"""


class Receiver:
    """The vendor's answer (200), noting when each message arrived, for the timeline."""

    def __init__(self) -> None:
        self.arrived: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        what = (
            f"{body['sla']['kind']} -> {body['sla']['to']} about {body['sla']['email']}"
            if "sla" in body
            else f"new lead -> {body['decision']['rep']}: {body['lead']['email']}"
        )
        self.arrived.append(f"{datetime.now(UTC):%H:%M:%S.%f}"[:-3] + f"  {what}")
        return httpx.Response(200, json={"ok": True})


class Loop:
    """The leadflow commands against the server, the vendor's counts, a clock."""

    def __init__(self, tmp_path: Path, server: PrefectServer, vendor: FaultServer) -> None:
        self.work = tmp_path / "work"
        self.work.mkdir()
        (self.work / "rules.toml").write_text(RULES)
        self.server = server
        self.vendor = vendor
        self.began = time.monotonic()
        self.env = cli_env(
            self.work,
            PREFECT_API_URL=server.api_url,
            LEADFLOW_RULES_PATH=str(self.work / "rules.toml"),
            LEADFLOW_ADAPTERS__NOTIFIER="webhook",
            LEADFLOW_WEBHOOK_URL=f"{vendor.base_url}/hook",
        )

    def leadflow(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "leadflow"), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"leadflow {' '.join(args)}:\n{done.stdout}{done.stderr}"
        print(f"[{time.monotonic() - self.began:5.1f} s] leadflow {' '.join(args)}")
        return done.stdout

    def sla_messages(self) -> list[dict]:
        """The SLA step messages the vendor received (a lead's notification has no `sla`)."""
        bodies = [
            (json.loads(r.request.content), r.request.headers["idempotency-key"])
            for r in self.vendor.received
            if r.request.method == "POST"
        ]
        return [{**body["sla"], "key": key} for body, key in bodies if "sla" in body]

    def kinds(self) -> Counter[tuple[str, str, str]]:
        return Counter((m["kind"], m["email"], m["to"]) for m in self.sla_messages())

    def events(self) -> Counter[tuple[str, str]]:
        found = self.server.api(
            "POST",
            "/events/filter",
            json={"filter": {"event": {"prefix": ["leadflow.lead."]}}, "limit": 50},
        )
        return Counter(
            (e["event"], e["resource"]["prefect.resource.name"]) for e in found["events"]
        )


def wait_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def test_remind_reassign_and_tell_the_manager_once_each(tmp_path: Path) -> None:
    started = time.monotonic()
    receiver = Receiver()
    with prefect_stack(tmp_path) as (server, _processes), FaultServer(receiver) as vendor:
        loop = Loop(tmp_path, server, vendor)
        # two hot leads that waited 30 s in a form tool: their minute-long SLA ends 30 s
        # after this line
        created = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        due = created + timedelta(minutes=1)
        (loop.work / "leads.csv").write_text(
            "email,first_name,company,title,created_at\n"
            + "".join(
                f"{e},{e[:3].title()},Co,VP Sales,{created.isoformat()}\n" for e in (AVA, BEN)
            )
        )
        loop.leadflow("run", "leads.csv")
        assert "2 new leads with a deadline" in loop.leadflow("watch-slas")
        loop.leadflow("crm", "touch", BEN, "--note", "called, demo booked")

        wait_until(due + timedelta(seconds=1))
        first = loop.leadflow("watch-slas")
        assert "reminded 1" in first and "contacted 1" in first, first
        reminded_at = datetime.now(UTC)
        loop.leadflow("watch-slas")  # a rerun: nothing more
        assert loop.kinds() == {("reminder", AVA, REP_A): 1}

        wait_until(reminded_at + timedelta(seconds=ESCALATE_SECONDS + 1))
        assert "escalated 1" in loop.leadflow("watch-slas")
        loop.leadflow("watch-slas")  # a rerun: nothing more

        assert loop.kinds() == {
            ("reminder", AVA, REP_A): 1,
            ("reassigned", AVA, REP_B): 1,
            ("escalated", AVA, MANAGER): 1,
        }
        assert len({m["key"] for m in loop.sla_messages()}) == 3  # each its own key
        escalated = next(m for m in loop.sla_messages() if m["kind"] == "escalated")
        assert (escalated["previous_rep"], escalated["rep"]) == (REP_A, REP_B)
        # the leads' own notifications: one each, at assignment
        notified = [json.loads(r.request.content) for r in vendor.received]
        assert Counter(b["lead"]["email"] for b in notified if "lead" in b) == {AVA: 1, BEN: 1}

        assert loop.events() == {
            ("leadflow.lead.assigned", AVA): 1,
            ("leadflow.lead.assigned", BEN): 1,
            ("leadflow.lead.contacted", BEN): 1,
            ("leadflow.lead.reminded", AVA): 1,
            ("leadflow.lead.escalated", AVA): 1,
        }
        why = loop.leadflow("why", AVA)
        print(why)
        steps = [line.split()[2] for line in why.split("  SLA\n")[1].splitlines()]
        assert steps == ["watching", "reminded", "reassigned", "manager_told", "escalated"]
        assert f"owner now {REP_B}" in why
        watchers = server.api(
            "POST", "/flow_runs/filter", json={"flows": {"name": {"any_": ["watch-slas"]}}}
        )
        assert [r["state_type"] for r in watchers] == ["COMPLETED"] * 5
        print("at the vendor (UTC):", *receiver.arrived, sep="\n  ")
    print(f"SLA loop end to end: {time.monotonic() - started:.0f} s")
