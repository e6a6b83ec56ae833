"""Names for the task-path resolution tests: real tasks and the ways a path could escape.

Allowed as ``tests.tasks.paths.``: the functions and classes defined here are tasks; the
names that only point elsewhere (a module, a function imported from another module, a
partial) must never be reachable as tasks.
"""

from __future__ import annotations

import functools
import subprocess  # a module attribute: tests.tasks.paths.subprocess.run must be refused
from os import system  # re-exported: defined in an unallowed module
from typing import Any

from tests.tasks.sample import add as sample_add  # re-exported from another allowed module

__all__ = ["Jobs", "Shouter", "double", "made_here", "run_system", "sample_add", "shout", "system"]

run_system = functools.partial(system, "true")
"""Callable, but a ``functools`` object: not defined in this module."""


def double(x: int) -> int:
    """A plain task."""
    return 2 * x


def _make() -> Any:
    def made(x: int) -> int:
        return x + 1

    return made


made_here = _make()
"""Defined (by a factory) in this module under another qualname: still this module's."""


class Jobs:
    """Tasks as methods: ``tests.tasks.paths.Jobs.triple`` and ``...Jobs.name``."""

    @staticmethod
    def triple(x: int) -> int:
        return 3 * x

    @classmethod
    def name(cls) -> str:
        return cls.__name__


class Shouter:
    """Instances are callable; ``shout`` is one."""

    def __call__(self, text: str) -> str:
        return text.upper()


shout = Shouter()


def _private(x: int) -> int:
    return x


assert subprocess  # imported for the tests, not used here
