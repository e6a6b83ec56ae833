"""The real ``reproq worker`` and ``reproq beat`` processes a stress run drives.

Workers run in numbered *slots* with a stable worker id per slot (``<prefix>-<slot>``),
so a restarted worker reuses its predecessor's id exactly as a redeployed one would.
Each process writes its output to a log file in the run's directory. The fleet
remembers when every process ended (database-independent wall-clock time), which the
checker uses to close the intervals of executions that died with their process.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from reproq.stress.ledger import LEDGER_DSN_ENV

__all__ = ["Fleet", "ProcessRecord", "WorkerSettings"]

logger = logging.getLogger("reproq.stress.fleet")


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSettings:
    """How each ``reproq worker`` process is started."""

    concurrency: int = 50
    executor: str = "thread"
    subprocess_slots: frozenset[int] = frozenset()
    """Slots whose worker runs the ``subprocess`` executor instead of ``executor``."""
    subprocess_concurrency: int = 4
    """Slots of those workers: each of their tasks starts an interpreter or two, so a few
    are what the machine can carry next to the rest of the fleet."""
    queues: tuple[str, ...] = ("default",)
    allowed_task_modules: str = "reproq.stress.tasks."
    lease_seconds: float = 4.0
    heartbeat_seconds: float = 1.0
    reclaim_interval_seconds: float = 1.0
    shutdown_timeout: float = 10.0
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class ProcessRecord:
    """One process the fleet started."""

    role: str  # "worker" or "beat"
    slot: int
    name: str  # worker id or beat name
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    returncode: int | None = None
    stopped: bool = False
    expected_exit: bool = False
    """True once the fleet killed or terminated it on purpose."""

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid


def _seconds(value: float) -> str:
    return f"{value:g}"


class Fleet:
    """Starts, signals, restarts and finally stops the worker and beat processes."""

    def __init__(
        self,
        *,
        dsn: str,
        workers: int,
        settings: WorkerSettings,
        log_dir: Path,
        ledger_dsn: str | None = None,
        beats: int = 0,
        beat_interval: str = "1s",
        id_prefix: str = "stress",
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.dsn = dsn
        self.workers = workers
        self.settings = settings
        self.log_dir = log_dir
        self.ledger_dsn = ledger_dsn
        self.beats = beats
        self.beat_interval = beat_interval
        self.id_prefix = id_prefix
        self.ready = ready
        """Asked before a restart: a process started while the database is down would
        only fail its start-up."""
        self.records: list[ProcessRecord] = []
        self._current: dict[tuple[str, int], ProcessRecord] = {}
        self._lock = threading.RLock()
        self._closing = False
        self._beats_stopped = False
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ starting

    def worker_id(self, slot: int) -> str:
        """The stable worker id of ``slot``."""
        return f"{self.id_prefix}-w{slot}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.env)
        env["PYTHONUNBUFFERED"] = "1"
        if self.ledger_dsn:
            env[LEDGER_DSN_ENV] = self.ledger_dsn
        return env

    def executor_of(self, slot: int) -> str:
        """The executor of the worker in ``slot``."""
        s = self.settings
        return "subprocess" if slot in s.subprocess_slots else s.executor

    def worker_command(self, slot: int) -> list[str]:
        """The command line of the worker in ``slot``."""
        s = self.settings
        executor = self.executor_of(slot)
        concurrency = s.concurrency
        if slot in s.subprocess_slots:
            concurrency = min(concurrency, s.subprocess_concurrency)
        return [
            sys.executable,
            "-m",
            "reproq",
            "worker",
            "--dsn",
            self.dsn,
            "--concurrency",
            str(concurrency),
            "--worker-id",
            self.worker_id(slot),
            "--queues",
            ",".join(s.queues),
            "--allowed-task-modules",
            s.allowed_task_modules,
            "--executor",
            executor,
            # The subprocess executor's default module is reproq-django's; ours runs here.
            *(["--executor-module", "reproq.executor"] if executor == "subprocess" else []),
            "--lease-seconds",
            _seconds(s.lease_seconds),
            "--heartbeat-seconds",
            _seconds(s.heartbeat_seconds),
            "--reclaim-interval-seconds",
            _seconds(s.reclaim_interval_seconds),
            "--shutdown-timeout",
            f"{s.shutdown_timeout:g}s",
            *s.extra_args,
        ]

    def beat_command(self, slot: int) -> list[str]:
        """The command line of beat number ``slot``."""
        return [
            sys.executable,
            "-m",
            "reproq",
            "beat",
            "--dsn",
            self.dsn,
            "--interval",
            self.beat_interval,
            "--name",
            f"{self.id_prefix}-beat{slot}",
        ]

    def _spawn(self, role: str, slot: int, command: Sequence[str], name: str) -> ProcessRecord:
        generation = sum(1 for r in self.records if r.role == role and r.slot == slot)
        log_path = self.log_dir / f"{role}-{slot}-{generation}.log"
        handle: IO[bytes] = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C in the terminal is the harness's to handle
            )
        finally:
            handle.close()
        record = ProcessRecord(
            role=role,
            slot=slot,
            name=name,
            proc=proc,
            log_path=log_path,
            started_at=dt.datetime.now(dt.UTC),
        )
        self.records.append(record)
        self._current[(role, slot)] = record
        # A waiter per process notes the moment it ends, not the next time we look.
        threading.Thread(
            target=self._await_exit,
            args=(record,),
            name=f"reproq-stress-wait-{proc.pid}",
            daemon=True,
        ).start()
        logger.debug("started %s %s (pid %d)", role, name, proc.pid)
        return record

    def _await_exit(self, record: ProcessRecord) -> None:
        record.proc.wait()
        ended = dt.datetime.now(dt.UTC)
        with self._lock:
            if record.ended_at is None:
                record.ended_at = ended
                record.returncode = record.proc.returncode
                self._report_exit(record)

    def start(self) -> None:
        """Start every worker and beat."""
        with self._lock:
            for slot in range(self.workers):
                self._spawn("worker", slot, self.worker_command(slot), self.worker_id(slot))
            for slot in range(self.beats):
                self._spawn("beat", slot, self.beat_command(slot), f"{self.id_prefix}-beat{slot}")

    # ------------------------------------------------------------------ state

    def reap(self) -> None:
        """Notice processes that ended (their waiter may not have run yet)."""
        with self._lock:
            for record in self.records:
                if record.ended_at is None and record.proc.poll() is not None:
                    record.ended_at = dt.datetime.now(dt.UTC)
                    record.returncode = record.proc.returncode
                    self._report_exit(record)

    def _report_exit(self, record: ProcessRecord) -> None:
        if not record.expected_exit:
            logger.warning(
                "%s %s (pid %d) exited on its own with code %s; see %s",
                record.role,
                record.name,
                record.pid,
                record.returncode,
                record.log_path,
            )

    def _live(self, role: str, slot: int) -> ProcessRecord | None:
        self.reap()
        record = self._current.get((role, slot))
        if record is None or record.ended_at is not None:
            return None
        return record

    def alive(self, role: str = "worker") -> int:
        """How many processes of ``role`` are running (stopped ones included)."""
        with self._lock:
            self.reap()
            return sum(1 for r in self.records if r.role == role and r.ended_at is None)

    def unexpected_exits(self) -> list[ProcessRecord]:
        """Processes that ended without the fleet asking them to."""
        with self._lock:
            self.reap()
            return [r for r in self.records if r.ended_at is not None and not r.expected_exit]

    def process_exits(self) -> dict[int, dt.datetime]:
        """pid → when the process ended, for every ended process."""
        with self._lock:
            self.reap()
            return {r.pid: r.ended_at for r in self.records if r.ended_at is not None}

    def restart_missing(self) -> int:
        """Start a worker in every slot whose process is gone; returns how many."""
        started = 0
        if self.ready is not None and not self.ready():
            return 0
        with self._lock:
            if self._closing:
                return 0
            for slot in range(self.workers):
                if self._live("worker", slot) is None:
                    self._spawn("worker", slot, self.worker_command(slot), self.worker_id(slot))
                    started += 1
            for slot in range(0 if self._beats_stopped else self.beats):
                if self._live("beat", slot) is None:
                    self._spawn(
                        "beat", slot, self.beat_command(slot), f"{self.id_prefix}-beat{slot}"
                    )
                    started += 1
        return started

    # ------------------------------------------------------------------ faults

    def _signal(self, record: ProcessRecord, sig: signal.Signals) -> bool:
        try:
            os.kill(record.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def kill(self, slot: int, role: str = "worker") -> bool:
        """SIGKILL the process in ``slot``."""
        with self._lock:
            record = self._live(role, slot)
            if record is None:
                return False
            record.expected_exit = True
            ok = self._signal(record, signal.SIGKILL)
            if ok:
                record.proc.wait()
                # The kill is the end of every execution it hosted.
                record.ended_at = dt.datetime.now(dt.UTC)
                record.returncode = record.proc.returncode
            return ok

    def stop(self, slot: int) -> bool:
        """SIGSTOP the worker in ``slot`` (a stopped one is not stopped again)."""
        with self._lock:
            record = self._live("worker", slot)
            if record is None or record.stopped:
                return False
            record.stopped = self._signal(record, signal.SIGSTOP)
            return record.stopped

    def cont(self, slot: int) -> None:
        """SIGCONT every stopped process of ``slot`` (a twin's elder too)."""
        with self._lock:
            for record in self.records:
                if record.slot == slot and record.role == "worker" and record.stopped:
                    self._signal(record, signal.SIGCONT)
                    record.stopped = False

    def term(self, slot: int) -> bool:
        """SIGTERM the worker in ``slot``: a graceful shutdown."""
        with self._lock:
            record = self._live("worker", slot)
            if record is None or record.stopped:
                return False
            record.expected_exit = True
            return self._signal(record, signal.SIGTERM)

    def restart(self, slot: int) -> None:
        """Start a new worker in ``slot`` once its process has ended (waits for it)."""
        record = self._current.get(("worker", slot))
        if record is not None and not record.expected_exit:
            return  # already replaced (e.g. by restart_missing): nothing to wait for
        if record is not None:
            try:
                record.proc.wait(timeout=self.settings.shutdown_timeout + 15)
            except subprocess.TimeoutExpired:
                logger.warning("worker %s did not exit; killing it", record.name)
                self.kill(slot)
        if self.ready is not None and not self.ready():
            return  # restart_missing() starts it once the database answers again
        with self._lock:
            if self._closing or self._live("worker", slot) is not None:
                return
            self._spawn("worker", slot, self.worker_command(slot), self.worker_id(slot))

    def start_twin(self, slot: int) -> None:
        """Start a second process with the worker id of ``slot``; it becomes the slot's
        current process while the elder (stopped) one stays around."""
        with self._lock:
            if self._closing:
                return
            self._spawn("worker", slot, self.worker_command(slot), self.worker_id(slot))

    def retire_twin(self, slot: int) -> None:
        """Gracefully stop every process of ``slot`` except the current one."""
        with self._lock:
            current = self._current.get(("worker", slot))
            for record in self.records:
                if (
                    record.role == "worker"
                    and record.slot == slot
                    and record is not current
                    and record.ended_at is None
                ):
                    if record.stopped:
                        self._signal(record, signal.SIGCONT)
                        record.stopped = False
                    record.expected_exit = True
                    self._signal(record, signal.SIGTERM)

    # ------------------------------------------------------------------ stopping

    def stop_beats(self, timeout: float = 15.0) -> None:
        """SIGTERM the beats and wait for them; they are not restarted afterwards."""
        with self._lock:
            self._beats_stopped = True
        self._terminate([r for r in self.records if r.role == "beat"], timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Continue stopped processes, SIGTERM everything, SIGKILL what outlives ``timeout``."""
        with self._lock:
            self._closing = True
        if timeout is None:
            timeout = self.settings.shutdown_timeout + 15
        self._terminate(list(self.records), timeout)

    def _terminate(self, records: Sequence[ProcessRecord], timeout: float) -> None:
        with self._lock:
            live = [r for r in records if r.ended_at is None and r.proc.poll() is None]
            for record in live:
                if record.stopped:
                    self._signal(record, signal.SIGCONT)
                    record.stopped = False
                record.expected_exit = True
                self._signal(record, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for record in live:
            try:
                record.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s %s ignored SIGTERM; killing it", record.role, record.name)
                self._signal(record, signal.SIGKILL)
                record.proc.wait()
        self.reap()
