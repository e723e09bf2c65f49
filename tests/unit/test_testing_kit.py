"""The contract kit's own instrument: `no_io` sees what building an adapter must not do."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from leadflow.testing import no_io


def test_no_io_sees_connections_processes_databases_and_writes(tmp_path: Path) -> None:
    readable = tmp_path / "settings.toml"
    readable.write_text("x = 1")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with no_io() as seen, socket.socket() as client:
            readable.read_text()  # reading settings is allowed
            client.connect(listener.getsockname())
            sqlite3.connect(tmp_path / "x.db").close()
            (tmp_path / "out.txt").write_text("x")
            subprocess.run([sys.executable, "-c", "pass"], check=True)
    kinds = [entry.split()[0] for entry in seen]
    assert kinds == ["connects", "opens", "writes", "starts"], seen


def test_no_io_watches_only_its_own_thread_and_block(tmp_path: Path) -> None:
    with no_io() as seen:
        pass
    (tmp_path / "after.txt").write_text("x")
    assert seen == []
