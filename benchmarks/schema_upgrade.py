"""What preparing leadflow's schema costs when the runtime opens, on SQLite.

    .venv/bin/python benchmarks/schema_upgrade.py

Prints the first upgrade of a new file (all tables created), the median of repeated
calls at head (what every later start pays), and an upgrade of a database made before
migrations (adoption). Set LEADFLOW_TEST_POSTGRES_URL to also time the PostgreSQL
check at head on that database (which it upgrades first: use one it may change).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from leadflow.schema import check_schema, core_metadata, upgrade_schema


async def timed(work) -> float:
    started = time.perf_counter()
    await work
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="leadflow-schema-bench-"))
    core_metadata()
    await upgrade_schema(f"sqlite+aiosqlite:///{folder / 'warm.db'}")  # imports, script load

    fresh = await timed(upgrade_schema(f"sqlite+aiosqlite:///{folder / 'fresh.db'}"))
    at_head = [
        await timed(upgrade_schema(f"sqlite+aiosqlite:///{folder / 'fresh.db'}")) for _ in range(20)
    ]
    old = folder / "old.db"
    engine = create_engine(f"sqlite:///{old}")
    core_metadata().create_all(engine)
    engine.dispose()
    adopted = await timed(upgrade_schema(f"sqlite+aiosqlite:///{old}"))

    print(f"SQLite, new file, every table:        {fresh:7.1f} ms")
    print(f"SQLite, at head (median of 20):       {statistics.median(at_head):7.1f} ms")
    print(f"SQLite, made before migrations:       {adopted:7.1f} ms")
    postgres = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
    if postgres:
        await upgrade_schema(postgres)
        checks = [await timed(check_schema(postgres)) for _ in range(20)]
        print(f"PostgreSQL check at head (median 20): {statistics.median(checks):7.1f} ms")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
