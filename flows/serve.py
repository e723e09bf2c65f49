"""The deployments of deployments/prefect.yaml, for Prefect's `serve`.

`leadflow serve` runs the same flows from one long-running process instead of a work
pool and workers: the simplest way to get schedules on one machine. The deployments
are read from the same prefect.yaml the workers' deployments come from (names,
descriptions, tags, parameters, schedules, concurrency limit), so the two ways of
running cannot drift apart; only the work pool, pull steps and job variables are
left out, since the serving process runs each flow run itself, from its own working
directory and environment.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval, Schedule

PREFECT_FILE = Path(__file__).resolve().parent.parent / "deployments" / "prefect.yaml"


def served_deployments(
    *, prefect_file: Path = PREFECT_FILE, poll_interval: float | None = None
) -> list[RunnerDeployment]:
    """One RunnerDeployment per deployment in `prefect_file`. `poll_interval`, in
    seconds, replaces the interval of every interval schedule (the poll)."""
    project = yaml.safe_load(prefect_file.read_text(encoding="utf-8"))
    return [_runner_deployment(d, poll_interval) for d in project["deployments"]]


def _runner_deployment(spec: dict[str, Any], poll_interval: float | None) -> RunnerDeployment:
    flow = load_flow(spec["entrypoint"])
    limit = spec.get("concurrency_limit")
    return flow.to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=[_schedule(s, poll_interval) for s in spec.get("schedules") or []],
        concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
        enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
    )


def _schedule(spec: dict[str, Any], poll_interval: float | None) -> Schedule:
    if "interval" in spec:
        return Interval(
            poll_interval or spec["interval"],
            timezone=spec.get("timezone"),
            active=spec.get("active", True),
        )
    if "cron" in spec:
        return Cron(spec["cron"], timezone=spec.get("timezone"), active=spec.get("active", True))
    raise ValueError(f"{PREFECT_FILE.name}: only interval and cron schedules are served: {spec}")


def load_flow(entrypoint: str):
    """The flow object behind a `path/to/module.py:name` entrypoint.

    The entrypoints name files under the repository's folders (flows/lead.py), which
    install as subpackages of `leadflow` (leadflow.flows.lead)."""
    path, name = entrypoint.split(":")
    module = ".".join(("leadflow", *Path(path).with_suffix("").parts))
    return getattr(importlib.import_module(module), name)
