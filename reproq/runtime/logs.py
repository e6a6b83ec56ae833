"""Structured logging for long-running reproq processes: text or JSON lines, redacted.

:func:`setup_logging` installs one handler on the root logger that writes either
human-readable lines or one JSON object per line. Every record passes through
:class:`RedactingFilter` first, so no handler ever sees:

- passwords in DSNs (``postgresql://u:***@h/db``, ``password=***``),
- bearer tokens and ``token=`` / ``secret=`` values,
- any value registered with :func:`register_secret` (the metrics token, the DSN password),
- task payloads: the value after an ``args``, ``kwargs``, ``spec_json``, ``return``,
  ``return_json``, ``payload_json`` or ``result`` key, in ``key=value`` text, in JSON text
  and in ``extra={...}`` fields, because task arguments routinely carry personal data.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from reproq.db import redact_dsn

__all__ = [
    "PAYLOAD_FIELDS",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "redact_text",
    "redact_value",
    "register_secret",
    "setup_logging",
]

REDACTED = "[redacted]"
"""What replaces a secret or a payload in a log record."""

PAYLOAD_FIELDS: frozenset[str] = frozenset(
    {"args", "kwargs", "spec_json", "return", "return_json", "payload_json", "result"}
)
"""Field names whose values are task data, never logged."""

_SECRET_FIELDS = re.compile(r"password|passwd|secret|token|authorization|api_key", re.IGNORECASE)
_DSN_FIELDS = frozenset({"dsn", "database_url", "conninfo"})

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Real tokens are long; the length keeps prose such as "bearer token" readable.
_BEARER = re.compile(r"(\bbearer\s+)([A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_SECRET_KV = re.compile(
    r"(\b(?:[a-z_]*token|[a-z_]*secret|api_key|authorization|password|passwd)\b"
    r"""["']?\s*[=:]\s*["']?)([^\s"',;&}]+)""",
    re.IGNORECASE,
)
_PAYLOAD_KEY = re.compile(
    r"""(?P<q>["']?)\b(?P<key>"""
    + "|".join(sorted(PAYLOAD_FIELDS, key=len, reverse=True))
    + r""")(?P=q)\s*(?P<sep>[=:])\s*""",
)
_CLOSERS = {"[": "]", "{": "}", "(": ")"}

_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Hide *value* wherever it appears in any later log record (ignored if short or None).

    Values under four characters are ignored: hiding them would mangle ordinary words.
    """
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def _known_secrets() -> list[str]:
    with _secrets_lock:
        # Longest first, so a secret containing another is hidden whole.
        return sorted(_secrets, key=len, reverse=True)


def redact_text(text: str) -> str:
    """*text* with secrets and task payload values replaced by :data:`REDACTED`."""
    for secret in _known_secrets():
        if secret in text:
            text = text.replace(secret, "***")
    text = redact_dsn(text)
    text = _BEARER.sub(r"\1***", text)
    text = _SECRET_KV.sub(r"\1***", text)
    return _redact_payloads(text)


def _redact_payloads(text: str) -> str:
    """Replace the value following each payload key (``args=[...]``, ``"kwargs": {...}``)."""
    out: list[str] = []
    pos = 0
    for match in _PAYLOAD_KEY.finditer(text):
        if match.start() < pos:
            continue  # inside a value already replaced
        end = _value_end(text, match.end())
        if end == match.end():
            continue  # nothing after the separator
        out.append(text[pos : match.end()])
        out.append(f'"{REDACTED}"' if match.group("q") == '"' else REDACTED)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    """Index just past the value starting at *start*: a bracketed group, a string, a word."""
    if start >= len(text):
        return start
    first = text[start]
    if first in _CLOSERS:
        return _bracket_end(text, start)
    if first in "\"'":
        i = start + 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == first:
                return i + 1
            i += 1
        return len(text)
    i = start
    while i < len(text) and not text[i].isspace() and text[i] not in ",;}]":
        i += 1
    return i


def _bracket_end(text: str, start: int) -> int:
    """Index just past the bracket group opened at *start* (end of text if unbalanced)."""
    stack: list[str] = []
    quote: str | None = None
    i = start
    while i < len(text):
        char = text[i]
        if quote is not None:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif stack and char == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    return len(text)


def redact_value(key: str, value: Any) -> Any:
    """An ``extra=`` field value made safe to log, judged by its *key* and content."""
    lowered = key.lower()
    if lowered in PAYLOAD_FIELDS:
        return REDACTED
    if _SECRET_FIELDS.search(lowered):
        return "***" if value else value
    if lowered in _DSN_FIELDS and isinstance(value, str):
        return redact_dsn(value)
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record in place so that no secret or payload reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once (arguments included), redact it and the extra fields."""
        if getattr(record, "_reproq_redacted", False):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        for key in _extra_keys(record):
            setattr(record, key, redact_value(key, getattr(record, key)))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        record._reproq_redacted = True
        return True


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [k for k in record.__dict__ if k not in _RECORD_ATTRS and not k.startswith("_")]


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO reproq.runtime.supervisor: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus any traceback) with the ``extra=`` fields appended as key=value."""
        stamp = _timestamp(record)
        line = f"{stamp} {record.levelname} {record.name}: {record.getMessage()}"
        extras = " ".join(
            f"{key}={_text_value(getattr(record, key))}" for key in sorted(_extra_keys(record))
        )
        if extras:
            line += " " + extras
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON document."""
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.threadName and record.threadName != "MainThread":
            doc["thread"] = record.threadName
        for key in sorted(_extra_keys(record)):
            if key not in doc:
                doc[key] = getattr(record, key)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, default=str, ensure_ascii=False)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (not text or any(c.isspace() for c in text)) else text


def setup_logging(
    *,
    level: str = "INFO",
    json_lines: bool = False,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
    logger: logging.Logger | None = None,
) -> logging.Handler:
    """Send every record of *logger* (default: the root logger) to *stream*, redacted.

    Replaces the logger's existing handlers. *secrets* are registered with
    :func:`register_secret`. Returns the installed handler.
    """
    for secret in secrets:
        register_secret(secret)
    target = logger if logger is not None else logging.getLogger()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    for old in list(target.handlers):
        target.removeHandler(old)
    target.addHandler(handler)
    target.setLevel(level.upper())
    # Driver chatter at INFO (connection pool, HTTP access) drowns the lines that matter.
    for noisy in ("psycopg", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, target.level))
    return handler
