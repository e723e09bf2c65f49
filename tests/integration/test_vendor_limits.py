"""Vendor limits on the real Prefect API: `apply_limits` creates and updates them from
the settings, the webhook notifier's calls to a real HTTP server stay within them
while a file's leads run at once, the side-effect tasks carry their vendor's tag,
and an adapter without limits is reported once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from structlog.testing import capture_logs

from leadflow.flows import limits
from leadflow.flows.files import process_file
from leadflow.flows.limits import apply_limits, concurrency_name, rate_name, vendor_limit
from leadflow.integrations.local_crm import LocalCRM
from leadflow.integrations.recorders import Journal, RecordingCRM
from leadflow.integrations.terminal_notifier import TerminalNotifier
from leadflow.loopback_vendor import FaultServer
from leadflow.settings import VendorLimit
from tests.support.builders import make_settings
from tests.support.paths import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_api")

DELAY = 0.3  # seconds the test server takes to answer each notification


@pytest.fixture(autouse=True)
async def no_limits_known():
    """Each test starts with no webhook limits on the server and none remembered."""

    async def clear() -> None:
        limits._known.checked.clear()
        limits._known.reported.clear()
        async with get_client() as client:
            for limit in await client.read_global_concurrency_limits(limit=200):
                if limit.name.startswith("vendor:"):
                    await client.delete_global_concurrency_limit_by_name(limit.name)

    await clear()
    yield
    await clear()


def leads_file(path: Path, tag: str, count: int) -> Path:
    rows = "".join(f"{tag}{i}@limits-it.test,Lim,Acme,VP Sales,US\n" for i in range(count))
    path.write_text("email,first_name,company,title,country\n" + rows)
    return path


def most_at_once(server: FaultServer) -> int:
    """The most requests the server was answering at one time (each takes DELAY)."""
    starts = sorted(request.at for request in server.received)
    return max(sum(1 for s in starts if start <= s < start + DELAY) for start in starts)


async def eight_leads_under(limit: VendorLimit, tmp_path: Path) -> None:
    """Put the webhook's limit on the server, then run a file of 8 leads, all at once."""
    settings = make_settings(tmp_path)
    settings.limits = {"webhook": limit}
    await apply_limits(settings)
    path = leads_file(tmp_path / "eight.csv", f"l{id(limit)}-", 8)
    state = await process_file(path=path, concurrency=8, return_state=True)
    assert state.is_completed(), state.message


async def test_apply_creates_then_updates_the_limits(tmp_path: Path):
    settings = make_settings(tmp_path)
    settings.limits = {"webhook": VendorLimit(concurrency=2, per_second=2.5)}

    applied = await apply_limits(settings)

    assert [(a.name, a.limit, a.slot_decay_per_second) for a in applied] == [
        ("vendor:webhook", 2, 0.0),
        ("vendor:webhook:rate", 3, 2.5),
    ]
    settings.limits = {"webhook": VendorLimit(concurrency=5, per_second=1)}
    await apply_limits(settings)
    async with get_client() as client:
        concurrency = await client.read_global_concurrency_limit_by_name("vendor:webhook")
        rate = await client.read_global_concurrency_limit_by_name("vendor:webhook:rate")
    assert (concurrency.limit, concurrency.slot_decay_per_second) == (5, 0.0)
    assert (rate.limit, rate.slot_decay_per_second) == (1, 1.0)


async def test_calls_stay_within_the_concurrency_limit(
    webhook_runtime, webhook_server: FaultServer, tmp_path: Path
):
    webhook_server.latency = DELAY

    await eight_leads_under(VendorLimit(concurrency=2), tmp_path)

    assert len(webhook_server.received) == 8
    assert most_at_once(webhook_server) <= 2


async def test_without_a_limit_the_calls_run_at_once(
    webhook_runtime, webhook_server: FaultServer, tmp_path: Path
):
    """The control for the test above: the same file, no limit on the server."""
    webhook_server.latency = DELAY

    with capture_logs() as logs:
        state = await process_file(
            path=leads_file(tmp_path / "f.csv", "free", 8), concurrency=8, return_state=True
        )

    assert state.is_completed(), state.message
    assert most_at_once(webhook_server) > 2
    missing = [e for e in logs if e["event"] == "no vendor limit on the Prefect server"]
    assert sorted(e["vendor"] for e in missing) == ["local", "sqlite", "webhook"]  # once each


async def test_calls_stay_within_the_rate_limit(
    webhook_runtime, webhook_server: FaultServer, tmp_path: Path
):
    await eight_leads_under(VendorLimit(per_second=4), tmp_path)

    arrivals = sorted(request.at for request in webhook_server.received)
    # A burst of 4, then the other 4 as the slots decay at 4 a second.
    assert len(arrivals) == 8 and arrivals[-1] - arrivals[0] >= 0.75


async def test_side_effect_tasks_carry_their_vendor_tag(webhook_runtime, tmp_path: Path):
    """Tagged when the vendor has limits in the settings (a concurrency of 50 here)."""
    limit = VendorLimit(concurrency=50)
    webhook_runtime.settings.limits = dict.fromkeys(("local", "webhook", "sqlite"), limit)
    state = await process_file(path=leads_file(tmp_path / "t.csv", "tag", 1), return_state=True)

    async with get_client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    tags = {run.name.split(" ", 1)[0]: set(run.tags) for run in task_runs}
    assert "vendor:local" in tags["update-crm"]
    assert "vendor:webhook" in tags["notify-team"]
    assert "vendor:sqlite" in tags["log-event"]


async def test_vendor_limit_is_looked_up_once_a_minute(tmp_path: Path):
    notifier = TerminalNotifier(tmp_path / "outbox.jsonl", echo=False)
    with capture_logs() as logs:
        for _ in range(3):
            async with vendor_limit(notifier):
                pass
    assert [e["vendor"] for e in logs] == ["terminal"]
    assert set(limits._known.checked) == {concurrency_name("terminal"), rate_name("terminal")}
    before = dict(limits._known.checked)
    started = time.monotonic()
    async with vendor_limit(notifier):
        pass
    assert limits._known.checked == before and time.monotonic() - started < 1


async def test_a_minute_old_answer_is_looked_up_again_off_the_callers_path(tmp_path: Path):
    """The call that finds the answer a minute old goes ahead on it; the look-up runs
    in the background, and the next call has the server's new answer."""
    notifier = TerminalNotifier(tmp_path / "outbox.jsonl", echo=False)
    async with vendor_limit(notifier):
        pass
    name = concurrency_name("terminal")
    assert limits._known.checked[name][1] is False
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(name, 5)
    stale = time.monotonic() - limits.LOOK_AGAIN_SECONDS - 1
    limits._known.checked[name] = (stale, False)

    assert await limits._known.exists(name) is False  # the last answer, at once
    await limits._known._refreshing[name]
    assert limits._known.checked[name][0] > stale
    assert await limits._known.exists(name) is True


async def test_a_shadow_runs_look_ups_hold_the_real_crms_limits(tmp_path: Path):
    """The recorder that stands in for the CRM in a shadow run reads through the real
    one, so its look-ups count against that vendor's limits, not a "recorder" vendor."""
    settings = make_settings(tmp_path)
    crm = LocalCRM(settings.database_url, EXAMPLES / "crm_seed.json")
    recorder = RecordingCRM(Journal(), "shadow-run", crm)
    with capture_logs() as logs:
        async with vendor_limit(recorder):
            pass
    assert recorder.limits_vendor == "local" == crm.limits_vendor
    assert [e["vendor"] for e in logs] == ["local"]
    assert RecordingCRM(Journal(), "shadow-run", None).limits_vendor == "recorder"  # reads nothing
