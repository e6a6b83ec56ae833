"""Every connection notices a vanished server: TCP keepalives and tcp_user_timeout."""

from __future__ import annotations

from reproq.db import TCP_OPTIONS, connect


def test_connections_get_keepalives_and_a_tcp_user_timeout(dsn: str) -> None:
    conn = connect(dsn)
    try:
        used = conn.info.get_parameters()
    finally:
        conn.close()
    for key, value in TCP_OPTIONS.items():
        assert used[key] == value


def test_tcp_settings_in_the_dsn_win(dsn: str) -> None:
    conn = connect(f"{dsn} keepalives_idle=42 tcp_user_timeout=7000")
    try:
        used = conn.info.get_parameters()
    finally:
        conn.close()
    assert used["keepalives_idle"] == "42"
    assert used["tcp_user_timeout"] == "7000"
    assert used["keepalives_count"] == TCP_OPTIONS["keepalives_count"]
