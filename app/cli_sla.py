"""The SLA commands: `leadflow watch-slas` (the watcher once, as the `watch-slas`
deployment runs it every minute) and `leadflow crm touch EMAIL` (log a call with a
contact of the local CRM, the first touch the watcher looks for).

Registered on the main `leadflow` app by leadflow.app.cli; `leadflow why EMAIL`
prints a lead's SLA history (leadflow.app.cli_routing).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from leadflow.app.console import checked_settings, fail, out, run_command, run_flow, runtime_for

crm_app = typer.Typer(help="The local CRM: log an activity with a contact.")


def watch_slas(
    give_up_hours: Annotated[
        float,
        typer.Option(
            min=0.001,
            help=(
                "How long a lead is watched for a first touch after its last step, and "
                "how far past its deadline a lead may be when first seen to be watched."
            ),
        ),
    ] = 24.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
) -> None:
    """Act on the leads past their SLA deadline once, as the watch-slas deployment does
    every minute: remind the rep when the CRM shows no first touch, then reassign the
    lead and tell the team's manager (the tier's escalate_after_minutes), or close the
    case when the lead was touched. Each step once, however often it runs. Exit 1 when
    a step failed (the next run sends what is missing), 2 for bad settings."""
    settings = checked_settings(verbose)
    from leadflow.flows.sla import SlaStepsFailedError, SlaSummary
    from leadflow.flows.sla import watch_slas as watcher

    runtime = runtime_for(settings)
    result, _run_id, _trouble = run_command(run_flow(runtime, watcher, give_up_hours=give_up_hours))
    if isinstance(result, SlaStepsFailedError):
        summary, code = result.summary, 1
    elif isinstance(result, SlaSummary):
        summary, code = result, 0
    else:
        raise fail(f"{type(result).__name__}: {result}")
    _print_summary(summary)
    raise typer.Exit(code)


def _print_summary(summary) -> None:
    if summary.note:
        out.print(escape(summary.note), highlight=False, soft_wrap=True)
        return
    counts = (
        f"{summary.opened} new leads with a deadline ({summary.not_watched} not watched: "
        f"deadline long past when seen); reminded {len(summary.reminded)}, escalated "
        f"{len(summary.escalated)}, contacted {len(summary.contacted)}, lapsed "
        f"{len(summary.lapsed)}; {summary.open} past their deadline still open"
    )
    out.print(counts, highlight=False, soft_wrap=True)
    for label in ("reminded", "escalated", "contacted", "lapsed"):
        for email in getattr(summary, label):
            out.print(f"  {label:<10} {escape(email)}", highlight=False)
    for email, reason in summary.failed.items():
        out.print(
            f"  failed     {escape(email)}: {escape(reason)}", highlight=False, soft_wrap=True
        )


@crm_app.command("touch")
def crm_touch(
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    at: Annotated[
        str | None,
        typer.Option(help="When, ISO 8601 with a zone (2026-12-05T10:30:00Z); default now."),
    ] = None,
    kind: Annotated[str, typer.Option(help="What it was: call, email, meeting.")] = "call",
    note: Annotated[str, typer.Option(help="A note kept with the activity.")] = "",
) -> None:
    """Log an activity with a contact of the local CRM (LEADFLOW_ADAPTERS__CRM=local):
    the first touch the SLA watcher looks for. Exit 1 when the CRM has no such contact."""
    settings = checked_settings(verbose=False)
    if settings.adapters.crm != "local":
        raise fail(
            f"leadflow crm touch logs activities in the local CRM; LEADFLOW_ADAPTERS__CRM is "
            f"{settings.adapters.crm}: log the call in {settings.adapters.crm} itself"
        )
    moment = None
    if at is not None:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            raise fail(f"--at {at!r}: not an ISO 8601 time; e.g. 2026-12-05T10:30:00Z") from None
        if moment.tzinfo is None:
            raise fail(f"--at {at!r}: give a zone, e.g. 2026-12-05T10:30:00Z")
    logged = asyncio.run(_touch(settings, email, moment, kind, note))
    out.print(
        f"{email.strip().lower()}: {kind} logged at {logged.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        highlight=False,
    )


async def _touch(settings, email: str, at: datetime | None, kind: str, note: str) -> datetime:
    from leadflow.db import dispose_engines
    from leadflow.integrations.local_crm import LocalCRM, UnknownContact
    from leadflow.integrations.wiring import build_adapter

    crm = build_adapter("crm", "local", settings)
    assert isinstance(crm, LocalCRM)
    try:
        return await crm.touch(email, at=at, kind=kind, note=note)
    except UnknownContact:
        raise fail(f"the local CRM has no contact {email.strip().lower()}", code=1) from None
    finally:
        await crm.aclose()
        await dispose_engines()
