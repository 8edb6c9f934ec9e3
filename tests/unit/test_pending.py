"""Pending clients and the handoff queue between children (child/pending.py), on real sockets."""

from __future__ import annotations

import math
import select
import socket
import ssl
import struct
import time
from collections.abc import Iterator

import pytest

from pgpool_py.child.pending import ACCEPTED_SSL, ANSWERED_GSS, ANSWERED_SSL, Handoff, PendingClient
from pgpool_py.protocol import messages as m

STARTUP = m.startup_message(m.PROTOCOL_3_0, {"user": "alice", "database": "app"})
SSL_REQUEST = struct.pack("!ii", 8, m.SSL_REQUEST_CODE)
GSS_REQUEST = struct.pack("!ii", 8, m.GSSENC_REQUEST_CODE)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the client's end, the server's end) of a connection."""
    client, server = socket.socketpair()
    client.settimeout(2)
    yield client, server
    client.close()
    server.close()


def test_a_startup_packet_in_pieces_completes_when_its_last_byte_arrives(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    pending = PendingClient(server, "", "", "local", math.inf)
    assert pending.read() is False  # nothing yet
    client.sendall(STARTUP[:3])
    assert pending.read() is False
    client.sendall(STARTUP[3:-1])
    assert pending.read() is False
    client.sendall(STARTUP[-1:])
    assert pending.read() is True and pending.data == STARTUP
    client.close()
    other = PendingClient(socket.socket(), "", "", "local", math.inf)
    assert other.read() is None  # not connected: gone
    other.close()


@pytest.mark.parametrize("length", [4, 7, 10009, 0x7FFFFFFF])
def test_a_length_no_packet_can_have_is_left_to_the_session(pair: tuple[socket.socket, socket.socket],
                                                           length: int) -> None:
    client, server = pair
    client.sendall(struct.pack("!i", length))
    assert PendingClient(server, "", "", "local", math.inf).read() is True


def test_encryption_requests_are_declined_once_each(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    pending = PendingClient(server, "", "", "host", math.inf)
    client.sendall(SSL_REQUEST)
    assert pending.read() is True
    assert pending.answer_encryption(tls_offered=False) is True
    assert client.recv(1) == b"N" and pending.data == b"" and pending.answered == ANSWERED_SSL
    client.sendall(GSS_REQUEST)
    pending.read()
    assert pending.answer_encryption(tls_offered=True) is True and client.recv(1) == b"N"  # GSSAPI: never
    client.sendall(SSL_REQUEST)  # asked again: the session refuses it
    assert pending.read() is True and pending.answer_encryption(tls_offered=True) is False
    assert pending.answered == ANSWERED_SSL | ANSWERED_GSS


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the client's end, the server's end) of a TCP connection on loopback (TLS is TCP only)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=2)
        server, _addr = listener.accept()
    yield client, server
    client.close()
    server.close()


def _client_hello() -> bytes:
    """The first TLS record a client sends: its ClientHello."""
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                                server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    record = outgoing.read()
    assert record[0] == 22 and len(record) == 5 + int.from_bytes(record[3:5], "big")
    return record


def _wait_readable(sock: socket.socket) -> bool:
    """What the accept loop's epoll does: wait (briefly) until the socket is readable."""
    return bool(select.select([sock], [], [], 0.3)[0])


def test_ssl_accepted_while_pending_waits_for_the_whole_client_hello_unread(
        tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    pending = PendingClient(server, "127.0.0.1", "5000", "host", math.inf)
    client.sendall(SSL_REQUEST)
    assert pending.read() is True
    assert pending.answer_encryption(tls_offered=True) is True
    assert client.recv(1) == b"S" and pending.answered == ANSWERED_SSL | ACCEPTED_SSL and pending.data == b""
    assert pending.complete() is False
    hello = _client_hello()
    client.sendall(hello[:3])  # not even the record's header
    assert not _wait_readable(server)  # the low mark keeps the accept loop asleep
    assert pending.read() is False
    client.sendall(hello[3:-1])
    assert _wait_readable(server)  # the header is in: the record's length says what is missing
    assert pending.read() is False
    assert not _wait_readable(server)
    client.sendall(hello[-1:])
    assert _wait_readable(server)
    assert pending.read() is True
    assert server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
    assert server.recv(len(hello) + 1) == hello  # peeked, not taken: the handshake reads it


def test_ssl_accepted_while_pending_then_gone_or_not_tls(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    pending = PendingClient(server, "127.0.0.1", "5000", "host", math.inf, SSL_REQUEST)
    assert pending.answer_encryption(tls_offered=True) is True and client.recv(1) == b"S"
    client.sendall(b"GET / HTTP/1.0\r\n")  # not a TLS record: the handshake says so
    assert pending.read() is True
    server.recv(100)
    client.sendall(_client_hello()[:20])
    client.shutdown(socket.SHUT_WR)  # part of a record, then the client closes
    assert _wait_readable(server) and pending.read() is None


def test_ssl_request_with_plain_bytes_after_it_is_left_to_the_session(
        tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    pending = PendingClient(server, "127.0.0.1", "5000", "host", math.inf, SSL_REQUEST + STARTUP)
    assert pending.answer_encryption(tls_offered=True) is False  # "received unencrypted data after SSL request"
    assert pending.answered == 0


def test_the_handoff_carries_socket_bytes_deadline_and_answers(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    handoff = Handoff()
    try:
        assert handoff.take() is None  # nothing queued
        deadline = time.time() + 30
        sent = PendingClient(server, "192.0.2.7", "54321", "host", deadline, STARTUP[:6], ANSWERED_SSL)
        assert handoff.pass_on(sent)
        assert server.fileno() == -1  # the sender's descriptor is closed: the receiver owns it
        got = handoff.take()
        assert got is not None
        assert (got.host, got.port, got.conn_type, got.deadline, got.data, got.answered) == (
            "192.0.2.7", "54321", "host", deadline, STARTUP[:6], ANSWERED_SSL)
        client.sendall(STARTUP[6:])
        assert got.read() is True and got.data == STARTUP  # the same connection, now here
        got.sock.sendall(b"Z")
        assert client.recv(1) == b"Z"
        got.close()
        mine, theirs = socket.socketpair()
        with theirs:
            assert handoff.pass_on(PendingClient(mine, "", "", "local", math.inf))
            taken = handoff.take()
            assert taken is not None and taken.conn_type == "local" and taken.monotonic_deadline() is None
            taken.close()
    finally:
        handoff.close()
