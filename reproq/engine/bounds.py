"""A worker's default size and the largest values it can run.

The bounds are checked by ``config check`` and by the worker itself.

Each bound is far above any sensible setting and well below what breaks: a thread per
slot (the operating system refuses tens of thousands), two connections per lane (more
than a PostgreSQL server accepts by default), and durations that become timestamps in SQL
(``now() + lease`` overflows long before a float does) or timeouts of thread waits.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CONCURRENCY",
    "MAX_BYTES",
    "MAX_CONCURRENCY",
    "MAX_CONNECTIONS",
    "MAX_DB_INT",
    "MAX_DURATION",
    "MAX_LEASE_SECONDS",
    "MAX_POOL_SIZE",
]

DEFAULT_CONCURRENCY = 10
"""Slots of a worker (a pool) that does not say; the Go worker's default too."""

MAX_CONCURRENCY = 4096
"""Slots of one worker (one thread each); run more workers or processes beyond this."""

MAX_CONNECTIONS = 64
"""Lanes of one worker, each holding two database connections."""

MAX_POOL_SIZE = 1000
"""Connections one process may plan for (``database.pool_size``)."""

MAX_LEASE_SECONDS = 7 * 86400
"""Longest lease (7 days): a dead worker's tasks wait this long to be reclaimed."""

MAX_DURATION = 365 * 86400
"""Longest of any other duration setting (a year), in seconds."""

MAX_BYTES = 1 << 30
"""Largest payload or captured output (1 GiB, PostgreSQL's limit for one value)."""

MAX_DB_INT = 2**31 - 1
"""Largest value of an ``integer`` column (priority, max_attempts, limits, bursts)."""
