"""One request to the metrics endpoint, read in full by the server's intake: route, check, answer.

Paths and answers follow Reproq Worker, so reproq-django's dashboard, its proxies and
its TUI work unchanged:

- ``GET /metrics``: Prometheus text (OpenMetrics when asked).
- ``GET /healthz``: ``200 ok`` or ``503 unhealthy`` as plain text; with
  ``Accept: application/json`` (or ``?format=json``) the same status with reproq's JSON
  report (components, reasons, version). ``/health`` is an alias.
- ``GET /events``: server-sent events (:mod:`reproq.runtime.events`), filtered by the
  ``queue``, ``worker_id`` and ``task_id`` query parameters (400 on a bad ``task_id``,
  404 when the process publishes no events), with a ``: ping`` comment every 15 s.
- Methods other than GET and HEAD: 405.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from reproq.runtime.events import EventBroker, EventFilter, Subscription
from reproq.runtime.health import HealthReport
from reproq.runtime.httpauth import AuthLimiter, credential_valid

__all__ = ["EventStream", "Handler", "Limits", "Owner", "canned_response", "quiet"]

logger = logging.getLogger("reproq.metrics")


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """The bounds that keep the endpoint up under load or abuse."""

    header_timeout: float = 5.0
    """Seconds a client has to finish its TLS handshake and request headers."""
    write_timeout: float = 10.0
    """Seconds one write to a client may block."""
    handlers: int = 8
    """Threads answering complete requests."""
    max_streams: int = 16
    """``/events`` streams open at once (each holds a thread)."""
    max_pending: int = 1024
    """Connections whose headers are being read at once."""
    max_queued: int = 1024
    """Complete requests waiting for a handler."""
    keepalive: float = 15.0
    """Seconds between ``: ping`` comments on an idle event stream."""


def canned_response(status: int, reason: str) -> bytes:
    """A whole HTTP/1.0 answer with a JSON ``{"error": reason}`` body, sent without a handler."""
    body = (json.dumps({"error": reason}) + "\n").encode()
    phrase = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.0 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def quiet(what: str, exc: BaseException) -> None:
    """Log a broken connection as one line (no traceback): clients come and go."""
    detail = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    logger.info("metrics: %s (%s: %s)", what, type(exc).__name__, detail or "-")


class _Writer(io.BufferedIOBase):
    """A socket as an unbuffered binary file whose writes send everything."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes


class Owner(Protocol):
    """What a handler reads from the server that owns it
    (:class:`~reproq.runtime.httpserver.MetricsServer`)."""

    token: bytes | None
    limiter: AuthLimiter
    registry: CollectorRegistry
    events: EventBroker | None
    limits: Limits
    streams: threading.BoundedSemaphore

    def health(self) -> HealthReport:
        """The ``/healthz`` verdict now."""

    @property
    def closing(self) -> bool:
        """True once the server is shutting down."""


class Handler(BaseHTTPRequestHandler):
    """Answers one request whose head (request line and headers) is already read.

    Construction answers it; afterwards :attr:`stream` is the ``/events`` stream to run
    on a thread of its own, or None when the connection can be closed.
    """

    protocol_version = "HTTP/1.0"
    server_version = "reproq"
    sys_version = ""

    def __init__(self, sock: socket.socket, host: str, head: bytes, owner: Owner) -> None:
        self.owner = owner
        self.stream: EventStream | None = None
        self._head = head
        self._head_only = False
        super().__init__(sock, (host, 0), None)  # type: ignore[arg-type]

    def setup(self) -> None:
        """Read from the head the intake collected; write straight to the socket."""
        self.connection = self.request
        self.rfile = io.BytesIO(self._head)
        self.wfile = _Writer(self.request)

    def finish(self) -> None:
        """Nothing to flush; the server closes the socket (or hands it to the stream)."""

    # -- routing ------------------------------------------------------------------------

    def do_GET(self) -> None:
        """Route GET requests."""
        path, _, query = self.path.partition("?")
        if path not in ("/", "/metrics", "/healthz", "/health", "/events"):
            self._send_json(404, {"error": "not found"})
            return
        if not self._authorized():
            return
        if path == "/metrics":
            self._metrics()
        elif path == "/events":
            self._events(query)
        elif path == "/":
            body = b"reproq: see /metrics, /healthz and /events\n"
            self._send(200, body, "text/plain; charset=utf-8")
        else:
            self._healthz(query)

    def do_HEAD(self) -> None:
        """Answer HEAD like GET without a body (probes often use it)."""
        self._head_only = True
        self.do_GET()

    def _not_allowed(self) -> None:
        self._send_json(405, {"error": "method not allowed"}, {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _authorized(self) -> bool:
        """The bearer check (the client's address passed the intake already)."""
        owner = self.owner
        if owner.token is None or credential_valid(
            self.headers.get("Authorization", ""), owner.token
        ):
            return True
        host = self.client_address[0]
        if not owner.limiter.failed(host):
            logger.debug("metrics: %s %s from %s: rate limited", self.command, self.path, host)
            self._send_json(429, {"error": "rate limited"})
            return False
        logger.warning("metrics: unauthorized %s %s from %s", self.command, self.path, host)
        self._send_json(
            401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"}
        )
        return False

    # -- answers ------------------------------------------------------------------------

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encoder(self.owner.registry)
        except Exception as exc:
            # A broken collector must cost one scrape, not the endpoint.
            logger.exception("metrics: collecting failed")
            self._send_json(500, {"error": f"collecting metrics failed: {exc}"})
            return
        self._send(200, body, content_type)

    def _healthz(self, query: str) -> None:
        report = self.owner.health()
        accept = self.headers.get("Accept", "")
        if "application/json" in accept or "format=json" in query.split("&"):
            self._send_json(report.http_status, report.to_json())
        else:
            self._send(report.http_status, report.text.encode(), "text/plain; charset=utf-8")

    def _events(self, query: str) -> None:
        broker = self.owner.events
        if broker is None:
            self._send(404, b"events not configured", "text/plain; charset=utf-8")
            return
        try:
            wanted = EventFilter.parse(query)
        except ValueError as exc:
            self._send(400, str(exc).encode(), "text/plain; charset=utf-8")
            return
        if self._head_only:
            self._stream_head()
            return
        if not self.owner.streams.acquire(blocking=False):
            self._send_json(503, {"error": "too many event streams"})
            return
        try:
            self._stream_head()
            self.stream = EventStream(self, broker.subscribe(), wanted)
        except BaseException:
            self.owner.streams.release()
            raise

    def _stream_head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = (json.dumps(body, sort_keys=True) + "\n").encode()
        self._send(status, payload, "application/json", headers)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not self._head_only:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines go to the ``reproq.metrics`` logger at DEBUG, not to stderr."""
        logger.debug("%s %s", self.client_address[0], format % args)


class EventStream:
    """An open ``/events`` response: the buffered events, then live ones, until either
    side goes away. Runs on its own thread and releases its stream slot when done."""

    def __init__(self, handler: Handler, subscription: Subscription, wanted: EventFilter) -> None:
        self.sock: socket.socket = handler.connection
        self.host = handler.client_address[0]
        self.owner = handler.owner
        self.subscription = subscription
        self.wanted = wanted

    def run(self) -> None:
        """Write events until the client leaves or the server closes."""
        sock, owner = self.sock, self.owner
        keepalive = owner.limits.keepalive
        try:
            for old in self.subscription.backlog:
                if self.wanted.matches(old):
                    sock.sendall(old.to_sse())
            ping_at = time.monotonic() + keepalive
            while not owner.closing:
                event = self.subscription.next(timeout=min(1.0, keepalive))
                if event is not None and self.wanted.matches(event):
                    sock.sendall(event.to_sse())
                if time.monotonic() >= ping_at:
                    sock.sendall(b": ping\n\n")
                    ping_at = time.monotonic() + keepalive
        except (OSError, ssl.SSLError) as exc:
            quiet(f"event stream to {self.host} ended", exc)
        finally:
            self.subscription.close()
            owner.streams.release()
            with contextlib.suppress(OSError):
                sock.close()
