"""How tasks that call vendors retry: Prefect's own retries, told which errors to retry.

- transient errors (timeouts, connection failures, 429, 5xx) are retried with
  exponential backoff and jitter (`retries`, `retry_delay_seconds`,
  `retry_jitter_factor` from `LEADFLOW_PIPELINE__*`);
- permanent errors (400, 401, 403, ...) and bugs fail at once;
- a 429's Retry-After is honoured: the retry condition waits out whatever part of
  the server's delay exceeds the shortest backoff Prefect may apply (jitter can
  shorten it), capped at `max_retry_after_seconds` so a vendor cannot stall a run
  for hours.

The condition is `async def` on purpose: Prefect never retries an async task whose
retry condition is a plain function. The cap is bound into it when the options are
built (a `functools.partial` of a coroutine function is still one to Prefect).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task, exponential_backoff
from prefect.utilities.annotations import NotSet
from prefect.utilities.math import lower_clamp_multiple

from leadflow.integrations.errors import RateLimited, TransientError
from leadflow.logging import get_logger
from leadflow.settings import PipelineSettings

log = get_logger(__name__)


class RetryOptions(TypedDict):
    """`Task.with_options` arguments for a task that calls a vendor."""

    retries: int
    retry_delay_seconds: float | list[float]
    retry_jitter_factor: float | type[NotSet]
    retry_condition_fn: Callable[[Task[..., Any], TaskRun, State[Any]], Awaitable[bool]]


def retry_options(settings: PipelineSettings) -> RetryOptions:
    """`Task.with_options` arguments for a task that calls a vendor."""
    delays = (
        exponential_backoff(backoff_factor=settings.retry_backoff_seconds)(settings.retries)
        if settings.retry_backoff_seconds > 0
        else 0
    )
    return {
        "retries": settings.retries,
        "retry_delay_seconds": delays,
        # NotSet keeps the task's own: none (Prefect's runtime takes None too, its types not)
        "retry_jitter_factor": settings.retry_jitter_factor or NotSet,
        "retry_condition_fn": functools.partial(
            retry_transient_errors, max_retry_after=settings.max_retry_after_seconds
        ),
    }


async def retry_transient_errors(
    task: Task, task_run: Any, state: Any, *, max_retry_after: float
) -> bool:
    """Prefect retry condition: retry TransientError only, after any Retry-After
    (waited for up to `max_retry_after` seconds)."""
    exc = await state.aresult(raise_on_failure=False)
    if not isinstance(exc, TransientError):
        return False
    if isinstance(exc, RateLimited) and exc.retry_after:
        planned = _planned_delay(task, task_run.run_count)
        extra = min(exc.retry_after, max_retry_after) - planned
        if extra > 0:
            log.info(
                "honouring Retry-After",
                task=task.name,
                retry_after_s=exc.retry_after,
                waiting_s=round(extra, 3),
            )
            await asyncio.sleep(extra)
    return True


def _planned_delay(task: Task, run_count: int) -> float:
    """The shortest delay Prefect may apply before this retry: the backoff, less what
    jitter can take off it (Prefect draws the jittered delay from as low as
    `lower_clamp_multiple(1 + jitter)` times the backoff)."""
    delays = task.retry_delay_seconds
    if not delays:
        return 0.0
    if isinstance(delays, list | tuple):
        delay = float(delays[min(max(run_count - 1, 0), len(delays) - 1)])
    else:
        delay = float(delays)
    if task.retry_jitter_factor and delay > 0:
        delay *= lower_clamp_multiple(1 + task.retry_jitter_factor)
    return delay
