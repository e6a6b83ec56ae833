"""Tasks that report how they were run (which entry point, which interpreter)."""

from __future__ import annotations

import sys


def how_run() -> dict[str, str]:
    """The module run as ``__main__`` and the interpreter of the process running the task."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return {"main": spec.name if spec is not None else "", "python": sys.executable}
