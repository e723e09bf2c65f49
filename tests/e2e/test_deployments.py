"""The deployments as a user runs them, on a real `prefect server start`.

The work pool, `prefect deploy --all` of deployments/prefect.yaml from the repository
root, a process worker, `process-file` through `prefect deployment run --watch`, and
then `poll-leads` runs created by the server's own scheduler (nobody runs poll-leads
by hand here) that pick up files dropped after the worker started. The stores are
checked across two polls: every lead of the dropped files is in the CRM once, was
notified once and logged once, and a lead or a file seen before changed nothing.

The real deployments file is deployed with two changes: a shorter poll interval,
so the test takes minutes rather than many, and a `job_variables.env` on
process-file that sends its notifications to a file of their own, which shows that
per-deployment settings reach the runs. If the scheduler cannot create runs
(SQLAlchemy 2.1 under prefect 3.8.8 did exactly that), no poll runs and the test
fails naming what it waited for.

A second variant puts the Prefect server's database and leadflow's own stores on
PostgreSQL, with two workers on the pool; it runs when LEADFLOW_TEST_POSTGRES_URL
is set (CI sets it with .ci/postgres).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.deployments import Scenario
from tests.support.stack import (
    prefect_stack,
    scratch_database,
)

pytestmark = pytest.mark.e2e


def test_scheduled_deployments_on_a_real_server(tmp_path: Path):
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'leadflow.db'}"
    started = time.monotonic()
    with prefect_stack(tmp_path) as (server, processes):
        Scenario(tmp_path, server, processes, database_url, workers=1).run()
    print(f"scheduled deployments end to end: {time.monotonic() - started:.0f} s")


POSTGRES = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES, reason="LEADFLOW_TEST_POSTGRES_URL is not set")
def test_scheduled_deployments_on_postgres_with_two_workers(tmp_path: Path):
    """The Prefect server on PostgreSQL (PREFECT_API_DATABASE_CONNECTION_URL), leadflow's
    stores on PostgreSQL too, and two process workers on the one pool."""
    with (
        scratch_database(POSTGRES, "prefect") as prefect_db,
        scratch_database(POSTGRES, "leadflow") as leadflow_db,
        prefect_stack(tmp_path, database_url=prefect_db) as (server, processes),
    ):
        Scenario(tmp_path, server, processes, leadflow_db, workers=2).run()
