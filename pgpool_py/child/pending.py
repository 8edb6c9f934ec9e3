"""
Clients whose first packet (a startup message, or an SSL, GSSAPI or cancel request) has not
fully arrived yet.

A pre-forked child that waited on such a client would be held by it until
authentication_timeout, and a few slow or silent clients could tie up every child
(pgpool-II 4.3's weak spot; TCP_DEFER_ACCEPT only keeps away TCP clients that send nothing
at all).  Instead an idle child keeps any number of them in its accept loop and commits to
the first whose packet is complete.  Before it starts that session it passes the others on
(their socket, the bytes read so far and their deadline) through the handoff socket, where
any idle child takes them over: a SOCK_SEQPACKET pair that main makes before forking, the
socket travelling as SCM_RIGHTS.

With ``ssl = on`` an SSLRequest is answered "S" here too, and the client stays pending until
its ClientHello is all in the socket: peeked, not read, as the handshake reads it from the
socket; SO_RCVLOWAT keeps the accept loop from waking before the missing bytes came.  A
client that stalls later in the handshake, or in authentication, still holds its child
until authentication_timeout.
"""

from __future__ import annotations

import _socket
import math
import socket
import struct
from typing import Final

from pgpool_py.protocol.messages import GSSENC_REQUEST_CODE, MAX_STARTUP_PAYLOAD, SSL_REQUEST_CODE
from pgpool_py.stdlib import MSG_DONTWAIT, MSG_PEEK, POLLRDHUP, SOL_SOCKET, SO_RCVLOWAT, monotonic, poll, wall_time

# A TLS record: type (22, handshake), version, length; a ClientHello fits in one.
_TLS_HANDSHAKE_RECORD: Final = 22
_TLS_RECORD_HEADER: Final = 5
_TLS_RECORD_MAX: Final = _TLS_RECORD_HEADER + 16384 + 2048  # RFC 8446's largest record

_HEADER: Final = struct.Struct("!dBB")  # deadline (wall clock; inf: none), 1 for a Unix-socket client, answered
_MAX_MESSAGE: Final = _HEADER.size + 600 + MAX_STARTUP_PAYLOAD + 4  # host and port, the packet so far
_LENGTH: Final = struct.Struct("!I")
_REQUEST: Final = struct.Struct("!II")  # an SSL or GSSAPI request: length 8, code

# PendingClient.answered: the encryption requests already answered here ("N", or "S" with
# ACCEPTED_SSL).
ANSWERED_SSL: Final = 1
ANSWERED_GSS: Final = 2
ACCEPTED_SSL: Final = 4  # "S": the TLS handshake comes next


class PendingClient:
    # A plain class, not a dataclass: compiled, that keeps the interpreted __init__ the
    # dataclass module writes (child/router.py says more), and one is made per connection.
    def __init__(self, sock: _socket.socket, host: str, port: str, conn_type: str, deadline: float,
                 data: bytes = b"", answered: int = 0) -> None:
        self.sock = sock
        self.host = host  # "" for a Unix-socket client
        self.port = port
        self.conn_type = conn_type  # "local" (Unix socket) or "host"
        self.deadline = deadline  # time.time() by which the startup must be done (authentication_timeout)
        self.data = data  # what arrived so far
        self.answered = answered  # ANSWERED_SSL, ANSWERED_GSS, ACCEPTED_SSL: answered here

    def read(self) -> bool | None:
        """Take what has arrived, without waiting.  True once the first packet is complete
        (or cannot be a packet: the session reports that; after "S", once the ClientHello is
        in the socket), None when the client is gone."""
        if self.answered & ACCEPTED_SSL:
            return self._client_hello_buffered()
        try:
            chunk = self.sock.recv(65536, MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return self.complete()
        except OSError:
            return None
        if not chunk:
            return None
        self.data += chunk
        return self.complete()

    def complete(self) -> bool:
        if self.answered & ACCEPTED_SSL:
            return self._client_hello_buffered() is not False  # gone: the handshake finds out
        if len(self.data) < 4:
            return False
        (length,) = _LENGTH.unpack_from(self.data)
        # A length out of range is complete enough: the session answers it with an error.
        return len(self.data) >= length or not 8 <= length <= MAX_STARTUP_PAYLOAD + 4

    def answer_encryption(self, tls_offered: bool) -> bool:
        """
        If the complete first packet is an SSL or GSSAPI request, answer it here: "S" to an
        SSL request when ``tls_offered``, else "N" (GSSAPI is never offered).  The client
        stays pending while it sends its ClientHello or its startup packet (libpq's
        sslmode=prefer asks first).  True when it did.
        """
        if len(self.data) < 8:
            return False
        length, code = _REQUEST.unpack_from(self.data)
        if length != 8:
            return False
        answer = b"N"
        if code == SSL_REQUEST_CODE and not self.answered & ANSWERED_SSL:
            if tls_offered:
                if len(self.data) > 8:
                    return False  # plain bytes after the request: the session refuses them
                answer = b"S"
                self.answered |= ACCEPTED_SSL
            self.answered |= ANSWERED_SSL
        elif code == GSSENC_REQUEST_CODE and not self.answered & ANSWERED_GSS:
            self.answered |= ANSWERED_GSS
        else:
            return False  # a repeated request: the session refuses it
        self.sock.sendall(answer)
        self.data = self.data[8:]
        return True

    def _client_hello_buffered(self) -> bool | None:
        """After "S": whether the client's first TLS record is all in the socket (or is no
        handshake record: the handshake reports it); None when the client is gone."""
        try:
            head = self.sock.recv(_TLS_RECORD_MAX, MSG_PEEK | MSG_DONTWAIT)
            if not head:
                return None
        except (BlockingIOError, InterruptedError):
            head = b""
        except OSError:
            return None
        need = _TLS_RECORD_HEADER
        if len(head) >= _TLS_RECORD_HEADER:
            need += (head[3] << 8) | head[4]
            if head[0] != _TLS_HANDSHAKE_RECORD or need > _TLS_RECORD_MAX:
                need = 0
        if len(head) >= need:
            self.sock.setsockopt(SOL_SOCKET, SO_RCVLOWAT, 1)  # the default, for the session
            return True
        # The peer's FIN wakes the accept loop whatever the low mark: part of a record and
        # then a close would wake it again and again.
        closed = poll()
        closed.register(self.sock.fileno(), POLLRDHUP)
        if closed.poll(0):
            return None
        self.sock.setsockopt(SOL_SOCKET, SO_RCVLOWAT, need)
        return False

    def monotonic_deadline(self) -> float | None:
        """The deadline on this process's monotonic clock, as the session counts it."""
        if math.isinf(self.deadline):
            return None
        return monotonic() + (self.deadline - wall_time())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Handoff:
    """The queue of pending clients passed between children (made in main, before the fork)."""

    def __init__(self) -> None:
        self.send_end, self.recv_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.send_end.setblocking(False)
        self.recv_end.setblocking(False)

    def pass_on(self, client: PendingClient) -> bool:
        """Queue ``client`` for another child; False when the queue is full (the caller closes it)."""
        host, port = client.host.encode()[:255], client.port.encode()[:255]
        message = (_HEADER.pack(client.deadline, client.conn_type == "local", client.answered)
                   + host + b"\0" + port + b"\0" + client.data)
        try:
            socket.send_fds(self.send_end, [message], [client.sock.fileno()])
        except OSError:
            return False
        client.sock.close()  # the receiver has its own descriptor now
        return True

    def take(self) -> PendingClient | None:
        """A queued client, or None when another child was quicker."""
        try:
            message, fds, flags, _addr = socket.recv_fds(self.recv_end, _MAX_MESSAGE, 1)
        except (BlockingIOError, InterruptedError):
            return None
        if not fds:
            return None
        sock = _socket.socket(fileno=fds[0])
        sock.setblocking(True)  # as the session expects, whatever the sender left
        if flags & socket.MSG_TRUNC or len(message) < _HEADER.size:
            sock.close()
            return None
        deadline, local, answered = _HEADER.unpack_from(message)
        host, port, data = message[_HEADER.size:].split(b"\0", 2)
        return PendingClient(sock, host.decode(), port.decode(), "local" if local else "host", deadline, data,
                             answered)

    def close(self) -> None:
        self.send_end.close()
        self.recv_end.close()
