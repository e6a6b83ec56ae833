"""Who may use the metrics endpoint: client networks, bearer credentials, failed-auth limits.

The rules are Reproq Worker's, so a reproq-django deployment keeps working unchanged:

- ``allowed_cidrs``: a client whose address is in none of the networks is refused.
- ``auth_token``: a request must carry ``Authorization: Bearer <credential>`` where the
  credential is the token itself, or a JWT signed with it (HS256) as reproq-django issues
  to its dashboard and TUI: audience ``reproq-tui`` or ``reproq-worker``, issuer
  ``reproq-django`` when given, ``superuser`` true, not expired.
- Failed attempts (a refused address, a missing or wrong credential) are counted per
  client address in a window of ``auth_window`` seconds; past ``auth_limit`` of them the
  answer is 429 instead of 403/401 until the window ends. At most ``auth_max_entries``
  addresses are tracked, so a flood of addresses cannot exhaust memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_AUTH_LIMIT",
    "DEFAULT_AUTH_MAX_ENTRIES",
    "DEFAULT_AUTH_WINDOW",
    "AuthLimiter",
    "IPNetwork",
    "client_allowed",
    "credential_valid",
    "networks",
]

DEFAULT_AUTH_LIMIT = 30
"""Failed attempts per client address and window before 429 (Reproq Worker's default)."""

DEFAULT_AUTH_WINDOW = 60.0
"""Seconds of the failed-attempt window."""

DEFAULT_AUTH_MAX_ENTRIES = 1000
"""Client addresses tracked at most."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_JWT_AUDIENCES = frozenset({"reproq-tui", "reproq-worker"})
_JWT_ISSUER = "reproq-django"


def networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The networks of *cidrs* (``localhost`` stands for 127.0.0.1 and ::1, as upstream)."""
    result: list[IPNetwork] = []
    for cidr in cidrs:
        if cidr.strip().lower() == "localhost":
            result += [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")]
        else:
            result.append(ipaddress.ip_network(cidr.strip(), strict=False))
    return tuple(result)


def client_allowed(address: str, allowed: tuple[IPNetwork, ...]) -> bool:
    """Whether client *address* is in one of *allowed* (every client when there are none)."""
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # an IPv6 socket reports IPv4 clients as ::ffff:a.b.c.d
    return any(ip.version == net.version and ip in net for net in allowed)


def credential_valid(header: str, token: bytes) -> bool:
    """Whether an ``Authorization`` *header* carries *token* or a JWT signed with it."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    credential = given.strip().encode()
    if hmac.compare_digest(credential, token):
        return True
    return _jwt_valid(credential, token)


def _b64decode(part: bytes) -> bytes:
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def _jwt_valid(credential: bytes, secret: bytes) -> bool:
    """reproq-django's dashboard/TUI token: HS256 over ``header.payload`` with *secret*."""
    parts = credential.split(b".")
    if len(parts) != 3 or not secret:
        return False
    try:
        header = json.loads(_b64decode(parts[0]))
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        return False
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return False
    expected = hmac.new(secret, parts[0] + b"." + parts[1], hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return False
    try:
        payload = json.loads(_b64decode(parts[1]))
    except (ValueError, binascii.Error):
        return False
    if not isinstance(payload, dict):
        return False
    expires = payload.get("exp")
    expired = isinstance(expires, int | float) and int(expires) < int(time.time())
    if expired and not isinstance(expires, bool):
        return False
    audience = payload.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(a, str) and a in _JWT_AUDIENCES for a in audiences):
        return False
    issuer = payload.get("iss")
    if isinstance(issuer, str) and issuer != _JWT_ISSUER:
        return False
    return payload.get("superuser") is True


@dataclass(slots=True)
class _Entry:
    count: int
    window_start: float
    last_seen: float


class AuthLimiter:
    """Counts failed attempts per client address in fixed windows (thread-safe)."""

    def __init__(
        self,
        *,
        limit: int = DEFAULT_AUTH_LIMIT,
        window: float = DEFAULT_AUTH_WINDOW,
        max_entries: int = DEFAULT_AUTH_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._cleaned_at = float("-inf")

    def failed(self, address: str) -> bool:
        """Count one failed attempt by *address*; False once it is over the limit (429)."""
        now = self._clock()
        key = address or "unknown"
        with self._lock:
            if len(self._entries) >= self.max_entries or now - self._cleaned_at >= self.window:
                self._clean(now)
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(count=0, window_start=now, last_seen=now)
            if now - entry.window_start >= self.window:
                entry.count, entry.window_start = 0, now
            entry.last_seen = now
            if entry.count >= self.limit:
                return False
            entry.count += 1
            return True

    @property
    def tracked(self) -> int:
        """How many addresses are tracked now."""
        with self._lock:
            return len(self._entries)

    def _clean(self, now: float) -> None:
        """Forget addresses idle for two windows, then the least recently seen over the cap."""
        stale = now - 2 * self.window
        self._entries = {k: e for k, e in self._entries.items() if e.last_seen >= stale}
        # Evict a tenth at once, so a flood of addresses does not sort on every attempt.
        excess = len(self._entries) - self.max_entries + 1
        if excess > 0:
            excess = max(excess, self.max_entries // 10)
            oldest = sorted(self._entries, key=lambda k: self._entries[k].last_seen)[:excess]
            for key in oldest:
                del self._entries[key]
        self._cleaned_at = now
