"""A stand-in for ``reproq_django.executor``: a minimal, independent implementation of the
executor process contract (``reference/executor-contract.md``), so the tests prove the
worker drives any module that speaks it.

    python -m tests.tasks.contract_executor --result-id N --attempt N --payload-stdin
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback


def main() -> int:
    """Read the spec, run the task, print exactly one JSON envelope on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--result-id", type=int, required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--payload-stdin", action="store_true")
    parser.add_argument("--payload-file")
    parser.add_argument("--payload-json")
    args = parser.parse_args()
    if args.payload_file:
        with open(args.payload_file) as handle:
            raw = handle.read()
    elif args.payload_json:
        raw = args.payload_json
    else:
        raw = sys.stdin.read()
    try:
        spec = json.loads(raw)
        module, _, name = spec["task_path"].rpartition(".")
        func = getattr(importlib.import_module(module), name)
        value = func(*spec.get("args", []), **spec.get("kwargs", {}))
        envelope = {"ok": True, "return": value}
    except Exception as exc:
        envelope = {
            "ok": False,
            "exception_class": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
    sys.stdout.write(json.dumps(envelope) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
