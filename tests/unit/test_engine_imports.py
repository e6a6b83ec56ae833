"""The engine's and the schedule's modules import each other without a circle.

Which layer may import which is the import contract's (pyproject.toml, checked by
test_layering); a circle inside one layer is this test's.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (ROOT / "reproq" / "engine", ROOT / "reproq" / "schedule")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (TYPE_CHECKING and functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if _is_module(f"{node.module}.{alias.name}")
            )
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for package in PACKAGES for p in package.glob("*.py")}
    return {name: _imports(path) for name, path in modules.items()}


def test_engine_and_schedule_modules_import_each_other_without_a_circle() -> None:
    graph = _graph()
    edges = {
        name: {i for i in imports if i in graph and i != name} for name, imports in graph.items()
    }
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import circle: " + " -> ".join((*path, name))
        if name in done:
            return
        for imported in sorted(edges[name]):
            visit(imported, (*path, name))
        done.add(name)

    for name in sorted(edges):
        visit(name, ())
