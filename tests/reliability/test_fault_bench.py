"""`leadflow bench --faults` in small: every fault kind injected, and the figures it
prints hold: nothing duplicated, nothing lost, the vendor-down failures replayed."""

from __future__ import annotations

import sys

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.usefixtures("prefect_api")

sys.path.insert(0, str(ROOT / "benchmarks"))
from fault_bench import FAULTS, _run, print_figures  # noqa: E402


async def test_the_fault_run_loses_and_duplicates_nothing(tmp_path, capsys) -> None:
    figures = await _run(tmp_path, leads=30, per_kind=1)
    print_figures(figures)
    assert "duplicated 0, lost 0" in capsys.readouterr().out
    assert set(FAULTS) <= set(figures["faults injected"])
    assert figures["faults injected"]["vendor_down"] > 0
    assert figures["leads processed"] == 30 + 2 and figures["leads set aside"] == 1
    assert figures["failed after retries"] == figures["replayed"] == 2
    for counted in (figures["notifications"], figures["events"]):
        assert counted["duplicated"] == 0 and counted["lost"] == 0
        assert counted["done once"] == 32
        assert counted["retries spent"] > 0
