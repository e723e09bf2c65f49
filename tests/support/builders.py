"""Builders of the data the tests use: settings, leads, decisions and raw records.

One place for them: a test module builds its data with these (or with the contract
kit's `make_lead` and `make_decision`, re-exported here) instead of defining its own
or importing another test module's."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadflow.models import Decision, FollowUpType, Lead, ScoreReason
from leadflow.settings import PipelineSettings, Settings
from leadflow.testing import make_decision, make_lead
from tests.support.paths import EXAMPLES

__all__ = [
    "CSV_COLUMNS",
    "lead_rows",
    "make_decision",
    "make_lead",
    "make_settings",
    "raw_lead",
    "sample_decision",
    "sample_lead",
    "webhook_record",
    "write_csv",
]


def make_settings(tmp_path: Path, **pipeline: object) -> Settings:
    """Settings for a test: its own SQLite file, the sample rules, fast retries.
    `_env_file=None` keeps a developer's .env out of the tests."""
    return Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'leadflow.db'}",
        rules_path=EXAMPLES / "rules.toml",
        pipeline=PipelineSettings(
            **{"retries": 2, "retry_backoff_seconds": 0.05, "retry_jitter_factor": 0, **pipeline}
        ),
    )


def raw_lead(email: str, **extra: Any) -> dict[str, Any]:
    """A lead as a source sends it (strings, unvalidated): a VP of Sales at Acme in the
    US, `extra` fields added or replaced."""
    return {
        "email": email,
        "first_name": "Test",
        "title": "VP Sales",
        "company": "Acme",
        "country": "US",
        "employee_count": "120",
        "source": "referral",
        **extra,
    }


CSV_COLUMNS = ["email", "title", "country", "employee_count", "source"]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    """A CSV file of `rows` under the header CSV_COLUMNS."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    return path


def lead_rows(n: int, prefix: str = "b") -> list[list[str]]:
    """`n` rows for write_csv, a person and a company of their own each."""
    return [[f"{prefix}{i}@co{i}.test", "VP Sales", "US", "120", "webinar"] for i in range(n)]


def sample_lead() -> Lead:
    """One fixed lead whose every field the webhook notifier's contract tests check: the
    contract kit's lead with a fixed address, a size, a time and a demo request."""
    return make_lead(
        email="Ava.Stone@Northwind.test",
        employee_count="8",
        created_at="2026-11-22T08:00:00Z",
        demo_requested="yes",
    )


def sample_decision(lead: Lead) -> Decision:
    """One fixed decision for `lead` (tier A, a call within the hour)."""
    return Decision(
        lead_id=lead.id,
        score=72,
        score_reasons=[ScoreReason(group="title", rule="vp", points=30)],
        tier="A",
        follow_up=FollowUpType.CALL,
        sla_minutes=60,
        due_at=datetime(2026, 11, 22, 9, 0, tzinfo=UTC),
        rep="rep.one@example.test",
        assignment_rule="round_robin",
        rules_version="test-1",
    )


def webhook_record(tag: str) -> dict[str, Any]:
    """A raw lead of its own per `tag` (so one test's once-only records never answer
    for another's), as the webhook notifier's tests post it."""
    return raw_lead(f"{tag}@webhook-it.test", first_name="Wren", last_name="Hale")
