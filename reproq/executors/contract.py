"""Run one task attempt in this process and report it as a JSON envelope on stdout.

This is the executor module of the process contract (``reference/executor-contract.md``)::

    python -m reproq.executor --result-id 42 --attempt 1 --payload-stdin < spec.json

It reads the spec (from stdin, a file or the command line), imports ``task_path``, calls
it with ``args``/``kwargs`` and writes exactly one line to stdout:
``{"ok": true, "return": ...}`` or
``{"ok": false, "exception_class": ..., "message": ..., "traceback": ...}``.
Whatever the task prints, at Python or C level, goes to stderr, so it can never corrupt
the envelope. The process exits 0 once an envelope is written; a non-zero exit without
an envelope means the module itself could not run (bad arguments, refused payload mode).

The helpers :func:`resolve_task`, :func:`call_task` and :func:`failure_envelope` are shared
with the long-lived children of the ``process`` executor.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from types import FrameType, ModuleType
from typing import Any

from reproq.context import TaskContext, enter, leave
from reproq.errors import TaskNotAllowed
from reproq.models import ErrorKind

PRODUCTION_ENV = "REPROQ_PRODUCTION"
"""Environment variable that marks a production deployment (``1``/``true``/``yes``/``on``)."""
WORKER_ID_ENV = "REPROQ_WORKER_ID"
"""Set by the subprocess executor: the id of the worker running this attempt."""

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def production_mode(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``REPROQ_PRODUCTION`` is set to a true word."""
    value = (os.environ if environ is None else environ).get(PRODUCTION_ENV, "")
    return value.strip().lower() in _TRUE_WORDS


def exception_class_name(exc_type: type[BaseException]) -> str:
    """``ValueError`` for builtins, ``package.module.Error`` for everything else."""
    if exc_type.__module__ == "builtins":
        return exc_type.__qualname__
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def failure_envelope(exc: BaseException, *, message: str | None = None) -> dict[str, Any]:
    """The failure envelope for an exception (``message`` overrides ``str(exc)``).

    A refused task path adds ``"kind": "security_violation"`` so the worker records it
    as such (never retried) instead of as the task's own error.
    """
    envelope = {
        "ok": False,
        "exception_class": exception_class_name(type(exc)),
        "message": _describe(exc) if message is None else message,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if isinstance(exc, TaskNotAllowed):
        envelope["kind"] = str(ErrorKind.SECURITY_VIOLATION)
    return envelope


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not lose the failure itself
        return repr(type(exc))


def resolve_task(task_path: str) -> Callable[..., Any]:
    """Import the callable named by a dotted path such as ``myapp.tasks.send_email``.

    The longest importable module prefix is imported and the rest is looked up in it, so
    ``pkg.mod.Class.method`` works too. The worker checks the path, as text, against its
    allow-list; so that the check holds for what actually runs, resolution never leaves
    the module the path names. :class:`~reproq.errors.TaskNotAllowed` is raised when

    - a part starts with ``_`` (private names, ``__globals__``/``__builtins__`` chains);
    - a name after the module is another module (``reproq.demo.logging.os.system``), or an
      object that is not a class defined in the module (only classes are looked into);
    - the callable is not defined in that module (``__module__``): a name the module
      imported, such as ``from os import system``, is not one of its tasks.

    A missing module or attribute, or one that is not callable, raises
    :class:`ImportError` naming the task.
    """
    parts = task_path.split(".")
    if len(parts) < 2 or not all(parts):
        raise ImportError(f"task path {task_path!r} is not a dotted path like 'pkg.module.func'")
    private = next((part for part in parts if part.startswith("_")), None)
    if private is not None:
        raise TaskNotAllowed(
            f"task {task_path!r} names the private name {private!r}: only public names run"
        )
    module, split = _import_longest_prefix(task_path, parts)
    module_name = ".".join(parts[:split])
    if not isinstance(module, ModuleType) or module.__name__ != module_name:
        raise TaskNotAllowed(f"task {task_path!r}: {module_name!r} is not a module of that name")
    obj: Any = module
    tail = parts[split:]
    for i, attr in enumerate(tail):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise ImportError(
                f"cannot import task {task_path!r}: {'.'.join(parts[: split + i])!r} "
                f"has no attribute {attr!r}",
                name=task_path,
            ) from exc
        if isinstance(obj, ModuleType):
            raise TaskNotAllowed(
                f"task {task_path!r}: {attr!r} is a module imported by {module_name!r}, "
                "not a task defined in it"
            )
        last = i == len(tail) - 1
        if last and not callable(obj):
            raise ImportError(f"task {task_path!r} is a {type(obj).__name__}, not a callable")
        if not last and not isinstance(obj, type):
            raise TaskNotAllowed(
                f"task {task_path!r}: {attr!r} is a {type(obj).__name__}; only classes "
                f"defined in {module_name!r} are looked into"
            )
        defined_in = getattr(obj, "__module__", None)
        if defined_in != module_name:
            raise TaskNotAllowed(
                f"task {task_path!r}: {attr!r} is defined in {defined_in!r}, not in "
                f"{module_name!r}; enqueue it by the path of the module that defines it"
            )
    return obj  # type: ignore[no-any-return]


def _import_longest_prefix(task_path: str, parts: list[str]) -> tuple[Any, int]:
    """The module of the longest importable prefix of ``parts`` and how many parts it spans."""
    first_missing: ModuleNotFoundError | None = None
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            return importlib.import_module(module_name), split
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            # Only a missing prefix of the path means "try a shorter module"; a missing
            # import *inside* the task's module is the task's own error.
            if missing and (module_name == missing or module_name.startswith(missing + ".")):
                first_missing = first_missing or exc
                continue
            raise
    raise ImportError(
        f"cannot import task {task_path!r}: {first_missing}", name=task_path
    ) from first_missing


class _NotCancelled:
    """Child processes are stopped by signals, not by polling: never "cancelled" here."""

    def is_set(self) -> bool:
        return False


def call_task(
    task_path: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    context: TaskContext | None = None,
) -> str:
    """Import and call a task; return its envelope as one line of JSON. Never raises.

    A coroutine function is run to completion with :func:`asyncio.run`. The return value
    is encoded here (NaN and infinities refused), so a value that cannot be stored fails
    the attempt with a clear message instead of breaking the caller.
    """
    saved = enter(context, _NotCancelled()) if context is not None else None
    try:
        func = resolve_task(task_path)
        value = func(*args, **kwargs)
        if inspect.iscoroutine(value):
            import asyncio  # only for coroutine tasks: it costs a fresh interpreter ~50 ms

            value = asyncio.run(value)
    except BaseException as exc:  # a task failing in any way, SystemExit included, is a result
        return envelope_json(failure_envelope(exc))
    finally:
        if saved is not None:
            leave(saved)
    try:
        return envelope_json({"ok": True, "return": value})
    except (TypeError, ValueError, RecursionError) as exc:
        return envelope_json(
            {
                "ok": False,
                "exception_class": "TypeError",
                "message": (
                    f"return value of {task_path} is not JSON-serialisable "
                    f"({type(value).__name__}): {exc}"
                ),
                "traceback": None,
            }
        )


def envelope_json(envelope: Mapping[str, Any]) -> str:
    """One line of ASCII JSON (non-ASCII escaped, so the reader's locale never matters)."""
    return json.dumps(envelope, allow_nan=False, separators=(",", ":"))


def _divert_stdout() -> int:
    """Point fd 1 and ``sys.stdout`` at stderr; return a private duplicate of the real stdout.

    Done at fd level as well so output from C extensions and child processes that
    inherit fd 1 cannot interleave with the envelope.
    """
    sys.stdout.flush()
    real = os.dup(1)
    os.set_inheritable(real, False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return real


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reproq.executor",
        description="Run one task attempt and print its result envelope as JSON on stdout.",
    )
    parser.add_argument("--result-id", type=int, required=True, help="task_runs.result_id")
    parser.add_argument("--attempt", type=int, required=True, help="1-based attempt number")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--payload-stdin", action="store_true", help="read the spec from stdin")
    source.add_argument("--payload-file", metavar="PATH", help="read the spec from a file")
    source.add_argument(
        "--payload-json", metavar="JSON", help="the spec inline (refused in production)"
    )
    return parser


def _read_payload(args: argparse.Namespace) -> bytes | str:
    if args.payload_stdin:
        return sys.stdin.buffer.read()
    if args.payload_file is not None:
        with open(args.payload_file, "rb") as handle:
            return handle.read()
    payload: str = args.payload_json
    return payload


def _run_payload(raw: bytes | str, result_id: int, attempt: int) -> str:
    # Imported late: the spec module is only needed once there is a payload to check.
    from reproq.errors import InvalidSpec
    from reproq.spec import parse_spec

    try:
        spec = parse_spec(raw, result_id=result_id)
    except InvalidSpec as exc:
        return envelope_json(failure_envelope(exc))
    context = TaskContext(
        result_id=result_id,
        attempt=attempt,
        worker_id=os.environ.get(WORKER_ID_ENV, ""),
        task_path=spec["task_path"],
    )
    return call_task(
        spec["task_path"], spec.get("args", []), spec.get("kwargs", {}), context=context
    )


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    # The worker sends SIGTERM, then SIGKILL after a grace period; as SystemExit the
    # task's finally blocks and context managers get to run in between.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m reproq.executor``; returns the exit status."""
    signal.signal(signal.SIGTERM, _exit_on_term)
    real_stdout = _divert_stdout()
    args = _parser().parse_args(argv)
    if args.payload_json is not None and production_mode():
        print(
            "reproq.executors.contract: refusing --payload-json in production "
            f"({PRODUCTION_ENV} is set): an inline payload is visible in the process list; "
            "use --payload-stdin or --payload-file",
            file=sys.stderr,
        )
        return 2
    try:
        raw = _read_payload(args)
    except OSError as exc:
        line = envelope_json(failure_envelope(exc, message=f"cannot read the payload: {exc}"))
    else:
        line = _run_payload(raw, args.result_id, args.attempt)
    sys.stderr.flush()
    _write_all(real_stdout, (line + "\n").encode("ascii"))
    os.close(real_stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
