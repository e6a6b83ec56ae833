"""Every DSN form libpq accepts, each carrying a password, for the redaction tests.

Each password contains :data:`MARK`, and nothing else in a DSN does, so "the output does
not contain MARK" is the whole check that no password (or a piece of one) got through.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

MARK = "s3cr3t"
"""Part of every password below, and of nothing else."""


@dataclass(frozen=True, slots=True)
class Server:
    """Where the DSNs point: host (a name, an address or a socket directory), port, ..."""

    host: str
    port: int
    user: str
    dbname: str


def _uri_host(host: str) -> str:
    # A socket directory goes into a URI's host part percent-encoded.
    return quote(host, safe="") if host.startswith("/") else host


def connectable_forms(server: Server) -> list[tuple[str, str]]:
    """(label, DSN) pairs libpq accepts and connects with (trust auth ignores passwords)."""
    h, p, u, d = _uri_host(server.host), server.port, server.user, server.dbname
    raw = server.host
    keywords = f"host={raw} port={p} user={u}"
    encoded = quote(f"P@w/{MARK}:x y", safe="")
    return [
        ("uri", f"postgresql://{u}:Pw-{MARK}@{h}:{p}/{d}"),
        ("uri-postgres-scheme", f"postgres://{u}:Pw-{MARK}@{h}:{p}/{d}"),
        ("uri-empty-user", f"postgresql://:Pw-{MARK}@{h}:{p}/{d}?user={u}"),
        ("uri-percent-encoded", f"postgresql://{u}:{encoded}@{h}:{p}/{d}"),
        ("uri-multi-host", f"postgresql://{u}:Pw-{MARK}@{h}:{p},127.0.0.1:1/{d}"),
        (
            "uri-query-password",
            f"postgresql://{h}:{p}/{d}?user={u}&password=Pw-{MARK}&connect_timeout=5",
        ),
        (
            "uri-query-only",
            f"postgresql:///{d}?host={quote(raw, safe='/')}&port={p}&user={u}&password=Pw-{MARK}",
        ),
        ("uri-encoded-query-key", f"postgresql://{h}:{p}/{d}?user={u}&pass%77ord=Pw-{MARK}"),
        ("keyword", f"{keywords} password=Pw-{MARK} dbname={d}"),
        ("keyword-password-first", f"password=Pw-{MARK} {keywords} dbname={d}"),
        ("keyword-spaced", f"{keywords} password = Pw-{MARK} dbname={d}"),
        ("keyword-quoted", f"{keywords} password='a b {MARK} c' dbname={d}"),
        ("keyword-escaped-quote", f"{keywords} password='it\\'s {MARK}\\\\' dbname={d}"),
        ("keyword-escaped-space", f"{keywords} password=a\\ {MARK} dbname={d}"),
        ("keyword-sslpassword", f"{keywords} sslpassword=Pw-{MARK} dbname={d}"),
    ]


def text_only_forms(server: Server) -> list[tuple[str, str]]:
    """(label, DSN) pairs that must be redacted although libpq refuses them."""
    h, p, u, d = _uri_host(server.host), server.port, server.user, server.dbname
    raw = server.host
    return [
        ("keyword-mixed-case", f"host={raw} port={p} user={u} PassWord=Pw-{MARK} dbname={d}"),
        ("keyword-unterminated-quote", f"host={raw} port={p} password='a b {MARK}"),
        ("keyword-dbname-uri", f"dbname='postgresql://{u}:Pw-{MARK}@{h}:{p}/{d}' port={p}"),
        ("uri-unencoded-at", f"postgresql://{u}:P@w-{MARK}@{h}:{p}/{d}"),
        ("uri-unclosed-bracket", f"postgresql://{u}:Pw-{MARK}@[::1/{d}"),
    ]


def all_forms(server: Server) -> list[tuple[str, str]]:
    """Both lists."""
    return connectable_forms(server) + text_only_forms(server)


UNREACHABLE = Server(host="127.0.0.1", port=1, user="bob", dbname="app")
"""Nothing listens on port 1: connecting fails at once, for the database-down paths."""
