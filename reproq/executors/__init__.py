"""Executors by name: ``thread``, ``process``, ``subprocess`` and ``mock``.

:func:`make_executor` builds one from its name and an options mapping (the keyword
arguments of its class). Classes are imported only when asked for, so a worker using the
``thread`` executor never loads the process machinery.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, cast

from reproq.errors import ConfigError
from reproq.executors.base import CancelCheck, Executor, Outcome, TaskCall

__all__ = ["EXECUTOR_NAMES", "CancelCheck", "Executor", "Outcome", "TaskCall", "make_executor"]

_CLASSES: dict[str, tuple[str, str]] = {
    "thread": ("reproq.executors.thread", "ThreadExecutor"),
    "process": ("reproq.executors.process", "ProcessExecutor"),
    "subprocess": ("reproq.executors.subprocess", "SubprocessExecutor"),
    "mock": ("reproq.executors.mock", "MockExecutor"),
}

EXECUTOR_NAMES: tuple[str, ...] = tuple(_CLASSES)
"""Every executor name :func:`make_executor` accepts."""


def make_executor(name: str, options: Mapping[str, Any] | None = None) -> Executor:
    """A new executor ``name`` built as ``Class(**options)``.

    Raises :class:`~reproq.errors.ConfigError` for an unknown name or options the class
    does not take.
    """
    try:
        module_name, class_name = _CLASSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown executor {name!r}; choose one of {', '.join(EXECUTOR_NAMES)}",
            key="executor",
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cast(Executor, cls(**dict(options or {})))
    except TypeError as exc:
        raise ConfigError(f"executor {name!r}: {exc}", key="executor_options") from exc
