"""`leadflow serve-webhook` stopped as a service manager stops it (SIGTERM: systemd,
Docker, Kubernetes) or from a terminal (Ctrl-C): it stops taking leads, finishes those
in flight, prints its last words on one line, and exits 0 with no traceback. While a
lead-stream flow run is active Prefect owns SIGTERM (its bridge raises
TerminationSignal); the receiver takes it back (leadflow.flows.stream.LeadStream)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import LEADFLOW, cli_env
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


def receiver(workdir: Path, port: int) -> subprocess.Popen:
    env = cli_env(workdir, LEADFLOW_TERMINAL_ECHO="false", COLUMNS="80")  # one line at 80
    log = (workdir / "receiver.log").open("wb")
    return subprocess.Popen(
        [str(LEADFLOW), "serve-webhook", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_the_receiver_stops_cleanly_and_says_what_it_did(tmp_path: Path, sig) -> None:
    port = free_port()
    process = receiver(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "receiver.log"
            ).read_text()
            time.sleep(0.3)
        for i in range(5):
            answer = httpx.post(f"{url}/leads", json={"email": f"stop{i}@acme.test"}, timeout=30)
            assert answer.status_code == 202
        deadline = time.monotonic() + 60
        outbox = tmp_path / "outbox.jsonl"
        while not outbox.exists() or len(outbox.read_text().splitlines()) < 5:
            assert time.monotonic() < deadline, "the leads were not processed"
            time.sleep(0.2)
        os.killpg(process.pid, sig)  # what `systemctl stop` or a terminal's Ctrl-C sends
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    said = (tmp_path / "receiver.log").read_text()
    assert code == 0, said[-3000:]
    assert "Traceback" not in said and "TerminationSignal" not in said, said[-3000:]
    last = [line for line in said.splitlines() if "leads finished" in line]
    assert last and last[-1].startswith("5 leads finished"), said[-2000:]
    assert "stopped: leads not finished are kept in the inbox for the next start" in said
