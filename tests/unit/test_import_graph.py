"""Dependencies point one way: app -> flows -> integrations -> core.

Read from the source with `ast`, so an import inside a function counts as much as one
at the top of a module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# folder -> the leadflow packages its modules must not import
FORBIDDEN = {
    "leadflow": ("leadflow.app", "leadflow.flows", "leadflow.integrations"),
    "integrations": ("leadflow.app", "leadflow.flows"),
}

# The adapter contract kit tests adapters, so it imports their interfaces; it sits in
# the core folder only for its import name. Nothing but tests imports it (checked below).
# The package's __init__ is the public surface: it names classes of every layer, loaded
# lazily, and is held to its own rules (test_the_public_surface_*, below).
FACADE = ROOT / "leadflow" / "__init__.py"
EXEMPT = {ROOT / "leadflow" / "testing.py", FACADE}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    return imports_in(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))


def imports_in(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from leadflow import flows` reaches the package too
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_import_points_up(folder: str) -> None:
    forbidden = FORBIDDEN[folder]
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / folder).glob("*.py"))
        if path not in EXEMPT
        for line, module in imported_modules(path)
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    ]
    assert upward == []


def test_the_folders_are_the_namespaced_packages() -> None:
    import leadflow.app
    import leadflow.flows
    import leadflow.integrations

    assert Path(leadflow.app.__file__).parent == ROOT / "app"
    assert Path(leadflow.flows.__file__).parent == ROOT / "flows"
    assert Path(leadflow.integrations.__file__).parent == ROOT / "integrations"


# The test kits: the adapter contract kit, the loopback stub vendor, the kill trials'
# machinery. Tests and benchmarks import them; the product does not.
KITS = ("leadflow.testing", "leadflow.loopback_vendor", "leadflow.kill_trials")
KIT_FILES = {ROOT / "leadflow" / f"{kit.removeprefix('leadflow.')}.py" for kit in KITS}


def test_only_tests_import_the_contract_kit() -> None:
    """leadflow.testing imports pytest, and the other kits start servers and processes:
    nothing a worker runs may import them (a kit may import another)."""
    importers = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for folder in ("leadflow", "integrations", "flows", "app")
        for path in sorted((ROOT / folder).glob("*.py"))
        if path != FACADE  # for type checkers only: test_the_public_surface_imports_...
        if path not in KIT_FILES
        for line, module in imported_modules(path)
        if any(module == kit or module.startswith(kit + ".") for kit in KITS)
    ]
    assert importers == []


def test_the_command_line_runs_without_pytest() -> None:
    """The installed package needs no test tools: the command line and every flow
    import with pytest made unimportable."""
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "import leadflow.app.cli, leadflow.flows.lead, leadflow.flows.engine\n"
        "assert 'leadflow.testing' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_the_public_surface_imports_no_layer_when_loaded() -> None:
    """Its imports of the layers above the core (and of the contract kit) are for type
    checkers only (under TYPE_CHECKING); at run time it loads a name's module when the
    name is first used."""
    tree = ast.parse(FACADE.read_text(encoding="utf-8"))
    runtime = [
        node
        for node in tree.body
        if not (isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    ]
    upward = [
        f"line {line} imports {module}"
        for node in runtime
        for line, module in imports_in(node)
        if module.startswith(
            ("leadflow.app", "leadflow.flows", "leadflow.integrations", "leadflow.testing")
        )
    ]
    assert upward == []


def test_the_core_loads_without_the_layers_above_it() -> None:
    """Importing the package, or any core module through it, loads neither the flows,
    the adapters, the CLI nor Prefect: the direction holds at run time too."""
    code = (
        "import sys, leadflow, leadflow.models, leadflow.settings, leadflow.decide\n"
        "up = [m for m in sys.modules if m.startswith(('leadflow.app', 'leadflow.flows',"
        " 'leadflow.integrations', 'prefect'))]\n"
        "assert up == [], up"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_no_module_imports_through_the_public_surface() -> None:
    """`from leadflow import Name` is for plug-ins and users: inside leadflow it would
    let the core reach the layers above it through the package."""
    import leadflow

    through = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for folder in ("leadflow", "integrations", "flows", "app")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != FACADE
        for line, module in imported_modules(path)
        if module.startswith("leadflow.") and module.removeprefix("leadflow.") in leadflow.__all__
    ]
    assert through == []
