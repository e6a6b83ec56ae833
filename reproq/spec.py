"""Task specs: the JSON stored in ``task_runs.spec_json``, its canonical form and hash.

The shape, argument encoding, canonical JSON and hash follow reproq-django's contract
(``reference/executor-contract.md``) byte for byte, so both sides compute the same
``spec_hash`` and the unique active-spec index deduplicates across them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from reproq.errors import InvalidSpec

SPEC_VERSION = 1
"""The ``v`` field of every spec this version writes."""

DEFAULT_TIMEOUT_SECONDS = 900
DEFAULT_MAX_ATTEMPTS = 3

JSONValue = Any
"""A value made only of dict, list, str, int, float, bool and None."""


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(obj: JSONValue) -> str:
    """Keys sorted at every level, no spaces, non-ASCII kept as UTF-8."""
    # One shared encoder: json.dumps would build a new one per call for these options.
    return _CANONICAL.encode(obj)


def spec_hash(spec: JSONValue) -> str:
    """Lowercase hex SHA-256 of the canonical JSON's UTF-8 bytes."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()


_PLAIN = frozenset({str, int, bool, type(None)})
"""Exact types that encode as themselves (floats need their finiteness checked)."""


def encode_value(value: Any, *, where: str = "args") -> JSONValue:
    """Encode one task argument the way reproq-django does, so both sides hash alike.

    Its encoder is Django's ``DjangoJSONEncoder`` after tagging timedeltas and model
    instances: datetimes become ISO 8601 cut to milliseconds, with ``Z`` for a zero UTC
    offset (``2025-05-05T01:02:03.456Z``); dates ISO 8601; naive times ISO 8601 cut to
    milliseconds; Decimal, UUID and Django's lazy strings their ``str``; tuples lists;
    timedeltas and Django model instances tagged objects (the model's primary key as a
    string). Anything else that JSON cannot hold raises :class:`InvalidSpec` naming where
    in the arguments it was found, as do timezone-aware times and dict keys that are not
    strings (reproq-django's encoder fails on the former and sorts the latter as numbers,
    so no string-keyed spec could hash the same).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidSpec(f"{where}: {value!r} is not valid JSON")
        return value
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidSpec(f"{where}: dict key {key!r} is not a string")
            # Plain items are taken as they are: most arguments are, and the path named
            # in errors is only built for the values that need a closer look.
            out[key] = item if type(item) in _PLAIN else encode_value(item, where=f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [
            item if type(item) in _PLAIN else encode_value(item, where=f"{where}[{i}]")
            for i, item in enumerate(value)
        ]
    # Model instances first, as reproq-django checks them: a model is never a date.
    meta = getattr(value, "_meta", None)
    if meta is not None and hasattr(value, "pk"):
        if value.pk is None:
            raise InvalidSpec(f"{where}: a model instance without a primary key cannot be sent")
        return {
            "__reproq_type__": "model",
            "app_label": meta.app_label,
            "model": meta.model_name,
            "pk": str(value.pk),
        }
    if isinstance(value, dt.timedelta):
        return {
            "__reproq_type__": "timedelta",
            "days": value.days,
            "seconds": value.seconds,
            "microseconds": value.microseconds,
        }
    if isinstance(value, dt.datetime):
        return _encode_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        if value.utcoffset() is not None:
            raise InvalidSpec(f"{where}: a timezone-aware time {value!r} cannot be sent as JSON")
        text = value.isoformat()
        return text[:12] if value.microsecond else text
    if isinstance(value, Decimal | uuid.UUID) or _is_lazy_string(value):
        return str(value)
    raise InvalidSpec(f"{where}: cannot encode {type(value).__name__} value {value!r} as JSON")


def _encode_datetime(value: dt.datetime) -> str:
    """ISO 8601 with milliseconds (not microseconds) and ``Z`` for a zero UTC offset."""
    text = value.isoformat()
    if value.microsecond:
        # "YYYY-MM-DDTHH:MM:SS.ffffff" is 26 characters; the offset (if any) follows.
        text = text[:23] + text[26:]
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


def _is_lazy_string(value: Any) -> bool:
    """A Django lazy translation string (``gettext_lazy``), found without importing Django."""
    return any(
        cls.__name__ == "Promise" and cls.__module__ == "django.utils.functional"
        for cls in type(value).__mro__
    )


def build_spec(
    task_path: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue_name: str = "default",
    priority: int = 0,
    lock_key: str | None = None,
    concurrency_key: str | None = None,
    concurrency_limit: int = 0,
    run_after: dt.datetime | None = None,
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    takes_context: bool = False,
    code_ref: str | None = None,
    pip_lock_hash: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, JSONValue]:
    """The reproq-django spec for one task run (``extra`` adds keys such as ``periodic_name``)."""
    validate_task_path(task_path)
    private = private_part(task_path)
    if private is not None:
        raise InvalidSpec(
            f"task path {task_path!r} names the private {private!r}: workers only run public names"
        )
    if run_after is not None and run_after.tzinfo is None:
        raise InvalidSpec("run_after must be timezone-aware")
    encoded_args, encoded_kwargs = encode_call(args, kwargs)
    spec: dict[str, JSONValue] = {
        "v": SPEC_VERSION,
        "task_path": task_path,
        "args": encoded_args,
        "kwargs": encoded_kwargs,
        "takes_context": takes_context,
        "queue_name": queue_name,
        "priority": priority,
        "lock_key": lock_key,
        "concurrency_key": concurrency_key,
        "concurrency_limit": concurrency_limit,
        "run_after": run_after.isoformat() if run_after is not None else None,
        "exec": {"timeout_seconds": timeout_seconds, "max_attempts": max_attempts},
        "provenance": {"code_ref": code_ref, "pip_lock_hash": pip_lock_hash},
    }
    for key, value in (extra or {}).items():
        if key in spec:
            raise InvalidSpec(f"extra spec key {key!r} would overwrite a standard field")
        spec[key] = encode_value(value, where=key)
    return spec


def encode_call(
    args: Sequence[Any], kwargs: Mapping[str, Any] | None
) -> tuple[list[JSONValue], dict[str, JSONValue]]:
    """A call's ``args`` and ``kwargs`` as the spec holds them (:func:`encode_value`)."""
    encoded_kwargs = _encode_arguments(dict(kwargs), "kwargs") if kwargs else {}
    return _encode_arguments(list(args), "args"), encoded_kwargs


def _encode_arguments(value: Any, where: str) -> Any:
    try:
        return encode_value(value, where=where)
    except RecursionError:
        raise InvalidSpec(f"{where} are nested too deeply to store") from None


def unencodable_part(spec: Mapping[str, Any]) -> str | None:
    """Where in ``spec`` a string holds a lone surrogate, which UTF-8 (and so PostgreSQL)
    cannot hold: ``"args[0]: a lone surrogate '\\ud800'"``; None if there is none."""
    # Depth first, in order: the first bad string is the one reported.
    stack: list[tuple[str, Any]] = [
        (str(key), value) for key, value in reversed(list(spec.items()))
    ]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"{where}: a lone surrogate {value[exc.start]!r}"
        elif isinstance(value, Mapping):
            stack.extend((f"{where}.{key}", item) for key, item in reversed(list(value.items())))
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None


def validate_task_path(task_path: str) -> None:
    """A task path is a dotted ``module.function`` made of identifiers.

    Paths that pass are remembered (:func:`is_checked_task_path`): an application has a
    few task paths and enqueues and runs them many times.
    """
    if isinstance(task_path, str) and task_path in _CHECKED_PATHS:
        return
    parts = task_path.split(".") if isinstance(task_path, str) else []
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise InvalidSpec(
            f"task path {task_path!r} is not a dotted path like 'myapp.tasks.send_email'"
        )
    if len(_CHECKED_PATHS) >= _CHECKED_PATHS_MAX:
        _CHECKED_PATHS.clear()  # many distinct paths: start over rather than grow
    _CHECKED_PATHS.add(task_path)


def is_checked_task_path(task_path: str) -> bool:
    """Whether ``task_path`` already passed :func:`validate_task_path` (a set lookup)."""
    return task_path in _CHECKED_PATHS


# The one cache of valid task paths, shared by producers and the worker's spec check.
_CHECKED_PATHS: set[str] = set()
_CHECKED_PATHS_MAX = 10_000


def private_part(task_path: str) -> str | None:
    """The first part of a dotted path that starts with ``_``, if any.

    Such a path never names a task: private and dunder names are how a path would reach
    what its module only uses (``_os``, ``__globals__``, ``__builtins__``).
    """
    if not (task_path.startswith("_") or "._" in task_path):
        return None
    return next(part for part in task_path.split(".") if part.startswith("_"))


MAX_KEY_BYTES = 1024
"""The longest ``lock_key`` / ``concurrency_key`` accepted, in bytes of UTF-8.

PostgreSQL's B-tree indexes hold at most ~2,700 bytes per entry. reproq indexes these keys
by their hash (migration 0006), but a table created by reproq-django indexes
``(concurrency_key, status)`` as it is, and a key near that size would make a status
change of its row fail. Real keys are short names and ids; 1 KiB leaves room for any of
them while staying far from the index limit.
"""


def key_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the ``name`` key (``lock_key`` / ``concurrency_key``), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{name} must be a string, got {type(value).__name__}"
    if len(value) * 4 <= MAX_KEY_BYTES:
        return None  # short enough whatever its characters
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size <= MAX_KEY_BYTES:
        return None
    return f"{name} {_preview(value)} is {size} bytes, over the {MAX_KEY_BYTES}-byte limit for keys"


def check_keys(lock_key: object, concurrency_key: object) -> None:
    """Raise :class:`InvalidSpec` naming the key when either key is not a usable key."""
    for name, value in (("lock_key", lock_key), ("concurrency_key", concurrency_key)):
        problem = key_problem(name, value)
        if problem is not None:
            raise InvalidSpec(problem)


def _preview(text: str, chars: int = 24) -> str:
    return repr(text) if len(text) <= chars else repr(text[:chars]) + "…"


def parse_spec(raw: Any, *, result_id: int | None = None) -> dict[str, JSONValue]:
    """Validate a stored spec (a dict, or JSON text) and return it as a dict.

    Raises :class:`InvalidSpec` naming the task id and the problem.
    """
    where = f"task {result_id}: " if result_id is not None else ""
    spec = raw
    if isinstance(raw, str | bytes):
        try:
            spec = json.loads(raw)
        except ValueError as exc:
            raise InvalidSpec(f"{where}spec_json is not valid JSON: {exc}") from exc
        except RecursionError:
            raise InvalidSpec(f"{where}spec_json is nested too deeply to read") from None
    if not isinstance(spec, dict):
        raise InvalidSpec(f"{where}spec_json must be an object, got {type(spec).__name__}")
    task_path = spec.get("task_path")
    if not isinstance(task_path, str):
        raise InvalidSpec(f"{where}spec_json has no string task_path")
    try:
        validate_task_path(task_path)
    except InvalidSpec as exc:
        raise InvalidSpec(f"{where}{exc}") from exc
    if not isinstance(spec.get("args", []), list):
        raise InvalidSpec(f"{where}spec_json.args must be a list")
    if not isinstance(spec.get("kwargs", {}), dict):
        raise InvalidSpec(f"{where}spec_json.kwargs must be an object")
    return spec
