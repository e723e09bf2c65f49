"""Wait for the Prefect server to finish recording a run's task runs.

Task-run states reach the server as events that a server-side service writes to its
database in batches, a moment after the flow run itself has finished. The temporary
server that Prefect starts for a one-off command (no PREFECT_API_URL) is stopped
when the command exits; if that happens mid-batch the last task runs stay "Running"
in the UI and the server prints a cancelled-flush traceback. Commands call
`settle(flow_run_id)` before exiting to avoid both.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

_TERMINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]


async def settle(flow_run_id: UUID, *, wait_seconds: float = 15.0, interval: float = 0.3) -> bool:
    """True once the run's task runs are all recorded in a final state and their
    number has stopped growing; False if that did not happen within `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    last_total = -1
    async with get_client() as client:
        while time.monotonic() < deadline:
            total = await _count(client, flow_run_id, None)
            unfinished = total - await _count(client, flow_run_id, _TERMINAL)
            if unfinished == 0 and total == last_total:
                return True
            last_total = total
            await asyncio.sleep(interval)
    return False


async def _count(client, flow_run_id: UUID, states: list[StateType] | None) -> int:
    task_runs: dict = {}
    if states is not None:
        task_runs = {"task_runs": {"state": {"type": {"any_": [s.value for s in states]}}}}
    response = await client._client.post(
        "/task_runs/count",
        json={"flow_runs": {"id": {"any_": [str(flow_run_id)]}}, **task_runs},
    )
    return int(response.json())
