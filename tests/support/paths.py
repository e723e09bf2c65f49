"""Where the tests find the project's files: the checkout and its examples/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


PREFECT_FILE = ROOT / "deployments" / "prefect.yaml"
