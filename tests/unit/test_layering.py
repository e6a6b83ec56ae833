"""The architecture holds: the layers import downwards only, and the core is headless.

The import contract lives in pyproject.toml (``[tool.importlinter]``) and is checked here
with import-linter, so the test suite (and CI, which runs it) enforces it. It reads the
source, so it also sees imports inside functions; the subprocess checks below see what
importing the core really loads.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reproq"
PYPROJECT = ROOT / "pyproject.toml"
_NOT_CORE = {"cli", "tui", "stress", "__main__"}


def _contract_check(contract_id: str) -> str:
    """Run one contract of pyproject.toml; the report when it is broken, else ''."""
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, "
        f"limit_to_contracts=({contract_id!r},), no_cache=True, no_logo=True))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return "" if done.returncode == 0 else done.stdout + done.stderr


def _contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads(PYPROJECT.read_text("utf-8"))
    found: dict[str, object] = next(
        c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == contract_id
    )
    return found


def _top_level_names() -> set[str]:
    return {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }


def test_each_layer_imports_only_the_layers_below_it() -> None:
    report = _contract_check("layers")
    assert not report, report


def test_no_import_circles_between_the_modules_of_a_package() -> None:
    report = _contract_check("acyclic")
    assert not report, report


def test_the_core_never_imports_textual_the_tui_or_the_stress_harness() -> None:
    report = _contract_check("headless")
    assert not report, report


def test_the_headless_contract_covers_every_core_module() -> None:
    sources = _contract("headless")["source_modules"]
    assert isinstance(sources, list)
    expected = {f"reproq.{name}" for name in _top_level_names() - _NOT_CORE}
    assert set(sources) == expected


def _core_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts
        if parts[1:2] in (("tui",), ("stress",)) or parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_core_modules_do_not_import_textual_tui_or_stress() -> None:
    modules = _core_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith("
        "('textual.', 'reproq.tui', 'reproq.stress')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"core imports pulled in: {out}"


def test_the_cli_front_door_stays_headless() -> None:
    code = (
        "import sys, reproq.cli\n"
        "reproq.cli.build_parser()\n"
        "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


def test_at_most_twelve_modules_sit_loose_at_the_top_of_the_package() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 12, f"{len(loose)} modules loose in reproq/: {loose}"
