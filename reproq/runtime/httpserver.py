"""The HTTP endpoint of ``reproq up``: ``/metrics`` (Prometheus) and ``/healthz`` (JSON).

A small standard-library server on its own threads. Access control, when configured in
``[metrics]``, applies to every path, ``/healthz`` included:

1. ``allowed_cidrs``: a client whose address is in none of the networks gets 403;
2. ``auth_token``: a request without ``Authorization: Bearer <token>`` gets 401.

Binding to an address other than loopback with neither configured is allowed but logged
as a warning: the metrics name queues and tasks, which is an information leak.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from reproq.config import MetricsSettings
from reproq.errors import ReproqError
from reproq.runtime.health import HealthReport

__all__ = ["MetricsServer", "client_allowed"]

logger = logging.getLogger("reproq.metrics")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def client_allowed(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether client *address* is in one of *networks* (every client when there are none)."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # an IPv6 socket reports IPv4 clients as ::ffff:a.b.c.d
    return any(ip.version == net.version and ip in net for net in networks)


class _Server(ThreadingHTTPServer):
    # Request threads must not keep a stopping process alive.
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves ``/metrics`` from *registry* and ``/healthz`` from *health*."""

    def __init__(
        self,
        settings: MetricsSettings,
        *,
        registry: CollectorRegistry,
        health: Callable[[], HealthReport],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.health = health
        self._networks = _networks(settings.allowed_cidrs)
        self._token = settings.auth_token.encode() if settings.auth_token else None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when ``addr`` asked for 0."""
        if self._httpd is None:
            return self.settings.host, self.settings.port
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Base URL of the endpoint (``http://host:port``)."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def describe(self) -> str:
        """One line of settings for the start-up log (never the token)."""
        auth = "bearer token required" if self._token else "no auth"
        cidrs = ",".join(self.settings.allowed_cidrs) or "any client"
        return f"{self.url}/metrics and /healthz ({auth}; allowed: {cidrs})"

    def bind(self) -> None:
        """Open the listening socket (raises :class:`ReproqError` when it cannot)."""
        host = self.settings.host
        server_class = _Server6 if ":" in host else _Server
        try:
            self._httpd = server_class((host, self.settings.port), self._handler_class())
        except OSError as exc:
            raise ReproqError(
                f"metrics: cannot listen on {self.settings.addr}: {exc.strerror or exc}"
            ) from exc
        if not self.settings.is_loopback and self._token is None and not self._networks:
            logger.warning(
                "metrics endpoint %s is reachable from other hosts without auth_token or "
                "allowed_cidrs: anyone who can connect sees queue and task names",
                self.url,
            )

    def serve(self) -> None:
        """Answer requests until :meth:`close` (binds first if needed); blocks."""
        if self._httpd is None:
            self.bind()
        assert self._httpd is not None
        self._httpd.serve_forever(poll_interval=0.25)

    def run(self, stop: threading.Event) -> None:
        """Serve until *stop* is set, then close the socket (binds first if needed).

        This is the runtime's supervised form; a later call binds again.
        """
        if self._httpd is None:
            self.bind()
        httpd = self._httpd
        assert httpd is not None

        def watch() -> None:
            stop.wait()
            httpd.shutdown()  # returns at once if serve_forever already ended

        threading.Thread(target=watch, name="reproq-metrics-stop", daemon=True).start()
        try:
            httpd.serve_forever(poll_interval=0.25)
        finally:
            httpd.server_close()
            if self._httpd is httpd:
                self._httpd = None

    def start(self) -> None:
        """Bind and serve on a daemon thread."""
        if self._httpd is None:
            self.bind()
        self._thread = threading.Thread(target=self.serve, name="reproq-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            owner = server

        return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: MetricsServer
    server_version = "reproq"
    sys_version = ""

    def do_GET(self) -> None:
        """Route GET requests."""
        if not self._allowed():
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path in ("/healthz", "/health"):
            self._healthz()
        elif path == "/":
            self._send(200, b"reproq: see /metrics and /healthz\n", "text/plain; charset=utf-8")
        else:
            self._send_json(404, {"error": "not found"})

    def do_HEAD(self) -> None:
        """Answer HEAD like GET without a body (probes often use it)."""
        self._head_only = True
        self.do_GET()

    def _allowed(self) -> bool:
        owner = self.owner
        if not client_allowed(self.client_address[0], owner._networks):
            self._send_json(403, {"error": "client address not allowed"})
            return False
        if owner._token is not None:
            header = self.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), owner._token
            ):
                self._send_json(
                    401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"}
                )
                return False
        return True

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

    def _healthz(self) -> None:
        report = self.owner.health()
        self._send_json(report.http_status, report.to_json())

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
        if not getattr(self, "_head_only", False):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines go to the ``reproq.runtime.metrics`` logger at DEBUG, not to stderr."""
        logger.debug("%s %s", self.address_string(), format % args)
