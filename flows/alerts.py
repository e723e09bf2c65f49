"""Being told when a run fails: an `on_failure` hook that sends through the notifier.

The flows carry `alert_on_failure` as their `on_failure` hook, so a run of
process-lead, process-file or poll-leads that ends Failed sends one alert through
the configured notifier (the terminal notifier writes it to `alerts.jsonl` beside its
outbox and prints it; a notifier without its own `alert()` logs it at error level).
The alert's once-only key is the flow run id: a hook that runs again for the same run
(the run retried and failed again) is not sent twice.

The hook never raises: a notifier that is down must not change how the run ended,
so a failure to alert is logged instead.
"""

from __future__ import annotations

from prefect.settings import get_current_settings

from leadflow.flows.context import current_runtime
from leadflow.integrations.base import RunAlert
from leadflow.logging import get_logger

log = get_logger(__name__)

MESSAGE_CHARS = 1000


def alert_for(flow, flow_run, state) -> RunAlert:
    ui = get_current_settings().ui_url
    message = (state.message or state.name or "failed").strip()
    return RunAlert(
        flow=flow.name,
        run_name=flow_run.name,
        run_id=str(flow_run.id),
        message=message[:MESSAGE_CHARS],
        url=f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run.id}" if ui else None,
    )


def alert_key(flow_run) -> str:
    return f"run-failed:{flow_run.id}"


async def alert_on_failure(flow, flow_run, state) -> None:
    """Prefect `on_failure` hook: one alert per failed run, through the notifier."""
    alert = alert_for(flow, flow_run, state)
    try:
        notifier = current_runtime().adapters.notifier
        await notifier.alert(alert, idempotency_key=alert_key(flow_run))
    except Exception as exc:
        log.warning("could not send the failed-run alert", alert=alert.text, error=repr(exc))
    else:
        log.info("failed-run alert sent", run_id=alert.run_id)
