"""The promise of a second stop signal: the process ends within seconds, whatever it does.

A first SIGTERM/SIGINT asks for a graceful stop; a second forces it, and running tasks'
leases are given back at once. A forced stop still needs the control threads to act,
and a thread stuck on a frozen database (or a task that ignores every request) would keep
the process alive. :func:`exit_later` ends the process from a watchdog thread once the
forced stop has had its time: leases that could not be given back expire on their own
and are reclaimed by the other workers, as after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import NoReturn

__all__ = ["FORCED_EXIT_CODE", "FORCED_EXIT_SECONDS", "exit_later", "exit_now"]

log = logging.getLogger("reproq.runtime")

FORCED_EXIT_SECONDS = 5.0
"""How long a forced stop may take before the process exits anyway."""

FORCED_EXIT_CODE = 1
"""The exit code of a process that had to be ended this way."""


def exit_later(seconds: float, *, what: str) -> threading.Event:
    """End the process after ``seconds`` unless the returned event is set first.

    Safe to call from a signal handler. ``what`` names the component in the log line.
    """
    done = threading.Event()

    def watchdog() -> None:
        if done.wait(seconds):
            return
        log.error(
            "%s did not stop within %gs of the forced stop; exiting now (leases still held "
            "expire on their own and are reclaimed)",
            what,
            seconds,
        )
        exit_now(FORCED_EXIT_CODE)

    threading.Thread(target=watchdog, name="reproq-forced-exit", daemon=True).start()
    return done


def exit_now(code: int) -> NoReturn:
    """Flush the log and the standard streams, then end the process without waiting for
    any thread."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
