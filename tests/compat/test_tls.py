"""TLS and mutual TLS on the metrics endpoint (Reproq Worker's ``--metrics-tls-*``), with
certificates made here by the ``openssl`` command."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reproq.config import MetricsSettings, load_settings
from reproq.errors import ConfigError, ReproqError
from reproq.runtime.health import HealthReport
from reproq.runtime.httphandler import Limits
from reproq.runtime.httpserver import MetricsServer
from reproq.runtime.metrics import RuntimeMetrics

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(
    OPENSSL is None, reason="the openssl command is needed to make test certificates"
)


def _openssl(*args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=60)


def _signed(folder: Path, name: str, ca: tuple[Path, Path] | None, *, server: bool) -> Path:
    """Key and certificate ``name``: self-signed when *ca* is None, else signed by it."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    subject = "/CN=127.0.0.1" if server else f"/CN={name}"
    if ca is None:
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", subject,
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
        )  # fmt: skip
        return cert
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", subject)  # fmt: skip
    extensions = folder / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    extensions.write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extensions),
    )  # fmt: skip
    return cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = _signed(folder, "ca", None, server=True)
    ca_pair = (ca, folder / "ca.key")
    server = _signed(folder, "server", ca_pair, server=True)
    client = _signed(folder, "client", ca_pair, server=False)
    other_ca = _signed(folder, "other-ca", None, server=True)
    stranger = _signed(folder, "stranger", (other_ca, folder / "other-ca.key"), server=False)
    return {
        "ca": ca,
        "server": server,
        "server.key": folder / "server.key",
        "client": client,
        "client.key": folder / "client.key",
        "stranger": stranger,
        "stranger.key": folder / "stranger.key",
    }


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    servers: list[MetricsServer] = []

    def start(**settings: object) -> MetricsServer:
        server = MetricsServer(
            MetricsSettings(enabled=True, addr="127.0.0.1:0", **settings),  # type: ignore[arg-type]
            registry=RuntimeMetrics(process_metrics=False).registry,
            health=lambda: HealthReport(ok=True),
            limits=Limits(header_timeout=2.0),
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _client(pki: dict[str, Path], cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert is not None:
        context.load_cert_chain(str(pki[cert]), str(pki[f"{cert}.key"]))
    return context


def _get(
    server: MetricsServer, context: ssl.SSLContext, path: str = "/healthz"
) -> tuple[int, bytes]:
    host, port = server.address
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_https_with_a_certificate_and_key(
    serve: Callable[..., MetricsServer], pki: dict[str, Path]
) -> None:
    server = serve(tls_cert=pki["server"], tls_key=pki["server.key"])
    assert server.url.startswith("https://127.0.0.1:")
    assert _get(server, _client(pki)) == (200, b"ok")
    status, body = _get(server, _client(pki), "/metrics")
    assert status == 200 and b"reproq_tasks_claimed_total" in body


def test_plain_http_to_a_tls_endpoint_gets_no_answer(
    serve: Callable[..., MetricsServer], pki: dict[str, Path]
) -> None:
    server = serve(tls_cert=pki["server"], tls_key=pki["server.key"])
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        try:
            reply = sock.recv(4096)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"HTTP/")
    assert _get(server, _client(pki)) == (200, b"ok")


def test_mutual_tls_refuses_a_client_without_a_certificate(
    serve: Callable[..., MetricsServer], pki: dict[str, Path]
) -> None:
    server = serve(tls_cert=pki["server"], tls_key=pki["server.key"], tls_client_ca=pki["ca"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(server, _client(pki))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(server, _client(pki, "stranger"))
    assert _get(server, _client(pki, "client")) == (200, b"ok")
    assert "client certificate required" in server.describe()


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path, pki: dict[str, Path]) -> None:
    missing = tmp_path / "nope.pem"
    server = MetricsServer(
        MetricsSettings(enabled=True, addr="127.0.0.1:0", tls_cert=missing, tls_key=missing),
        registry=RuntimeMetrics(process_metrics=False).registry,
        health=lambda: HealthReport(ok=True),
    )
    with pytest.raises(ReproqError, match=f"cannot load tls_cert {missing}"):
        server.bind()
    server = MetricsServer(
        MetricsSettings(
            enabled=True,
            addr="127.0.0.1:0",
            tls_cert=pki["server"],
            tls_key=pki["server.key"],
            tls_client_ca=missing,
        ),
        registry=RuntimeMetrics(process_metrics=False).registry,
        health=lambda: HealthReport(ok=True),
    )
    with pytest.raises(ReproqError, match=f"cannot load tls_client_ca {missing}"):
        server.bind()


def test_tls_keys_load_from_a_config_file_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "reproq.toml"
    path.write_text(
        '[metrics]\naddr = "127.0.0.1:9443"\ntls_cert = "certs/server.pem"\n'
        'tls_key = "certs/server.key"\ntls_client_ca = "/etc/ca.pem"\n'
    )
    metrics = load_settings(path, env={}).metrics
    assert metrics.tls_cert == tmp_path / "certs/server.pem"
    assert metrics.tls_key == tmp_path / "certs/server.key"
    assert metrics.tls_client_ca == Path("/etc/ca.pem")


def test_a_certificate_without_its_key_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "reproq.toml"
    path.write_text('[metrics]\naddr = "127.0.0.1:9443"\ntls_cert = "/etc/cert.pem"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.key == "metrics.tls_cert"
    assert caught.value.line == 3
    assert "needs metrics.tls_key" in str(caught.value)
