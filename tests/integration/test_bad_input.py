"""
Hostile and broken clients: each gets an ErrorResponse where the protocol allows one, only its
own session ends, and the next client is served.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from typing import Any

import pytest

from pgpool_py.cluster import HOST
from pgpool_py.protocol import messages as m
from tests.fix_pgpool import read_until

RAW = {"backend_clustering_mode": "raw", "num_init_children": 2}


@pytest.fixture
def server(pgpool_factory: Any, pg_cluster: Any) -> Any:
    return pgpool_factory(pg_cluster, extra=RAW)


def _talk(server: Any, payload: bytes, *, close_after_send: bool = False, timeout: float = 5) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    with socket.create_connection((HOST, server.port), timeout=timeout) as s:
        s.sendall(payload)
        if close_after_send:
            return b""
        s.shutdown(socket.SHUT_WR)  # a half-sent packet then ends in EOF, not a wait
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def _error_fields(reply: bytes) -> dict[str, str]:
    assert reply[:1] == b"E", f"expected an ErrorResponse, got {reply[:40]!r}"
    length = struct.unpack("!I", reply[1:5])[0]
    return m.parse_error_fields(reply[5 : 1 + length])


def _served(server: Any) -> None:
    assert server.psql("SELECT 42") == "42"


def _startup(user: str = "postgres", database: str = "test") -> bytes:
    return m.startup_message(m.PROTOCOL_3_0, {"user": user, "database": database})


def test_random_bytes(server: Any) -> None:
    rng = random.Random(1234)
    for _ in range(20):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        reply = _talk(server, junk)
        if reply:
            assert reply[:1] in (b"E", b"N", b"R", b"v"), reply[:20]
    _served(server)


@pytest.mark.parametrize("length", [4, 7, 20000, 0x7FFFFFFF])
def test_startup_length_out_of_range(server: Any, length: int) -> None:
    fields = _error_fields(_talk(server, struct.pack("!ii", length, m.PROTOCOL_3_0)))
    assert fields["C"] == "08P01"
    assert "length" in fields["M"]
    _served(server)


def test_truncated_startup_packet(server: Any) -> None:
    packet = _startup()
    _talk(server, packet[: len(packet) // 2], close_after_send=True)
    _served(server)


@pytest.mark.parametrize("version", [(2, 0), (4, 0), (1, 99)])
def test_unknown_protocol_version_gets_postgres_error(server: Any, version: tuple[int, int]) -> None:
    code = (version[0] << 16) | version[1]
    body = struct.pack("!i", code) + b"user\0postgres\0\0"
    fields = _error_fields(_talk(server, struct.pack("!i", len(body) + 4) + body))
    assert fields["C"] == "0A000"
    assert fields["M"].startswith(f"unsupported frontend protocol {version[0]}.{version[1]}")
    _served(server)


def test_protocol_3_2_and_pq_options_are_negotiated(server: Any) -> None:
    params = {"user": "postgres", "database": "test", "_pq_.future_option": "1"}
    body = struct.pack("!i", (3 << 16) | 2) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(struct.pack("!i", len(body) + 4) + body)
        data = b""
        while b"Z\x00\x00\x00\x05" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    assert data[:1] == b"v"
    (newest,) = struct.unpack("!i", data[5:9])
    assert newest == m.PROTOCOL_3_0
    assert b"_pq_.future_option" in data[:100]


def test_missing_user(server: Any) -> None:
    body = struct.pack("!i", m.PROTOCOL_3_0) + b"database\0test\0\0"
    fields = _error_fields(_talk(server, struct.pack("!i", len(body) + 4) + body))
    assert fields["C"] == "28000"
    _served(server)


def _logged_in(s: socket.socket) -> None:
    s.sendall(_startup())
    _until_ready(s)


def _until_ready(s: socket.socket) -> None:
    """Read the server's answer to a startup packet up to ReadyForQuery."""
    data = b""
    while not data.endswith(b"Z\x00\x00\x00\x05I"):
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk


def test_message_length_of_two_gigabytes(server: Any) -> None:
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        _logged_in(s)
        s.sendall(b"Q" + struct.pack("!I", 0x80000000) + b"SELECT 1")
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    fields = _error_fields(reply)
    assert fields["C"] == "08P01"
    _served(server)


@pytest.mark.parametrize("mode", ["raw", "streaming_replication"])
def test_a_query_whose_header_arrives_in_pieces(pgpool_factory: Any, pg_cluster: Any, mode: str) -> None:
    """The relay read a Query's length from a first read of 1-4 bytes: struct.error, logged
    as an internal error, and the session was ended (the live fuzz run found it)."""
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": mode})
    query = m.query("SELECT 41 + 1")
    with server.raw_session() as sock:
        for cut in (1, 3, 4):
            sock.sendall(query[:cut])
            time.sleep(0.05)  # two reads on the relay's side
            sock.sendall(query[cut:])
            reply = read_until(sock)
            assert b"42" in reply and b"SERROR" not in reply
    assert "internal error" not in server.log_text()


def test_client_vanishes_mid_query(server: Any) -> None:
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        _logged_in(s)
        s.sendall(m.query("SELECT pg_sleep(1)"))
    for _ in range(3):
        _served(server)


def test_silent_clients_do_not_tie_up_children(server: Any) -> None:
    """Connections that never send a startup packet must not block real clients (2 children)."""
    silent = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(10)]
    try:
        started = time.monotonic()
        _served(server)
        assert time.monotonic() - started < 3
    finally:
        for s in silent:
            s.close()


def _unix_socket(server: Any) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(server.conf_path.parent / "run" / f".s.PGSQL.{server.port}"))
    return sock


def test_slow_and_silent_local_clients_do_not_tie_up_children(server: Any) -> None:
    """
    Beyond what TCP_DEFER_ACCEPT covers: clients that stall part-way through their startup
    packet, and local ones that send nothing at all, wait without holding either of the two
    children (pgpool-II 4.3 and pgpool-py before: every child, until authentication_timeout).
    Each is served as soon as its packet is complete.
    """
    packet = _startup()
    slow = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(6)]
    silent = [_unix_socket(server) for _ in range(6)]
    try:
        for s in slow:
            s.sendall(packet[:5])
        started = time.monotonic()
        _served(server)
        assert time.monotonic() - started < 3
        for s in slow:
            s.sendall(packet[5:])
            _until_ready(s)
            s.close()
        for s in silent[:2]:
            _logged_in(s)
            s.close()
    finally:
        for s in slow + silent:
            s.close()
    _served(server)


def test_clients_that_stall_after_asking_for_ssl_do_not_tie_up_children(server: Any) -> None:
    """libpq's default (sslmode=prefer) asks for SSL first: with ssl off the "N" is answered
    while the client is pending, so stalling after it holds no child either."""
    packet = _startup()
    ssl_request = struct.pack("!ii", 8, m.SSL_REQUEST_CODE)
    gss_request = struct.pack("!ii", 8, m.GSSENC_REQUEST_CODE)
    slow = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(6)]
    try:
        for i, s in enumerate(slow):
            s.sendall(gss_request if i % 2 else ssl_request)
            assert s.recv(1) == b"N"
            if i:
                s.sendall(packet[:5])
        started = time.monotonic()
        _served(server)
        assert time.monotonic() - started < 3
        # A second SSL request after the answer is refused, as before.
        slow[0].sendall(ssl_request)
        assert b"unexpected repeated SSL" in slow[0].recv(65536)
        for s in slow[1:]:
            s.sendall(packet[5:])
            _until_ready(s)
            s.close()  # two children: the next one needs it
    finally:
        for s in slow:
            s.close()
    _served(server)


def test_a_client_beyond_the_pending_limit_gets_an_error(pgpool_factory: Any, pg_cluster: Any) -> None:
    """One child keeps at most MAX_PENDING clients whose startup packet is incomplete; the
    next one is told why it is turned away instead of finding its connection closed."""
    from pgpool_py.child.child import MAX_PENDING

    server = pgpool_factory(pg_cluster, extra={**RAW, "num_init_children": 1})
    packet = _startup()
    waiting = []
    try:
        for _ in range(MAX_PENDING):
            s = socket.create_connection((HOST, server.port), timeout=5)
            s.sendall(packet[:5])
            waiting.append(s)
        time.sleep(0.5)  # the child has taken them all in
        with socket.create_connection((HOST, server.port), timeout=5) as extra:
            extra.sendall(packet[:5])
            fields = _error_fields(extra.recv(65536))
        assert fields["C"] == "53300" and fields["M"] == "sorry, too many clients already", fields
        # The waiting ones are still served when their packet completes.
        waiting[0].sendall(packet[5:])
        _until_ready(waiting[0])
    finally:
        for s in waiting:
            s.close()


def test_a_child_passes_its_waiting_clients_on_when_it_starts_a_session(server: Any) -> None:
    """
    A child holding a client whose startup packet is incomplete does not keep it when it
    starts serving another: the client goes to the next child that is free.
    """
    packet = _startup()
    with socket.create_connection((HOST, server.port), timeout=5) as first:
        _logged_in(first)  # one child busy; the other is the only one accepting
        slow = socket.create_connection((HOST, server.port), timeout=5)
        try:
            slow.sendall(packet[:5])
            time.sleep(0.3)  # the idle child takes it in
            second = socket.create_connection((HOST, server.port), timeout=5)
            _logged_in(second)  # that child serves this one now
        except BaseException:
            slow.close()
            raise
    # The first child is free again and takes the slow client over; the second still serves.
    with slow, second:
        slow.sendall(packet[5:])
        _until_ready(slow)
        second.sendall(m.query("SELECT 1"))
        assert second.recv(65536)[:1] == b"T"


def test_names_in_the_log_prefix_cannot_forge_log_lines(pgpool_factory: Any, pg_cluster: Any) -> None:
    # %a (application_name) comes from the client: a newline in it made the rest look like a
    # log line of its own.  As in PostgreSQL, it is shown with '?' instead.
    server = pgpool_factory(pg_cluster, extra={**RAW, "log_statement": True, "log_line_prefix": "%m: %a pid %p: "})
    forged = "\n2026-01-01 00:00:00: main pid 1: LOG:  FORGED"
    startup = m.startup_message(m.PROTOCOL_3_0, {"user": "postgres", "database": "test",
                                                 "application_name": "app" + forged + "\x1b[31m"})
    _talk(server, startup + m.query("SELECT 1") + m.TERMINATE)
    _served(server)
    lines = server.log_text().splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01")], lines
    assert any("app?2026-01-01 00:00:00: main pid 1: LOG:  FORGED?[31m" in line for line in lines), lines
