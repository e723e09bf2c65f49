"""One lead through `process_lead` in a warm process, against plain asyncio running
the same steps over the same adapters with the same latencies. Prints figures.

    .venv/bin/python benchmarks/one_lead.py                 # 50 ms per adapter call
    .venv/bin/python benchmarks/one_lead.py --gap 1.5       # leads arriving 1.5 s apart

Every adapter call that would be a network call in production (CRM look-up, scorer,
rep assignment, CRM upsert, notification, event) sleeps `--latency-ms` first, so
the ideal time per lead is 3 calls in order plus the slowest of 3 at once: 4 x
latency. Both sides use the embedded adapters on a throw-away SQLite database and
leadflow's own `decide()`; the only difference is Prefect's orchestration.

Each side processes `--leads` distinct leads one after another (after warm-up runs
that are not counted). With `--gap`, the benchmark waits that long between leads
without counting it, as when leads arrive one by one; with no gap they come back to
back, and the Prefect side then pays for the temporary server's SQLite being busy
recording the previous lead's task runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

from slow_adapters import make_runtime

from leadflow.app.runtime import Runtime, prefect_clients, use_runtime
from leadflow.decide import decide
from leadflow.flows.lead import process_lead
from leadflow.intake import RawRecord, validate_record
from leadflow.integrations.base import LeadEvent
from leadflow.logging import configure_logging
from leadflow.settings import LogSettings

RUN = uuid.uuid4().hex[:8]  # fresh leads every run: nothing is "already done"


def lead_record(side: str, number: int) -> dict:
    return {
        "email": f"{side}{number}.{RUN}@bench{number}.test",
        "title": "Director of Sales",
        "country": "US",
        "employee_count": "150",
        "source": "webinar",
        "demo_requested": "yes",
    }


async def plain_asyncio(runtime: Runtime, record: dict) -> None:
    """The same steps as process_lead, with no orchestration."""
    lead = validate_record(RawRecord(origin="bench", data=record))
    adapters = runtime.adapters
    match = await adapters.crm.look_up(lead)
    decision, _ = await decide(
        lead, match, rules=runtime.rules, scorer=adapters.scorer, assigner=runtime.assigner
    )
    await asyncio.gather(
        adapters.crm.upsert(lead, decision, idempotency_key=f"crm:{lead.id}"),
        adapters.notifier.notify(lead, decision, idempotency_key=f"notify:{lead.id}"),
        adapters.event_sink.record(
            LeadEvent(
                event_id=f"event:{lead.id}",
                lead_id=lead.id,
                occurred_at=lead.created_at or time_now(),
                decision=decision,
            )
        ),
    )


def time_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def prefect_flow(runtime: Runtime, record: dict) -> None:
    outcome = await process_lead(record)
    assert outcome.ok, outcome.failed_branches


async def measure(name, fn, runtime, leads: int, warmup: int, gap: float) -> list[float]:
    for i in range(warmup):
        await fn(runtime, lead_record(f"{name}-warm", i))
    times = []
    for i in range(leads):
        if gap:
            await asyncio.sleep(gap)
        started = time.perf_counter()
        await fn(runtime, lead_record(name, i))
        times.append(time.perf_counter() - started)
    return times


def describe(name: str, times: list[float]) -> str:
    return (
        f"{name:<28} median {statistics.median(times) * 1000:7.1f} ms"
        f"   mean {statistics.mean(times) * 1000:7.1f} ms"
        f"   min {min(times) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10, help="leads measured per side")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted leads first")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="per adapter call")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between leads")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    configure_logging(LogSettings(level="WARNING"))

    with tempfile.TemporaryDirectory() as tmp:
        runtime = make_runtime(Path(tmp), latency)
        async with prefect_clients():
            with use_runtime(runtime):
                baseline = await measure(
                    "asyncio", plain_asyncio, runtime, args.leads, args.warmup, args.gap
                )
                flow = await measure(
                    "prefect", prefect_flow, runtime, args.leads, args.warmup, args.gap
                )
        await runtime.aclose()

    ideal = 4 * latency
    median_flow, median_base = statistics.median(flow), statistics.median(baseline)
    print(f"\n{args.leads} leads per side, {args.latency_ms:g} ms per call, gap {args.gap:g} s")
    print(f"{'ideal critical path':<28} {ideal * 1000:7.1f} ms (3 calls in order + slowest of 3)")
    print(describe("plain asyncio", baseline))
    print(describe("process_lead (Prefect)", flow))
    print(
        f"median ratio prefect / asyncio: {median_flow / median_base:.2f}x; "
        f"orchestration per lead: {(median_flow - median_base) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
