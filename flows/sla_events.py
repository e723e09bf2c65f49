"""The SLA loop's Prefect events: `leadflow.lead.assigned`, `.reminded`, `.contacted`,
`.escalated`, one per lead and step.

They go to Prefect's event feed (the UI's Event Feed, `prefect events stream`, and
automations: a trigger on `leadflow.lead.escalated` can page someone, one on
`leadflow.lead.assigned` can start a deployment) through `prefect.events.emit_event`,
with the lead as the resource (`leadflow.lead.<id>`, named by its email) and the
reps and the manager as related resources with their role.

Each event's id is derived from the case (the lead and when it was assigned) and the
step, and Prefect's server keeps the first event of an id and ignores repeats: a
watcher run that emits a step again (a rerun after a crash) does not show it twice.
`assigned` is emitted when the watcher first sees the lead's decision (within a minute
of it), with `occurred` set to when the decision was made.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from prefect.events import emit_event

from leadflow.logging import get_logger
from leadflow.sla import SlaCase

log = get_logger(__name__)

# uuid5 namespace of the events' ids: the same lead and step, the same id
_EVENT_IDS = uuid.UUID("5b0f6c3e-8f7e-4a53-9d0e-2b9f3f6f2a11")


def event_id(case: SlaCase, step: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_IDS, f"{case.lead_id}:{case.assigned_at.isoformat()}:{step}")


def emit_sla_event(
    step: str,
    case: SlaCase,
    *,
    occurred: datetime,
    people: dict[str, str | None] | None = None,
    **payload: Any,
) -> None:
    """Emit `leadflow.lead.<step>` for `case`. `people`: {role: email} of the reps and
    manager involved (rep, previous_rep, manager). Never raises: an event that cannot
    be sent is logged, the step it reports is done and recorded either way."""
    related = [
        {"prefect.resource.id": f"leadflow.person.{email}", "prefect.resource.role": role}
        for role, email in (people or {"rep": case.rep}).items()
        if email
    ]
    try:
        emit_event(
            f"leadflow.lead.{step}",
            resource={
                "prefect.resource.id": f"leadflow.lead.{case.lead_id}",
                "prefect.resource.name": case.email,
                "leadflow.tier": case.tier,
            },
            occurred=occurred,
            related=related,
            payload={"due_at": case.due_at.isoformat(), **payload},
            id=event_id(case, step),
        )
    except Exception as exc:  # an event too large, a client that cannot start
        log.warning("sla event not sent", name=step, lead_id=case.lead_id, error=repr(exc))
