"""Tasks that report how they were run (which entry point, which interpreter)."""

from __future__ import annotations

import sys


def how_run() -> dict[str, str]:
    """The module run as ``__main__`` and the interpreter of the process running the task
    (also said on stderr, so the attempt has output to log)."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    found = {"main": spec.name if spec is not None else "", "python": sys.executable}
    print(f"how_run: {found}", file=sys.stderr)
    return found
