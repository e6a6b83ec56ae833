"""What a bench result was measured on: the machine, and the PostgreSQL server it used."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reproq
from reproq.db import Conn, translate_errors
from reproq.pg.throwaway import throwaway_server
from reproq.queries import q
from reproq.stress.bench.config import BENCH_SETTINGS, REPORTED_SETTINGS, BenchConfig
from reproq.stress.report import Progress

__all__ = ["BenchServer", "bench_server", "machine_info", "server_facts"]


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS and Python of this machine."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "reproq": reproq.__version__,
    }


def server_facts(conn: Conn) -> dict[str, Any]:
    """The server's version and the settings that bear on the results."""
    with translate_errors():
        info = conn.execute(q("stress_server_info")).fetchone() or {}
        settings = {
            str(r["name"]): str(r["setting"])
            for r in conn.execute(q("stress_server_settings"), {"names": list(REPORTED_SETTINGS)})
        }
    return {
        "version": info.get("version"),
        "server_version": info.get("server_version"),
        "settings": settings,
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchServer:
    """The server a bench runs on: a DSN with rights to create databases, and its kind."""

    admin_dsn: str
    kind: str


@contextlib.contextmanager
def bench_server(config: BenchConfig, progress: Progress) -> Iterator[BenchServer]:
    """The server of ``config.dsn``, else a throwaway one with durable settings."""
    if config.dsn:
        yield BenchServer(admin_dsn=config.dsn, kind="external")
        return
    progress.note("starting a throwaway PostgreSQL server (durable settings)…")
    with throwaway_server(settings=BENCH_SETTINGS, require_local=True) as info:
        yield BenchServer(admin_dsn=info.dsn, kind=str(info.kind))
