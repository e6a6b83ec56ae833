"""Helpers for tests that run ``reproq up`` as a real subprocess (``python -m reproq up``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

# Environment variables that would change which database or settings `up` uses.
_SCRUBBED_PREFIXES = ("REPROQ_", "PG")
_SCRUBBED = {"DATABASE_URL", "WORKER_ID"}

_METRICS_URL = re.compile(r"metrics: (http://[^\s/]+)/metrics")


def toml_string(value: str) -> str:
    """*value* as a TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without reproq/libpq settings, plus *extra*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll *predicate* until it returns something truthy; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        time.sleep(interval)


class UpProcess:
    """One ``reproq up`` subprocess, its combined output in a log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        return self.log_path.read_text("utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> str:
        """Wait until *text* appears in the output; fails early if the process exits."""

        def seen() -> bool:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"reproq up exited with {self.proc.returncode} before logging {text!r}:\n"
                    + self.log()
                )
            return False

        try:
            wait_until(seen, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- output ---\n{self.log()}") from None
        return self.log()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait for the start-up to finish (the ``ready:`` log line)."""
        self.wait_for_log("INFO reproq.runtime: ready:", timeout)

    @property
    def metrics_url(self) -> str:
        """Base URL of the metrics server, as logged at start."""
        match = _METRICS_URL.search(self.log())
        assert match, f"no metrics line in the output:\n{self.log()}"
        return match.group(1)

    def send(self, sig: signal.Signals) -> None:
        """Send *sig* to the process."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 90.0) -> int:
        """Wait for the exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"reproq up still running after {timeout:g}s:\n{self.log()}"
            ) from None

    def stop(self, timeout: float = 90.0) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.proc.poll() is None:
            self.send(signal.SIGTERM)
        return self.wait(timeout)


@contextmanager
def running_up(
    config: Path | None,
    log_path: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[UpProcess]:
    """Start ``python -m reproq up [config] [args]``; killed at exit if still running."""
    cmd = [sys.executable, "-m", "reproq", "up"]
    if config is not None:
        cmd.append(str(config))
    cmd.extend(args)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    up = UpProcess(proc, log_path)
    try:
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def run_up_once(
    config: Path | None, *, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``reproq up`` expecting it to exit by itself (start-up errors)."""
    cmd = [sys.executable, "-m", "reproq", "up"]
    if config is not None:
        cmd.append(str(config))
    cmd.extend(args)
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fetch(url: str, token: str | None = None) -> tuple[int, bytes]:
    """GET *url* (with a bearer *token*); returns (status, body), errors included."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as {(sample name, labels): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    """The value of one sample, or None when absent."""
    return samples.get((name, frozenset(labels.items())))
