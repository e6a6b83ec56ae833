"""The lifeline of one ``subprocess`` attempt: it leads the attempt's process group.

The worker starts it by path with the standard library only (``python -I -S _lifeline.py
SECONDS``) as the leader of a new process group, and the attempt's child joins that group
before it execs (so even a child forked a moment before the worker died is covered). The
executor module run in the child may be anyone's (reproq-django's, for one), so the
watching cannot be left to it.

Its stdin is a pipe whose only write end is in the worker. End-of-file means the worker
closed it or died, even by SIGKILL: the lifeline then kills its whole process group,
itself included, so no task outlives its worker. After SECONDS (``0``: never) it does the
same, so a task cannot outrun its timeout even while the worker is frozen. SIGTERM,
SIGINT and SIGHUP are ignored: they are meant for the task.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

_JOIN_GRACE = 0.2
"""Seconds between the worker's death and the kill: a child the worker forked just before
it died needs a moment to join the group."""


def main(argv: list[str]) -> None:
    """Watch stdin until end-of-file or the kill time, then kill the process group."""
    kill_after = float(argv[1]) if len(argv) > 1 else 0.0
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    deadline = time.monotonic() + kill_after if kill_after > 0 else None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([0], [], [], timeout)
        if ready:
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if not data:
                time.sleep(_JOIN_GRACE)
                break
        elif deadline is not None and time.monotonic() >= deadline:
            break
    os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv)
