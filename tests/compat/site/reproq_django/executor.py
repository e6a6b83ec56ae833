"""``python -m reproq_django.executor``: the executor contract, via the tests' own
implementation (``tests.tasks.contract_executor``)."""

from __future__ import annotations

import sys

from tests.tasks.contract_executor import main

if __name__ == "__main__":
    sys.exit(main())
