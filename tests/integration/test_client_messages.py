"""
client_min_messages: pgpool's own log messages at or above it reach the client as
NoticeResponse, as pgpool-II sends them (``client_min_messages = log`` with ``log_statement``
gives the client ``LOG:  statement: select 1``), per session with PGPOOL SET, and never in
the middle of another message.
"""

from __future__ import annotations

import socket
from typing import Any

import psycopg
import pytest

from pgpool_py.cluster import HOST, SERVER_USER
from pgpool_py.protocol import messages as m

MODES = ["streaming_replication", "raw"]


def collect_notices(conn: psycopg.Connection[Any]) -> list[tuple[str | None, str | None, str | None]]:
    notices: list[tuple[str | None, str | None, str | None]] = []
    conn.add_notice_handler(lambda diag: notices.append((diag.severity, diag.sqlstate, diag.message_primary)))
    return notices


@pytest.mark.parametrize("mode", MODES)
def test_log_messages_reach_the_client_at_client_min_messages(pgpool_factory: Any, mode: str) -> None:
    server = pgpool_factory(extra={"backend_clustering_mode": mode, "client_min_messages": "log",
                                   "log_statement": True})
    with server.connect(autocommit=True) as conn:
        notices = collect_notices(conn)
        assert conn.execute("select 1").fetchone() == (1,)
        assert notices == [("LOG", "00000", "statement: select 1")]
    assert "LOG:  statement: select 1" in server.log_text()  # the server log has it too


def test_pgpool_set_client_min_messages_is_per_session(pgpool_factory: Any) -> None:
    server = pgpool_factory()
    with server.connect(autocommit=True) as conn, server.connect(autocommit=True) as other:
        notices, others = collect_notices(conn), collect_notices(other)
        conn.execute("PGPOOL SET log_statement = on")
        other.execute("PGPOOL SET log_statement = on")
        conn.execute("select 1")
        assert notices == []  # logged, but LOG is below the default notice for clients
        conn.execute("PGPOOL SET client_min_messages = log")
        conn.execute("select 2")
        other.execute("select 3")
        # As in pgpool-II, the PGPOOL SET is logged after it took effect.
        assert notices == [("LOG", "00000", "statement: PGPOOL SET client_min_messages = log"),
                           ("LOG", "00000", "statement: select 2")]
        assert others == []
        # DEBUG records go to this client although the server log (log_min_messages = warning) skips them.
        conn.execute("PGPOOL SET client_min_messages = debug1")
        notices.clear()
        conn.execute("PGPOOL SET client_idle_limit = 0")
        assert ("DEBUG", "00000", 'parameter "client_idle_limit" set to "0" for this session') in notices
        conn.execute("PGPOOL RESET client_min_messages")
        notices.clear()
        conn.execute("select 4")
        assert notices == []
    assert "set to" not in server.log_text()


def _read_until_ready(sock: socket.socket, buf: bytearray, count: int) -> None:
    while True:
        msgs, _ = m.split_messages(buf)
        if sum(1 for typ, _s, _e in msgs if typ == ord("Z")) >= count:
            return
        data = sock.recv(1 << 20)
        assert data, "the connection closed"
        buf += data


@pytest.mark.parametrize("mode", MODES)
def test_a_notice_never_splits_a_message(pgpool_factory: Any, mode: str) -> None:
    """A statement logged while a huge row is half forwarded: its notice waits for the row's end."""
    server = pgpool_factory(extra={"backend_clustering_mode": mode, "client_min_messages": "log",
                                   "log_statement": True})
    big = 8 * 1024 * 1024
    with socket.create_connection((HOST, server.port), timeout=20) as sock:
        sock.sendall(m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test"}))
        login = bytearray()
        _read_until_ready(sock, login, 1)
        sock.sendall(m.query(f"select repeat('x', {big})"))
        stream = bytearray()
        while len(stream) < 256 * 1024:  # well into the DataRow
            stream += sock.recv(65536)
        sock.sendall(m.query("select 2"))
        _read_until_ready(sock, stream, 2)
        sock.sendall(m.query("select 3"))  # a notice that waited is out before this answer at the latest
        _read_until_ready(sock, stream, 3)
    msgs, consumed = m.split_messages(stream)
    assert consumed == len(stream)
    kinds = [chr(stream[start]) for _t, start, _e in msgs]
    rows = [end - start for typ, start, end in msgs if typ == ord("D")]
    assert rows[0] > big and kinds.count("Z") == 3
    notices = [m.parse_error_fields(stream[start + 5 : end])["M"] for typ, start, end in msgs if typ == ord("N")]
    assert notices == [f"statement: select repeat('x', {big})", "statement: select 2", "statement: select 3"]


def test_an_error_that_ends_the_session_is_no_notice_first(pgpool_factory: Any) -> None:
    """The server log has it at WARNING; the client gets the ErrorResponse alone (at the
    default client_min_messages, WARNING records are sent as notices)."""
    server = pgpool_factory(extra={"backend_clustering_mode": "raw"})
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test"}))
        _read_until_ready(sock, bytearray(), 1)
        sock.sendall(b"Q\x80\x00\x00\x00SELECT 1")  # a length of 2 GB
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    msgs, _ = m.split_messages(reply)
    assert [chr(reply[start]) for _t, start, _e in msgs] == ["E"]
    assert "WARNING:  invalid message length" in server.log_text()
