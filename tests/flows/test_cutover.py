"""Modes on a real Prefect API: the Variable, a switch in the middle of a file, pilot
fallback, and the report flow's artifacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.variables import Variable

from leadflow.app.runtime import use_runtime
from leadflow.failed_effects import HANDED_BACK
from leadflow.flows.cutover import MODE_VARIABLE, ModeError, current_mode, cutover_file, set_mode
from leadflow.flows.report import shadow_report
from leadflow.shadow_settings import ShadowSettings
from leadflow.shadow_store import ComparisonStore
from tests.support.fakes import MemoryNotifier
from tests.support.paths import EXAMPLES

LEGACY = "python:examples.legacy.process:decide"


def first_rows(tmp_path, n: int):
    path = tmp_path / "leads.csv"
    path.write_text("".join(EXAMPLES.joinpath("leads.csv").read_text().splitlines(True)[: n + 1]))
    return path


async def test_the_mode_comes_from_the_variable_else_the_setting(mode_variable, monkeypatch):
    monkeypatch.setenv("LEADFLOW_MODE", "shadow")
    assert await current_mode() == "shadow"
    await set_mode("pilot")
    assert await current_mode() == "pilot"
    await Variable.aset(MODE_VARIABLE, "turbo", overwrite=True)
    with pytest.raises(ModeError, match="leadflow_mode is 'turbo'"):
        await current_mode()
    with pytest.raises(ModeError):
        await set_mode("turbo")


class SwitchingNotifier(MemoryNotifier):
    """Notifies, and flips the mode to `legacy` after the third lead: the operator's
    kill switch, thrown in the middle of a file."""

    async def notify(self, lead, decision, *, idempotency_key):
        await super().notify(lead, decision, idempotency_key=idempotency_key)
        if len(self.sent) == 3:
            await set_mode("legacy")


async def test_a_mode_switch_in_the_middle_of_a_file(mode_variable, make_runtime, tmp_path):
    notifier = SwitchingNotifier()
    runtime = make_runtime(notifier=notifier)
    await set_mode("live")
    with use_runtime(runtime):
        summary = await cutover_file(path=first_rows(tmp_path, 8), concurrency=1, batch_size=1)
    await runtime.aclose()
    assert summary.modes == ["live", "legacy"]
    assert summary.routes == {"leadflow": 3, "current process": 5}
    assert len(notifier.sent) == 3


async def test_a_failing_pilot_lead_falls_back_to_the_current_process(
    mode_variable, make_runtime, tmp_path, monkeypatch
):
    monkeypatch.setenv("LEADFLOW_SHADOW__PILOT_SHARE", "1.0")
    down = RuntimeError("notifier down")
    notifier = MemoryNotifier(failures={"notify_team": [down] * 6})  # bulk, then each
    runtime = make_runtime(notifier=notifier, pipeline={"retries": 0})
    await set_mode("pilot")
    with use_runtime(runtime):
        summary = await cutover_file(path=first_rows(tmp_path, 3), legacy=LEGACY)
    # handed back: the current process notifies; `leadflow replay` must not as well
    handed_back = await runtime.failed_effects.all()
    assert [(f.branch, f.status) for f in handed_back] == [("notify_team", HANDED_BACK)] * 3
    assert await runtime.failed_effects.open() == []
    await runtime.aclose()
    assert summary.routes == {"fallback": 3}
    stored = await ComparisonStore(ShadowSettings().database_url).in_window(
        datetime.now(UTC) - timedelta(hours=1)
    )
    assert [(r.kind, r.fallback) for r in stored] == [("pilot", True)] * 3
    assert all("notifier down" in r.candidate_error for r in stored)
    assert all(r.control is not None for r in stored)  # the current process's answer stands

    result = await shadow_report(out_dir=str(tmp_path / "reports"))
    assert (result.report.pilot_leads, result.report.fallbacks) == (3, 3)
    assert "fallbacks" in {g.name for g in result.report.failed_gates}
    assert (tmp_path / "reports" / "shadow-report.html").exists()
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["shadow-report", "shadow-report-agreement"])
            )
        )
    assert {a.key for a in found} == {"shadow-report", "shadow-report-agreement"}
    assert any(a.type == "table" for a in found)


async def test_pilot_leads_outside_the_share_stay_with_the_current_process(
    mode_variable, make_runtime, tmp_path, monkeypatch
):
    monkeypatch.setenv("LEADFLOW_SHADOW__PILOT_SHARE", "0.5")
    runtime = make_runtime()
    await set_mode("pilot")
    path = first_rows(tmp_path, 10)
    with use_runtime(runtime):
        first = await cutover_file(path=path, legacy=LEGACY)
        again = await cutover_file(path=path, legacy=LEGACY)
    await runtime.aclose()
    assert first.routes == again.routes  # sticky: the same leads in the pilot
    assert set(first.routes) == {"leadflow", "current process"}
    assert sum(first.routes.values()) == 10
