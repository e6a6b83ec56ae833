"""``python -m reproq.executor``: the entry point of the subprocess executor contract.

The contract (``reference/executor-contract.md``) names this module, so its path stays
stable; the implementation is :mod:`reproq.executors.contract`.
"""

from __future__ import annotations

from reproq.executors.contract import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
