"""The package stays in pieces a reader can hold: no module over 600 lines, and few loose
modules at the top of ``reproq/`` (the rest sit in packages named after their layer)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "reproq"
MAX_LINES = 600
MAX_TOP_LEVEL_MODULES = 12


def test_no_module_is_longer_than_600_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_at_most_12_modules_sit_loose_at_the_top_of_the_package() -> None:
    loose = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(loose) <= MAX_TOP_LEVEL_MODULES, loose
