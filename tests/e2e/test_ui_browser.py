"""The Prefect UI as a user sees it: a real `prefect server start` on a free port (its
UI told where its API is with PREFECT_UI_API_URL), `leadflow lead` run against it in a
subprocess, then the run page and its Decision artifact opened in headless Chromium.

Needs Debian's `chromium` (`.ci/run` installs it) and the `playwright` package (the dev
extra); it drives the system browser, so `playwright install` is never needed. Outside
CI the test skips, saying why, when either is missing. Screenshots go to
LEADFLOW_SCREENSHOT_DIR when set (else the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EMAIL = "ada@analytical.test"
COMPANY = "<b>Analytical</b> | Engines"


def _require(ok: bool, why: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI must run this test: see .ci/run)")
        pytest.skip(why)


def _get(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free port, with its own home; stopped afterwards."""
    port = free_port()
    home = tmp_path_factory.mktemp("ui-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
    )
    prefect = Path(sys.executable).parent / "prefect"
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(f"{base}/api/health") is True:
                    break
            except OSError:
                pass
            assert server.poll() is None, (home / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prefect server did not become healthy"
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM is not None, "chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_the_run_page_and_the_decision_artifact_render_in_a_browser(
    browser, prefect_server, tmp_path_factory
):
    shots = Path(os.environ.get("LEADFLOW_SCREENSHOT_DIR") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    workdir = tmp_path_factory.mktemp("ui-lead")
    lead = {"email": EMAIL, "title": "CTO", "country": "US", "company": COMPANY}
    done = run_cli(workdir, "lead", json.dumps(lead), PREFECT_API_URL=f"{prefect_server}/api")
    assert done.returncode == 0, done.stderr[-3000:]

    # the command line names this server's UI, not the default port
    link = re.search(r"This run in the Prefect UI: (\S+)", done.stdout)
    assert link, done.stdout[-1000:]
    run_url = link.group(1)
    assert run_url.startswith(f"{prefect_server}/runs/flow-run/")
    run_id = run_url.rsplit("/", 1)[1]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(run_url)
    page.get_by_text(f"notify-team {EMAIL}").first.wait_for(timeout=60_000)
    assert EMAIL in page.title()
    for tag in ("mode:live", "source:unknown"):
        assert page.get_by_text(tag, exact=True).first.is_visible()
    page.get_by_text(re.compile(rf"^team notified lead={re.escape(EMAIL)} rep=")).first.wait_for()
    page.screenshot(path=str(shots / "lead-run.png"), full_page=True)

    (artifact,) = _get(
        f"{prefect_server}/api/artifacts/filter", {"flow_runs": {"id": {"any_": [run_id]}}}
    )
    assert artifact["key"].startswith("decision-")
    page.goto(f"{prefect_server}/artifacts/artifact/{artifact['id']}")
    page.get_by_role("heading", name=f"Decision for {EMAIL}").wait_for(timeout=60_000)
    decision = page.locator("table").first
    text = decision.inner_text()
    for field in ("score", "tier", "follow-up", "due", "rep", "chosen by"):
        assert re.search(rf"^{field}\t", text, flags=re.MULTILINE), (field, text)
    # the company is shown as the text it is: no bold element, no extra column
    company_row = decision.locator("tr", has_text="company")
    assert company_row.locator("td").nth(1).inner_text() == COMPANY
    assert decision.locator("b").count() == 0
    assert page.get_by_role("heading", name=re.compile(r"^Score: \d+ points$")).is_visible()
    assert page.get_by_role("heading", name="Side effects").is_visible()
    page.screenshot(path=str(shots / "decision-artifact.png"), full_page=True)
    page.close()
