"""What the process and subprocess executor tests share: calls, cancel flags, pid checks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from reproq.executors.base import TaskCall

TASKS = "tests.tasks.executors"


class Flag:
    """A CancelCheck the test can set, now or after a delay."""

    def __init__(self, after: float | None = None) -> None:
        self._event = threading.Event()
        if after is not None:
            timer = threading.Timer(after, self._event.set)
            timer.daemon = True
            timer.start()

    def is_set(self) -> bool:
        return self._event.is_set()


def make_call(
    task: str, *args: Any, result_id: int, timeout: float = 30.0, **kwargs: Any
) -> TaskCall:
    """A call of ``tests.tasks.executors.<task>`` with a spec to match."""
    path = f"{TASKS}.{task}"
    return TaskCall(
        result_id=result_id,
        attempt=1,
        task_path=path,
        args=list(args),
        kwargs=kwargs,
        spec={"v": 1, "task_path": path, "args": list(args), "kwargs": kwargs},
        timeout_seconds=timeout,
        deadline=time.monotonic() + timeout,
    )


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
