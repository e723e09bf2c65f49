"""What `pip install` puts on a machine: leadflow itself, and the plug-in of the
adapter guide (docs/how-to/write-an-adapter.md, examples/plugin/).

Both install offline into a throwaway folder (`pip install --no-deps
--no-build-isolation --target DIR`, run with PYTHONPATH=DIR): the project's .venv is
not changed, and nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
PLUGIN = ROOT / "examples" / "plugin" / "leadflow-acme"


def pip_install(source: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip


def clean_env(site: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LEADFLOW_"))}
    env.update(
        PYTHONPATH=str(site),
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
    )
    return env


def test_pip_install_adds_one_top_level_package(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building in place would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("leadflow", "app", "flows", "integrations"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    site = tmp_path / "site"
    pip_install(source, site)
    top = sorted(p.name for p in site.iterdir())
    assert [n for n in top if not n.endswith(".dist-info") and n != "bin"] == ["leadflow"]
    assert [n for n in top if n.endswith(".dist-info")] == ["leadflow-0.1.0.dist-info"]
    subpackages = {p.name for p in (site / "leadflow").iterdir() if (p / "__init__.py").exists()}
    assert {"app", "flows", "integrations"} <= subpackages
    assert (site / "leadflow" / "testing.py").exists()


def plugin_files() -> dict[str, str]:
    """The example plug-in's files, by their path in its folder."""
    return {
        str(p.relative_to(PLUGIN)): p.read_text(encoding="utf-8")
        for p in PLUGIN.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    }


def test_the_adapter_guide_shows_the_example_folder() -> None:
    """The guide includes each file of the example plug-in as it is (the site build
    fails on a missing include), so what it shows is what this test installs."""
    guide = (ROOT / "docs" / "how-to" / "write-an-adapter.md").read_text(encoding="utf-8")
    included = set(re.findall(r'--8<-- "examples/plugin/leadflow-acme/([^"]+)"', guide))
    assert (
        included
        == set(plugin_files())
        == {
            "pyproject.toml",
            "src/leadflow_acme/__init__.py",
            "tests/test_contract.py",
        }
    )


def test_the_example_plugin_installs_lists_and_passes_the_kit(tmp_path: Path) -> None:
    plugin = tmp_path / "leadflow-acme"
    for name, text in plugin_files().items():
        (plugin / name).parent.mkdir(parents=True, exist_ok=True)
        (plugin / name).write_text(text, encoding="utf-8")
    site = tmp_path / "site"
    pip_install(plugin, site)
    env = clean_env(site, tmp_path / "prefect-home")

    listed = subprocess.run(
        [str(BIN / "leadflow"), "adapters"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if " acme " in line)
    assert "notifier" in row and "leadflow_acme:AcmeNotifier" in row and "yes" in row

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=plugin, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    summary = tests.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 8 and "failed" not in summary and "error" not in summary, summary
    # the adapter under test is the installed one, not the source folder's
    assert not (plugin / "leadflow_acme").exists()
