"""Staged rows: new task runs as COPY text, on their way into ``task_runs``.

A bulk enqueue streams its rows with ``COPY ... FROM STDIN`` (text format), straight into
``task_runs`` or into a buffer it moves them from (see :mod:`reproq.producer.bulk`). The
rows are written here as text, not handed to the driver value by value: most columns of
a bulk enqueue repeat from row to row, so their text is made once and reused
(:mod:`reproq.producer.template`), and the line of a row costs one string format.

Column order of a line (``enqueue_copy_rows``, ``enqueue_copy_buffer``): ``result_id``,
``spec_hash``, ``spec_json``, the row's other columns (:data:`COLUMNS`), then
``metadata_json``, which is often a row's own while the columns before it are shared.
The result id is reserved when the row's batch is sent, so a :class:`StagedRow` holds the
line without it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import NamedTuple

__all__ = ["COLUMNS", "StagedRow", "copy_field", "spec_field", "staged_row"]

COLUMNS = (
    "backend_alias",
    "queue_name",
    "priority",
    "run_after",
    "task_path",
    "status",
    "max_attempts",
    "timeout_seconds",
    "lock_key",
    "concurrency_key",
    "concurrency_limit",
    "expires_at",
    "parent_id",
    "workflow_id",
    "wait_count",
)
"""The columns between ``spec_json`` and ``metadata_json``, in line order."""


class StagedRow(NamedTuple):
    """One row for the buffer: its hash (which orders the insert) and its COPY line."""

    spec_hash: str
    line: str
    """The COPY text of every column from ``spec_hash`` to ``metadata_json``, tab-separated
    (no newline: the columns each way of writing adds come after it)."""


def copy_field(value: object) -> str:
    """One value in COPY text format: NULL as ``\\N``; tab, newline, CR and backslash escaped."""
    if value is None:
        return r"\N"
    if isinstance(value, str):
        # str.__str__ gives the plain text of a StrEnum (a status) or any other subclass.
        text = str.__str__(value)
        if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
            text = (
                text.replace("\\", "\\\\")
                .replace("\t", "\\t")
                .replace("\n", "\\n")
                .replace("\r", "\\r")
            )
        return text
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return int.__repr__(value)  # an IntEnum as its number
    if isinstance(value, dt.datetime):
        # ISO 8601 with its offset, to the microsecond; a naive value is read in the
        # session's time zone, as when the driver sends it.
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"no COPY text for {type(value).__name__} value {value!r}")


def spec_field(spec_json: str) -> str:
    """Canonical spec JSON as a COPY field.

    JSON text holds no raw tab, newline or carriage return (the encoder escapes every
    control character), so only backslashes need doubling.
    """
    return spec_json.replace("\\", "\\\\") if "\\" in spec_json else spec_json


def staged_row(spec_hash: str, spec_json: str, columns: str, metadata_json: str) -> StagedRow:
    """The buffer row of a spec, given the COPY text of its :data:`COLUMNS` (``columns``)
    and its metadata as JSON text."""
    metadata = metadata_json if metadata_json == "{}" else copy_field(metadata_json)
    return StagedRow(spec_hash, f"{spec_hash}\t{spec_field(spec_json)}\t{columns}\t{metadata}")
