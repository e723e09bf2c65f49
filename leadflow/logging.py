"""structlog, configured once at the entry point.

- Lines carry `lead_id` (bound with `structlog.contextvars.bound_contextvars`) and the
  Prefect `flow_run_id` / `task_run_id` of the run they were written in.
- On a terminal they are readable (ConsoleRenderer); otherwise one JSON object per
  line. `LEADFLOW_LOG__FORMAT` overrides the choice.
- Inside a flow or task run they also reach the Prefect UI, under that run, through
  Prefect's own API log handler attached to the `leadflow` logger. The UI shows each
  line's level, logger, time and run beside it, so the message sent there is short:
  the event, then the few fields that matter (`render_for_ui`). The terminal or JSON
  output keeps every field, for log shipping.
- Prefect's "Finished in state Completed()" line per task run is dropped: the UI
  shows the task's state, and a file run has hundreds of them. Other task states
  (Failed, Cached, retries) still log.
- Secrets never appear: SecretStr values and values under secret-looking keys are
  replaced before any renderer sees them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from pydantic import SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

from leadflow.settings import LogSettings
from leadflow.validation import is_secret_name

LOGGER_NAME = "leadflow"
REDACTED = "**********"


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask SecretStr values and values under secret-looking keys."""
    return {key: _redact(key, value) for key, value in event_dict.items()}


def _redact(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr) or (is_secret_name(key) and value not in (None, "")):
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(key, v) for v in value)
    return value


def add_run_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the Prefect flow and task run this line was written in."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover - prefect is a dependency
        return event_dict
    task_context = TaskRunContext.get()
    flow_context = FlowRunContext.get()
    if task_context is not None:
        event_dict.setdefault("task_run_id", str(task_context.task_run.id))
        event_dict.setdefault("flow_run_id", str(task_context.task_run.flow_run_id))
    elif flow_context is not None and flow_context.flow_run is not None:
        event_dict.setdefault("flow_run_id", str(flow_context.flow_run.id))
    return event_dict


SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    add_run_ids,
    redact_secrets,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


# What the Prefect UI shows beside every line itself: not repeated in the message.
UI_SHOWN = frozenset({"level", "logger", "timestamp", "flow_run_id", "task_run_id"})
# Shown first, in this order, when present.
UI_FIRST = ("lead", "rep", "branch", "step", "status")
# Durations in milliseconds, shown last as "12.3 ms".
UI_DURATIONS = ("duration_ms", "total_ms")


def render_for_ui(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    """structlog renderer for the Prefect API: `team notified lead=ada@example.org
    rep=alice@example.com`. Leaves out the fields the UI shows itself, empty values,
    and `lead_id` when the line names its `lead`."""
    fields = {
        key: value
        for key, value in event_dict.items()
        if key not in UI_SHOWN and value is not None and not key.startswith("_")
    }
    if "lead" in fields:
        fields.pop("lead_id", None)
    exception = fields.pop("exception", None)
    parts = [str(fields.pop("event", ""))]
    durations = [fields.pop(key) for key in UI_DURATIONS if key in fields]
    ordered = [key for key in UI_FIRST if key in fields] + [
        key for key in fields if key not in UI_FIRST
    ]
    parts += [f"{key}={_ui_value(fields[key])}" for key in ordered]
    parts += [f"{duration:g} ms" for duration in durations]
    message = " ".join(parts)
    return f"{message}\n{exception}" if exception else message


def _ui_value(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if not text or any(c.isspace() for c in text) else text


class _DropCompletedTaskLines(logging.Filter):
    """Drop Prefect's "Finished in state Completed()" line of each task run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and record.getMessage().startswith("Finished in state Completed(")
        )


class _InRunOnly(logging.Filter):
    """Pass only records written inside a Prefect flow or task run, so lines from the
    command line itself do not make Prefect's handler warn about a missing run."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def configure_logging(settings: LogSettings, *, console_level: str | None = None) -> None:
    """Configure structlog and the `leadflow` stdlib logger. Safe to call again: the
    second call replaces the handlers instead of adding more.

    `console_level` lets the command line keep the terminal quiet (progress bar) while
    the Prefect UI still receives every line at `settings.level`.
    """
    use_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    renderer = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a module-level logger cached on first use keeps the processors of
        # that moment, so a later reconfiguration (or `structlog.testing.capture_logs`)
        # would not reach it. The cost is a few microseconds per line.
        cache_logger_on_first_use=False,
    )

    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level or settings.level)
    console.setFormatter(structlog.stdlib.ProcessorFormatter(processor=renderer))

    handlers: list[logging.Handler] = [console]
    try:
        from prefect.logging.handlers import APILogHandler
    except ImportError:  # pragma: no cover
        pass
    else:
        to_prefect = APILogHandler()
        to_prefect.setLevel(settings.level)
        to_prefect.addFilter(_InRunOnly())
        to_prefect.setFormatter(structlog.stdlib.ProcessorFormatter(processor=render_for_ui))
        handlers.append(to_prefect)

    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(settings.level)
    logger.propagate = False

    task_runs = logging.getLogger("prefect.task_runs")
    for old in [f for f in task_runs.filters if isinstance(f, _DropCompletedTaskLines)]:
        task_runs.removeFilter(old)
    task_runs.addFilter(_DropCompletedTaskLines())


def ensure_logging(settings: LogSettings) -> None:
    """Configure logging unless an entry point already has: flows started by a Prefect
    worker have no entry point of ours, so the first run configures it."""
    if not logging.getLogger(LOGGER_NAME).handlers:
        configure_logging(settings)


def get_logger(name: str = LOGGER_NAME) -> structlog.stdlib.BoundLogger:
    """A structlog logger under the `leadflow` stdlib logger."""
    if not name.startswith(LOGGER_NAME):
        name = f"{LOGGER_NAME}.{name}"
    return structlog.stdlib.get_logger(name)
