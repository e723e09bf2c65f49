"""`leadflow`'s public surface: every exported name imports, from where the package
says, and type checkers see the same names (the dependency direction it keeps is
checked in test_import_graph.py)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import leadflow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", leadflow.__all__)
def test_every_exported_name_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from leadflow import {name}", namespace)  # as a plug-in writes it
    defined_in = importlib.import_module(leadflow._EXPORTS[name])
    assert namespace[name] is getattr(defined_in, name)
    assert getattr(leadflow, name) is namespace[name]


def test_the_names_type_checkers_see_are_the_exported_ones() -> None:
    """The TYPE_CHECKING imports, `__all__` and the lazy table name the same things."""
    tree = ast.parse((ROOT / "leadflow" / "__init__.py").read_text(encoding="utf-8"))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    seen = {
        alias.name: node.module
        for node in ast.walk(guarded)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == leadflow._EXPORTS
    assert sorted(leadflow.__all__) == sorted(leadflow._EXPORTS)  # each name once


def test_a_name_not_exported_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'process_lead'"):
        _ = leadflow.process_lead  # type: ignore[attr-defined]
    assert set(leadflow.__all__) <= set(dir(leadflow))


def test_importing_the_package_loads_none_of_it() -> None:
    """Names load on first use: `import leadflow` (which every leadflow import runs)
    costs nothing, so `leadflow --help` does not pay for the surface."""
    code = (
        "import sys, leadflow\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('leadflow.'))\n"
        "assert loaded == [], loaded\n"
        "from leadflow import CRM, Lead\n"
        "assert 'leadflow.integrations.base' in sys.modules and 'leadflow.app' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
