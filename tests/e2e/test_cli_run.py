"""`leadflow run examples/leads.csv` as a user runs it: a subprocess, a brand-new
PREFECT_HOME (so Prefect starts its own temporary server) and a brand-new database."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import query, run_cli
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def first_run(workdir: Path) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "examples" / "leads.csv", workdir / "leads.csv")
    return run_cli(workdir, "run", "leads.csv")


def test_the_sample_run_succeeds_with_a_summary(first_run):
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    out = first_run.stdout
    assert "57 of 60 records processed from leads.csv" in out
    for heading in ("By tier", "By rep", "Failed branches: none", "Set aside", "Wall time"):
        assert heading in out
    assert "Traceback" not in first_run.stderr


def test_the_local_crm_and_events_tables_hold_the_leads(first_run, workdir):
    assert first_run.returncode == 0
    (events,) = query(workdir, "select count(*) from lead_events")[0]
    assert events == 57
    tiers = dict(query(workdir, "select tier, count(*) from lead_events group by tier"))
    assert set(tiers) == {"hot", "warm", "cold"}
    # 3 seeded contacts; 2 of the sample leads are those contacts, updated in place.
    (contacts,) = query(workdir, "select count(*) from crm_contacts")[0]
    assert contacts == 3 + 57 - 2
    (rule,) = query(workdir, "select assignment_rule from lead_events where lead_id = 'crm-hank'")[
        0
    ]
    assert rule == "crm_owner:contact"


def test_bad_rows_are_quarantined_with_their_reason(first_run, workdir):
    rows = query(workdir, "select position, reason from quarantine order by position")
    assert [position for position, _ in rows] == [57, 58, 61]  # only those with no email
    reasons = dict(rows)
    assert reasons[57].startswith("email: required")
    assert "not-an-email" in reasons[58]
    assert "'row' is not an email address (the row lacks country" in reasons[61]


def test_an_unreadable_field_is_left_out_and_the_lead_goes_on(first_run, workdir):
    out = " ".join(first_run.stdout.split())
    assert "2 fields left out of leads that went on" in out
    assert (
        "leads.csv row 59 (lots.of.people@contoso.test): employee_count 'lots': not a number "
        "or a range such as 51-200; dropped, the lead goes on" in out
    )
    assert "leads.csv row 60 (time.traveller@contoso.test): created_at 'yesterday-ish'" in out
    emails = {email for (email,) in query(workdir, "select email from crm_contacts")}
    assert {"lots.of.people@contoso.test", "time.traveller@contoso.test"} <= emails


def test_a_second_run_repeats_nothing_and_strict_fails_on_set_aside(first_run, workdir):
    assert first_run.returncode == 0
    again = run_cli(workdir, "run", "leads.csv", "--strict")
    assert again.returncode == 1  # --strict: set-aside records make it fail
    assert "57 already done before" in " ".join(again.stdout.split())
    (events,) = query(workdir, "select count(*) from lead_events")[0]
    assert events == 57
    outbox = (workdir / "outbox.jsonl").read_text().splitlines()
    assert len(outbox) == 57


def test_a_wrong_setting_is_named(workdir):
    result = run_cli(workdir, "run", "leads.csv", LEADFLOW_PIPELINE__CONCURRENCY="0")
    assert result.returncode == 2
    assert "LEADFLOW_PIPELINE__CONCURRENCY" in result.stderr
    assert "greater than or equal to 1" in result.stderr


def test_a_wrong_rules_file_is_named(workdir):
    rules = workdir / "bad-rules.toml"
    rules.write_text(
        (ROOT / "examples" / "rules.toml").read_text().replace("min_score = 70", "min_scor = 70")
    )
    result = run_cli(workdir, "run", "leads.csv", LEADFLOW_RULES_PATH=str(rules))
    assert result.returncode == 2
    assert "tiers.0.min_scor: unknown key" in result.stderr


def test_help_and_adapters_and_quarantine(first_run, workdir):
    help_text = run_cli(workdir, "--help").stdout
    for command in ("run", "adapters", "quarantine"):
        assert command in help_text
    adapters = run_cli(workdir, "adapters").stdout
    for name in ("local", "terminal", "webhook", "sqlite", "rules", "file"):
        assert name in adapters
    listed = run_cli(workdir, "quarantine", "list")
    assert listed.returncode == 0
    assert "not-an-email" in listed.stdout


def test_export_fix_and_replay(first_run, workdir):
    exported = run_cli(workdir, "quarantine", "export", "fix.jsonl")
    assert exported.returncode == 0 and "3 records written" in exported.stdout
    lines = (workdir / "fix.jsonl").read_text().splitlines()
    fixed = [line.replace('"not-an-email"', '"fixed.address@lucerne.test"') for line in lines]
    (workdir / "fix.jsonl").write_text("\n".join(fixed) + "\n")
    replayed = run_cli(workdir, "quarantine", "replay", "fix.jsonl")
    assert replayed.returncode == 1  # two are still wrong
    assert "1 records processed and out of the quarantine; 2 still set aside" in replayed.stdout
    (count,) = query(workdir, "select count(*) from quarantine where status = 'pending'")[0]
    assert count == 2
    rows = query(
        workdir, "select count(*) from crm_contacts where email = 'fixed.address@lucerne.test'"
    )
    assert rows == [(1,)]


def test_a_missing_or_wrong_file_is_named(workdir):
    missing = run_cli(workdir, "run", "no-such-file.csv")
    assert missing.returncode == 2
    assert "no-such-file.csv: Path does not point to a file" in missing.stderr
    (workdir / "notes.pdf").write_text("email\nx@y.test\n")
    wrong = run_cli(workdir, "run", "notes.pdf")
    assert wrong.returncode == 2
    assert "notes.pdf: leadflow reads .csv, .tsv, .txt, .xlsx" in wrong.stderr


def test_one_lead_from_the_command_line(first_run, workdir):
    good = run_cli(
        workdir, "lead", '{"email": "ada@analytical.test", "title": "CTO", "country": "GB"}'
    )
    assert good.returncode == 0, good.stderr[-2000:]
    assert "title has 'cto'" in good.stdout and "update_crm" in good.stdout
    assert query(
        workdir, "select count(*) from crm_contacts where email = 'ada@analytical.test'"
    ) == [(1,)]
    bad = run_cli(workdir, "lead", '{"email": "ada-at-analytical"}')
    assert bad.returncode == 2
    assert "email" in bad.stderr and "ada-at-analytical" in bad.stderr


def test_the_sample_run_prints_the_bar_the_columns_and_the_summary_only(first_run):
    lines = [line for line in (first_run.stderr + first_run.stdout).splitlines() if line.strip()]
    text = "\n".join(lines)
    for noise in ("Finished in state", "Traceback", "Starting temporary server", " -> ", "INFO"):
        assert noise not in text
    assert lines[0].startswith("columns used: id, email")
    assert any(line.startswith("leads ") and "57/57" in line for line in lines)
    # columns (2) + bar (1) + summary: title, tier and rep tables, overdue, failures,
    # the set-aside table, wall time, where the runs are.
    assert len(lines) <= 45, text


def test_the_readme_shows_what_make_run_prints(first_run):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("`make run` processes the 60 sample records.")[1].split("```")[1]

    def tiers(text: str) -> dict[str, int]:
        return {m[0]: int(m[1]) for m in re.findall(r"│ (warm|hot|cold)\s+│\s+(\d+) │", text)}

    assert tiers(block) == tiers(first_run.stdout) != {}
    assert "57 of 60 records processed" in block and "57 of 60 records processed" in (
        first_run.stdout
    )
