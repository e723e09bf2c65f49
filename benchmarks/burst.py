"""A burst of leads through `process_file` (tasks inside one flow run, bounded
concurrency) against plain asyncio with the same concurrency bound, over the same
slowed adapters. Prints leads per second for each.

    .venv/bin/python benchmarks/burst.py                          # 200 leads, 50 ms, 32 at once
    .venv/bin/python benchmarks/burst.py --leads 500 --concurrency 64

Each lead costs 3 calls in order plus the slowest of 3 at once (4 x latency), so with
`--concurrency C` the ceiling is C / (4 x latency) leads per second. Prefect's side is
held back by orchestration: about 30 ms of client work per task run, 5 task runs per
lead, on a 2-core machine that also runs the Prefect server.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

from one_lead import plain_asyncio
from slow_adapters import make_runtime

from leadflow.app.runtime import use_runtime
from leadflow.flows.files import process_file
from leadflow.flows.settle import settle
from leadflow.logging import configure_logging
from leadflow.settings import LogSettings


def burst(leads: int) -> list[dict]:
    run = uuid.uuid4().hex[:8]
    return [
        {
            "email": f"burst{i}.{run}@company{i % 97}.test",
            "title": ["VP Sales", "Analyst", "Director"][i % 3],
            "country": ["US", "DE", "GB", "JP"][i % 4],
            "employee_count": str([15, 120, 600, 3000][i % 4]),
            "source": "website",
        }
        for i in range(leads)
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    configure_logging(LogSettings(level="WARNING"))
    latency = args.latency_ms / 1000

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        runtime = make_runtime(workdir, latency)
        limit = asyncio.Semaphore(args.concurrency)

        async def bounded(record: dict) -> None:
            async with limit:
                await plain_asyncio(runtime, record)

        started = time.perf_counter()
        await asyncio.gather(*(bounded(record) for record in burst(args.leads)))
        baseline = time.perf_counter() - started

        path = workdir / "burst.csv"
        records = burst(args.leads)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        with use_runtime(runtime):
            started = time.perf_counter()
            state = await process_file(path=path, concurrency=args.concurrency, return_state=True)
            flow = time.perf_counter() - started
            summary = await state.aresult()
            await settle(state.state_details.flow_run_id)  # let the server finish recording
        await runtime.aclose()
    assert summary.processed == args.leads and not summary.failed

    ceiling = args.concurrency / (4 * latency)
    print(f"\n{args.leads} leads, {args.latency_ms:g} ms per call, {args.concurrency} at once")
    print(f"ceiling                      {ceiling:7.1f} leads/s")
    print(f"plain asyncio                {args.leads / baseline:7.1f} leads/s  ({baseline:.1f} s)")
    print(f"process_file (Prefect)       {args.leads / flow:7.1f} leads/s  ({flow:.1f} s)")
    print(f"ratio prefect / asyncio wall time: {flow / baseline:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
