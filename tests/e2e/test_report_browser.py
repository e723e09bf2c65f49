"""The HTML report in a real headless Chromium (Debian's `chromium`, driven by
Playwright): the charts render, lead data is shown as text and never runs, and the
page asks the network for nothing."""

from __future__ import annotations

import os
import shutil

import pytest

from leadflow.report_render import as_html
from tests.support.shadow import data_set, decision, record, report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no chromium on this machine (apt-get install -y chromium); CI installs it",
)


async def test_the_report_renders_its_charts_and_escapes_lead_data(tmp_path):
    from playwright.async_api import async_playwright

    rows = data_set()
    rows[6] = record(6, decision("l6", 75), decision("l6", 75, "hot"), email=HOSTILE)
    page_file = tmp_path / "report.html"
    page_file.write_text(as_html(report(rows)), encoding="utf-8")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        await page.goto(page_file.as_uri())
        charts = await page.evaluate(
            """() => [...document.querySelectorAll('[data-chart]')].map(el => ({
                   kind: el.dataset.chart,
                   width: el.getBoundingClientRect().width,
                   bars: [...el.querySelectorAll('rect')]
                       .filter(r => r.getBoundingClientRect().height > 0).length,
                   cells: el.querySelectorAll('td').length}))"""
        )
        pwned = await page.evaluate("() => window.__pwned")
        text = await page.inner_text("body")
        verdict = await page.inner_text("#verdict")
        await browser.close()

    kinds = {c["kind"] for c in charts}
    assert kinds == {"agreement", "latency", "confusion", "timeline"}
    assert all(c["width"] > 100 for c in charts)
    by_kind = {c["kind"]: c for c in charts}
    assert by_kind["agreement"]["bars"] == 2  # two days
    assert by_kind["latency"]["bars"] >= 2  # both sides have bars
    assert by_kind["confusion"]["cells"] == 4  # warm and hot, both ways
    assert next(c for c in charts if c["kind"] == "timeline")["bars"] == 5
    assert pwned is None
    assert HOSTILE in text  # shown as text, not run
    assert verdict == "ready"
    assert requests == [page_file.as_uri()]
