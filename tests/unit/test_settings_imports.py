"""The settings path has no import circles, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "reproq"

# The packages and modules of the settings path: config, the commands, the runtime, db.
CHECKED = ("reproq.config", "reproq.cli", "reproq.runtime", "reproq.db")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every reproq module *name* imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            deps.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target in modules:
                deps.add(target)
            deps.update(
                f"{target}.{alias.name}"
                for alias in node.names
                if f"{target}.{alias.name}" in modules
            )
    deps.discard(name)
    return deps


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_touches_the_settings_path() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    touching = [
        circle
        for circle in _circles(graph)
        if any(m == c or m.startswith(c + ".") for m in circle for c in CHECKED)
    ]
    assert touching == []


# The modules that build settings and run them (the command groups of cli/ are not).
SETTINGS_MODULES = ("reproq.config", "reproq.runtime", "reproq.db", "reproq.cli._common")
SETTINGS_MODULES += ("reproq.cli.worker", "reproq.cli.beat", "reproq.cli.up", "reproq.cli.config")


def test_modules_of_the_settings_path_stay_under_600_lines() -> None:
    long = {
        name: count
        for name, path in _modules().items()
        if any(name == c or name.startswith(c + ".") for c in SETTINGS_MODULES)
        and (count := len(path.read_text(encoding="utf-8").splitlines())) >= 600
    }
    assert long == {}
