"""The HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` and ``/events`` (SSE).

A small standard-library server built to stay up when clients misbehave:

- **One intake thread** accepts connections, refuses addresses outside ``allowed_cidrs``
  at once (before reading anything), runs TLS handshakes and reads request headers,
  all without blocking. A client must finish its headers within ``header_timeout``
  (5 s, like Reproq Worker) or it is cut off; a slow or silent client never holds a
  thread.
- **A fixed pool of handler threads** answers complete requests; ``/events`` streams run
  on threads of their own, at most ``max_streams`` at once. Beyond the bounds
  (``max_pending`` connections being read, ``max_queued`` requests waiting for a
  handler) a connection is answered 503 and closed, never queued without end.
- The listen backlog is 512 (``listen()`` caps it at the system's ``somaxconn``), so a
  burst of clients waits in the kernel rather than being refused.
- A connection that breaks (reset, broken pipe, timeout, failed TLS handshake) costs one
  line in the log, never a traceback.

Access control (:mod:`reproq.runtime.httpauth`) applies to every path, ``/healthz``
included. TLS, and mutual TLS with ``tls_client_ca``, use the standard ``ssl`` module.
Binding to an address other than loopback with neither a token, a CIDR list nor client
certificates is allowed but logged as a warning: the metrics name queues and tasks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from reproq.config import MetricsSettings
from reproq.errors import ReproqError
from reproq.runtime.events import EventBroker
from reproq.runtime.health import HealthReport
from reproq.runtime.httpauth import AuthLimiter, client_allowed, networks
from reproq.runtime.httphandler import Handler, Limits, canned_response, quiet

__all__ = ["BACKLOG", "MetricsServer", "client_allowed"]

logger = logging.getLogger("reproq.metrics")

BACKLOG = 512
"""Listen backlog (the kernel caps it at ``net.core.somaxconn``)."""

_MAX_HEADER_BYTES = 64 * 1024
_LINGER = 1.0  # seconds a refused connection may still send before it is closed
_ACCEPT_BATCH = 64


@dataclass(slots=True, eq=False)
class _Intake:
    """A connection the intake thread is reading (or refusing)."""

    sock: socket.socket
    host: str
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    handshaking: bool = False
    refused: bool = False


class MetricsServer:
    """Serves ``/metrics`` from *registry*, ``/healthz`` from *health*, ``/events`` from
    *events* (404 when None), within *limits*."""

    def __init__(
        self,
        settings: MetricsSettings,
        *,
        registry: CollectorRegistry,
        health: Callable[[], HealthReport],
        events: EventBroker | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.health = health
        self.events = events
        self.limits = limits or Limits()
        self.networks = networks(settings.allowed_cidrs)
        self.token = settings.auth_token.encode() if settings.auth_token else None
        self.limiter = AuthLimiter(
            limit=settings.auth_limit,
            window=settings.auth_window,
            max_entries=settings.auth_max_entries,
        )
        self.streams = threading.BoundedSemaphore(self.limits.max_streams)
        self._tls: ssl.SSLContext | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._closing = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._work: queue.Queue[tuple[socket.socket, str, bytes] | None] = queue.Queue(
            maxsize=self.limits.max_queued
        )
        self._handlers: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        # Owned by the intake thread, made anew each time it serves.
        self._selector: selectors.BaseSelector
        self._intakes: dict[socket.socket, _Intake] = {}

    # -- facts --------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once :meth:`close` (or the supervised stop) began."""
        return self._closing.is_set()

    @property
    def tls(self) -> bool:
        """Whether the endpoint speaks HTTPS."""
        return self.settings.tls_cert is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when ``addr`` asked for 0."""
        if self._listener is None:
            return self.settings.host, self.settings.port
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Base URL of the endpoint (``http://host:port`` or ``https://...``)."""
        host, port = self.address
        scheme = "https" if self.tls else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def describe(self) -> str:
        """One line of settings for the start-up log (never the token)."""
        auth = "bearer token required" if self.token else "no auth"
        if self.settings.tls_client_ca is not None:
            auth += ", client certificate required"
        cidrs = ",".join(self.settings.allowed_cidrs) or "any client"
        return f"{self.url}/metrics, /healthz and /events ({auth}; allowed: {cidrs})"

    # -- lifecycle ----------------------------------------------------------------------

    def bind(self) -> None:
        """Load TLS material and open the listening socket (:class:`ReproqError` if not)."""
        if self._listener is not None:
            return
        self._tls = self._tls_context()
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(BACKLOG)
        except OSError as exc:
            listener.close()
            raise ReproqError(
                f"metrics: cannot listen on {self.settings.addr}: {exc.strerror or exc}"
            ) from exc
        listener.setblocking(False)
        self._listener = listener
        self._closing.clear()
        open_to_all = self.token is None and not self.networks
        if not self.settings.is_loopback and open_to_all and self.settings.tls_client_ca is None:
            logger.warning(
                "metrics endpoint %s is reachable from other hosts without auth_token, "
                "allowed_cidrs or tls_client_ca: anyone who can connect sees queue and task names",
                self.url,
            )

    def _tls_context(self) -> ssl.SSLContext | None:
        settings = self.settings
        if settings.tls_cert is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ReproqError(
                f"metrics: cannot load tls_cert {settings.tls_cert} / tls_key {settings.tls_key}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from exc
        if settings.tls_client_ca is not None:
            try:
                context.load_verify_locations(cafile=str(settings.tls_client_ca))
            except (OSError, ssl.SSLError) as exc:
                raise ReproqError(
                    f"metrics: cannot load tls_client_ca {settings.tls_client_ca}: "
                    f"{getattr(exc, 'strerror', None) or exc}"
                ) from exc
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def serve(self) -> None:
        """Answer requests until :meth:`close` (binds first if needed); blocks."""
        self.bind()
        listener = self._listener
        assert listener is not None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._done.clear()
        self._work = queue.Queue(maxsize=self.limits.max_queued)
        self._handlers = [
            threading.Thread(target=self._handle_loop, name=f"reproq-metrics-{i}", daemon=True)
            for i in range(self.limits.handlers)
        ]
        for thread in self._handlers:
            thread.start()
        try:
            self._intake_loop(listener, self._wake_r)
        finally:
            for _ in self._handlers:
                with contextlib.suppress(queue.Full):
                    self._work.put_nowait(None)
            listener.close()
            self._wake_r.close()
            self._wake_w.close()
            if self._listener is listener:
                self._listener = None
            self._done.set()

    def run(self, stop: threading.Event) -> None:
        """Serve until *stop* is set, then close the socket (binds first if needed).

        This is the runtime's supervised form; a later call binds again.
        """
        self.bind()

        def watch() -> None:
            stop.wait()
            self._request_close()

        threading.Thread(target=watch, name="reproq-metrics-stop", daemon=True).start()
        self.serve()

    def start(self) -> None:
        """Bind and serve on a daemon thread."""
        self.bind()
        self._done.clear()
        self._thread = threading.Thread(target=self.serve, name="reproq-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        self._request_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        elif self._listener is not None and self._done.is_set():
            self._listener.close()  # bound but never served
            self._listener = None
        self._done.wait(timeout=5)

    def _request_close(self) -> None:
        self._closing.set()
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"x")

    # -- intake: accept, refuse, handshake, read headers ----------------------------------

    def _intake_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        selector = self._selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, None)
        selector.register(wake, selectors.EVENT_READ, wake)
        intakes = self._intakes = {}
        try:
            while not self._closing.is_set():
                now = time.monotonic()
                nearest = min((i.deadline for i in intakes.values()), default=now + 1.0)
                for key, _ in selector.select(max(0.0, min(nearest - now, 1.0))):
                    if key.data is None:
                        self._accept(listener)
                    elif key.data is wake:
                        with contextlib.suppress(OSError):
                            wake.recv(64)
                    else:
                        self._advance(key.data)
                self._expire()
        finally:
            for intake in list(intakes.values()):
                self._drop(intake)
            selector.close()

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors and the like: keep serving the others.
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                logger.warning("metrics: cannot accept a connection: %s", exc.strerror)
                return
            host = str(address[0])
            sock.setblocking(False)
            now = time.monotonic()
            if len(self._intakes) >= self.limits.max_pending:
                self._refuse(sock, host, 503, "server busy")
            elif not client_allowed(host, self.networks):
                if self.limiter.failed(host):
                    logger.warning("metrics: denied %s (not in allowed_cidrs)", host)
                    self._refuse(sock, host, 403, "client address not allowed")
                else:
                    logger.debug("metrics: denied %s (not in allowed_cidrs; rate limited)", host)
                    self._refuse(sock, host, 429, "rate limited")
            else:
                intake = _Intake(sock=sock, host=host, deadline=now + self.limits.header_timeout)
                if self._tls is not None:
                    intake.sock = self._tls.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                    intake.handshaking = True
                self._intakes[intake.sock] = intake
                self._selector.register(intake.sock, selectors.EVENT_READ, intake)
                if intake.handshaking:
                    self._advance(intake)

    def _refuse(self, sock: socket.socket, host: str, status: int, reason: str) -> None:
        """Answer *status* without reading the request, then close after a short linger.

        Closing a socket with unread input makes the kernel reset the connection, which
        can destroy the answer before the client reads it; so a refused connection may
        still send for a moment, and what it sends is discarded. Over TLS there is no
        handshake to spend on it: it is just closed.
        """
        if self._tls is not None or len(self._intakes) >= 2 * self.limits.max_pending:
            sock.close()
            return
        with contextlib.suppress(OSError):
            sock.send(canned_response(status, reason))
            sock.shutdown(socket.SHUT_WR)
        intake = _Intake(sock=sock, host=host, deadline=time.monotonic() + _LINGER, refused=True)
        self._intakes[sock] = intake
        self._selector.register(sock, selectors.EVENT_READ, intake)

    def _advance(self, intake: _Intake) -> None:
        """Take the next step of a handshake or a read; hand a complete request over."""
        sock, selector = intake.sock, self._selector
        try:
            if intake.refused:
                if not sock.recv(4096):
                    self._drop(intake)
                return
            if intake.handshaking:
                assert isinstance(sock, ssl.SSLSocket)
                sock.do_handshake()
                intake.handshaking = False
                selector.modify(sock, selectors.EVENT_READ, intake)
            while True:
                chunk = sock.recv(16384)
                if not chunk:
                    logger.debug("metrics: %s closed before sending a request", intake.host)
                    self._drop(intake)
                    return
                intake.buffer += chunk
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    break
        except ssl.SSLWantReadError:
            return
        except ssl.SSLWantWriteError:
            selector.modify(sock, selectors.EVENT_WRITE, intake)
            return
        except (OSError, ValueError) as exc:
            if not intake.refused:
                what = "TLS handshake failed" if intake.handshaking else "aborted"
                quiet(f"connection from {intake.host}: {what}", exc)
            self._drop(intake)
            return
        end = intake.buffer.find(b"\r\n\r\n")
        if end < 0 and len(intake.buffer) <= _MAX_HEADER_BYTES:
            return
        selector.unregister(sock)
        del self._intakes[sock]
        if end < 0:
            self._reply_and_close(sock, 431, "request headers too large")
            return
        try:
            self._work.put_nowait((sock, intake.host, bytes(intake.buffer[: end + 4])))
        except queue.Full:
            self._reply_and_close(sock, 503, "server busy")

    def _expire(self) -> None:
        now = time.monotonic()
        for intake in [i for i in self._intakes.values() if i.deadline <= now]:
            if not intake.refused:
                what = "finish the TLS handshake" if intake.handshaking else "send its request"
                logger.info(
                    "metrics: %s did not %s within %gs; closed",
                    intake.host,
                    what,
                    self.limits.header_timeout,
                )
            self._drop(intake)

    def _drop(self, intake: _Intake) -> None:
        self._intakes.pop(intake.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(intake.sock)
        intake.sock.close()

    @staticmethod
    def _reply_and_close(sock: socket.socket, status: int, reason: str) -> None:
        with contextlib.suppress(OSError):
            sock.setblocking(True)
            sock.settimeout(1.0)
            sock.sendall(canned_response(status, reason))
        sock.close()

    # -- handlers -----------------------------------------------------------------------

    def _handle_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            sock, host, head = item
            if self._closing.is_set():
                sock.close()
                continue
            sock.setblocking(True)
            sock.settimeout(self.limits.write_timeout)
            try:
                handler = Handler(sock, host, head, self)
            except OSError as exc:
                quiet(f"connection from {host}: aborted", exc)
                sock.close()
                continue
            except Exception:
                # A bug in a handler must cost one request, not a handler thread.
                logger.exception("metrics: answering %s failed", host)
                sock.close()
                continue
            if handler.stream is None:
                with contextlib.suppress(OSError):
                    sock.close()
            else:
                threading.Thread(
                    target=handler.stream.run, name="reproq-metrics-events", daemon=True
                ).start()
