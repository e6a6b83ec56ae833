"""Showing a stress run: the live progress line, the final table and the JSON document."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from reproq.stress.checker import InvariantResult
from reproq.stress.faults import FaultRecord

__all__ = ["Progress", "TortureReport", "render_table", "write_json"]


class Progress:
    """Progress on stderr: one line redrawn in place on a terminal, else a line every
    ``every`` seconds (logs and CI stay readable)."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self._last = 0.0
        self._width = 0
        self._lock = threading.Lock()  # fault notes arrive from another thread

    def update(self, fields: Mapping[str, Any], *, force: bool = False) -> None:
        """Show ``fields`` (``name: value`` pairs in order)."""
        line = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
        now = time.monotonic()
        with self._lock:
            self._show(line, now, force=force)

    def _show(self, line: str, now: float, *, force: bool) -> None:
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._width = len(line)
        elif force or now - self._last >= self.every:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last = now

    def note(self, message: str) -> None:
        """A one-off line (phase changes, faults), kept apart from the progress line."""
        with self._lock:
            if self.tty and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self._width = 0
            self.stream.write(message + "\n")
            self.stream.flush()

    def done(self) -> None:
        """End the in-place line."""
        with self._lock:
            if self.tty and self._width:
                self.stream.write("\n")
                self.stream.flush()
                self._width = 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class TortureReport:
    """The outcome of a torture run."""

    settings: Mapping[str, Any]
    server: Mapping[str, Any]
    elapsed_seconds: float
    load_seconds: float
    drain_seconds: float
    drained: bool
    enqueued: int
    enqueued_by_kind: Mapping[str, int]
    final_status: Mapping[str, int]
    executions: int
    cancels: int
    faults_planned: int
    faults: Sequence[FaultRecord]
    unexpected_exits: Sequence[str]
    results: Sequence[InvariantResult]
    evidence: Mapping[str, int]
    log_dir: str
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return all(r.ok for r in self.results)

    @property
    def throughput(self) -> float:
        """Finished tasks per second of the load phase."""
        finished = sum(n for s, n in self.final_status.items() if s in ("SUCCESSFUL", "FAILED"))
        return finished / self.load_seconds if self.load_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        return {
            "ok": self.ok,
            "settings": dict(self.settings),
            "server": dict(self.server),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "drain_seconds": round(self.drain_seconds, 3),
            "drained": self.drained,
            "enqueued": self.enqueued,
            "enqueued_by_kind": dict(sorted(self.enqueued_by_kind.items())),
            "final_status": dict(sorted(self.final_status.items())),
            "executions": self.executions,
            "cancels": self.cancels,
            "throughput_per_second": round(self.throughput, 2),
            "faults": {
                "planned": self.faults_planned,
                "injected": sum(1 for f in self.faults if f.ok),
                "by_kind": _fault_counts(self.faults),
                "events": [
                    {
                        "at": round(f.at, 3),
                        "kind": str(f.event.kind),
                        "variant": f.event.variant,
                        "target": f.event.target if f.event.targets_process else None,
                        "seconds": round(f.event.seconds, 3),
                        "ok": f.ok,
                        "note": f.note,
                    }
                    for f in self.faults
                ],
            },
            "unexpected_exits": list(self.unexpected_exits),
            "invariants": [
                {
                    "name": r.name,
                    "ok": r.ok,
                    "checked": r.checked,
                    "description": r.description,
                    "details": list(r.details),
                }
                for r in self.results
            ],
            "evidence": dict(self.evidence),
            "log_dir": self.log_dir,
            "notes": list(self.notes),
        }


def _fault_counts(faults: Iterable[FaultRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in faults:
        if record.ok:
            name = str(record.event.kind) + (
                f"/{record.event.variant}" if record.event.variant else ""
            )
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return lines


def render_table(report: TortureReport) -> str:
    """The human-readable report."""
    s = report.settings
    lanes = s.get("connections", 1)
    lines = [
        f"reproq torture — seed {s.get('seed')}, {s.get('workers')} workers x "
        f"{s.get('concurrency')} ({s.get('executor')}"
        f"{f', {lanes} connections each' if lanes != 1 else ''}), lease {s.get('lease_seconds')}s, "
        f"server {report.server.get('kind')} {report.server.get('server_version', '')}",
        f"load {report.load_seconds:.1f}s, drain {report.drain_seconds:.1f}s"
        f"{'' if report.drained else ' (gave up)'}; enqueued {report.enqueued:,} rows, "
        f"{report.executions:,} executions, {report.cancels} cancels, "
        f"{report.throughput:,.1f} tasks/s",
        "final status: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.final_status.items())),
        f"faults: {sum(1 for f in report.faults if f.ok)} injected of "
        f"{report.faults_planned} planned — "
        + (", ".join(f"{k} {v}" for k, v in _fault_counts(report.faults).items()) or "none"),
    ]
    if report.evidence:
        lines.append("exercised: " + ", ".join(f"{k} {v:,}" for k, v in report.evidence.items()))
    if report.unexpected_exits:
        lines.append(f"processes that exited on their own: {len(report.unexpected_exits)}")
        lines.extend(f"  {x}" for x in report.unexpected_exits[:10])
    lines.extend(f"note: {n}" for n in report.notes)
    lines.append("")
    rows = [[r.name, "PASS" if r.ok else "FAIL", f"{r.checked:,}"] for r in report.results]
    lines.extend(_table(["invariant", "result", "checked"], rows))
    for r in report.results:
        if not r.ok:
            lines.append("")
            lines.append(f"{r.name} FAILED — {r.description}:")
            lines.extend(f"  {d}" for d in r.details)
    lines.append("")
    passed = sum(1 for r in report.results if r.ok)
    verdict = "PASSED" if report.ok else "FAILED"
    logs = f"; logs in {report.log_dir}" if report.log_dir else ""
    lines.append(f"{verdict}: {passed}/{len(report.results)} invariants held{logs}")
    return "\n".join(lines)


def write_json(path: str | Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as indented JSON (``-`` = stdout)."""
    text = json.dumps(document, indent=2, sort_keys=True, default=str)
    if str(path) == "-":
        print(text)
        return
    Path(path).write_text(text + "\n", encoding="utf-8")
