"""Dependencies point one way: app -> flows -> integrations -> core.

Read from the source with `ast`, so an import inside a function counts as much as one
at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# folder -> the leadflow packages its modules must not import
FORBIDDEN = {
    "leadflow": ("leadflow.app", "leadflow.flows", "leadflow.integrations"),
    "integrations": ("leadflow.app", "leadflow.flows"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
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
