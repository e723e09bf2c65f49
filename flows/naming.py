"""What the Prefect UI calls runs and how it can filter them.

A sales-ops user finds work by the file it came from or the lead it was about, so:

- a `process-file` run is named after its file (`file-leads.csv`);
- a `process-lead` run is named after its lead's email, or its id when
  `LEADFLOW_UI__SHOW_EMAILS=false` keeps emails out of names, tags, artifacts and
  UI log lines;
- each task run is named after its step and lead (`notify-team ada@example.org`), so
  the UI's search finds one lead's tasks among the hundreds of a file run;
- tags `source:`, `mode:` (the cut-over mode the lead ran in: live, shadow or pilot;
  known before a lead's first task) and `tier:`, `rep:`
  (known once it is decided) go on its `process-lead` run, so the UI's tag filters
  work; on the lead's task runs too with `LEADFLOW_UI__TAG_TASKS=true`. That is off by
  default because Prefect makes one more API call per tagged task run (to look up
  tag concurrency limits), and under a busy SQLite-backed server those calls fail
  with 503 and fail the task.

The names are computed by Prefect from the run's parameters, through the callables
here, when the run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from leadflow.flows.context import current_runtime
from leadflow.flows.mode import run_mode
from leadflow.models import Decision, Lead, lead_id_of


def show_emails() -> bool:
    return current_runtime().settings.ui.show_emails


def lead_label(email: str | None, lead_id: str | None) -> str:
    """How the UI names a lead: its email, or its id where emails are kept private."""
    if email and show_emails():
        return email
    return lead_id or "unknown lead"


def label_of(lead: Lead) -> str:
    return lead_label(lead.email, lead.id)


def lead_run_name() -> str:
    """`flow_run_name` of `process-lead`: the lead, from its raw record."""
    record = flow_run.parameters.get("record") or {}
    email = record.get("email") if isinstance(record, dict) else None
    email = email.strip().lower() if isinstance(email, str) and "@" in email else None
    return lead_label(email, lead_id_of(record) if isinstance(record, dict) else None)


def file_run_name() -> str:
    """`flow_run_name` of `process-file`: the file's name."""
    return f"file-{Path(str(flow_run.parameters.get('path', ''))).name}"


def step_run_name(step: str):
    """A `task_run_name` for a task whose `lead` parameter is a Lead: `<step> <lead>`."""

    def name(parameters: dict[str, Any]) -> str:
        lead = parameters.get("lead")
        return f"{step} {label_of(lead)}" if isinstance(lead, Lead) else step

    name.__name__ = f"{step.replace('-', '_')}_run_name"
    return name


def lead_tags(lead: Lead) -> list[str]:
    """Tags known before a lead's first task."""
    return [f"source:{lead.source or 'unknown'}", f"mode:{run_mode()}"]


def decision_tags(decision: Decision) -> list[str]:
    """Tags known once the lead is decided."""
    return [f"tier:{decision.tier}", f"rep:{decision.rep}"]


def task_tags(tags: list[str]) -> list[str]:
    """`tags` for a lead's task runs, if task runs are tagged (`LEADFLOW_UI__TAG_TASKS`)."""
    return tags if current_runtime().settings.ui.tag_tasks else []
