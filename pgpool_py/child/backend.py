"""
One connection from a child to one PostgreSQL node: connect, startup, authentication, and the
ParameterStatus/BackendKeyData/ReadyForQuery that follow.
"""

from __future__ import annotations

import _socket
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable, Final, Iterable

from pgpool_py.errors import PgError, SessionError
from pgpool_py.protocol import messages as m
from pgpool_py.protocol.stream import Stream, Waiter
from pgpool_py.stdlib import POLLIN, SSLSocket, poll
from pgpool_py.tls import TlsStream, handshake

# Answers one Authentication request of the backend: (code, data) -> bytes to send, or None
# when nothing is to be sent (SASL final).
AuthResponder = Callable[[int, bytes], "bytes | None"]


@dataclass
class BackendConnection:
    node_id: int
    stream: Stream
    pid: int = 0
    key: bytes = b"\0\0\0\0"
    params: dict[str, str] = field(default_factory=dict)
    tx_status: int = m.TX_IDLE
    # The authentication methods the backend asked for (AUTH_* codes); 0 = trust.
    auth_codes: list[int] = field(default_factory=list)
    create_time: float = field(default_factory=time.time)
    # A client's statements ran on it since it was made or last reset: the reset queries
    # (reset_query_list) are for such connections only.
    dirty: bool = False
    # params as the ParameterStatus messages every client of this connection is welcomed
    # with; made again only after a change (set_param).
    _param_messages: bytes | None = None

    def set_param(self, body: bytes) -> None:
        """A ParameterStatus body (name, value) the backend sent outside a client's session."""
        name, _, rest = body.partition(b"\0")
        self.params[name.decode()] = rest.rstrip(b"\0").decode(errors="replace")
        self._param_messages = None

    def param_messages(self) -> bytes:
        if self._param_messages is None:
            self._param_messages = b"".join(m.parameter_status(k, v) for k, v in self.params.items())
        return self._param_messages

    @property
    def sock(self) -> _socket.socket:
        return self.stream.sock

    def close(self, terminate: bool = True) -> None:
        try:
            if terminate:
                self.stream.sock.sendall(m.TERMINATE)
        except OSError:
            pass
        self.stream.sock.close()


def any_broken(conns: Iterable[BackendConnection]) -> bool:
    """Whether one of a pooled slot's connections is readable while idle: closed, or it sent
    a FATAL.  One poll for all of them."""
    poller = poll()
    for conn in conns:
        sock = conn.stream.sock
        if isinstance(sock, SSLSocket) and sock.pending():
            return True  # decrypted bytes TLS holds already
        poller.register(conn.stream.fd, POLLIN)
    # EOF, an error, or unsolicited bytes (e.g. a FATAL before the backend exited): not
    # reusable.  A poll, not recv(MSG_PEEK): that raises on the usual answer, "nothing".
    return bool(poller.poll(0))


# pgpool-II: an empty backend_hostname means PostgreSQL's Unix socket in /tmp.
DEFAULT_BACKEND_SOCKET_DIR: Final = "/tmp"


def open_socket(hostname: str, port: int, timeout: float) -> socket.socket:
    """TCP to ``hostname:port``, or the Unix socket when the host is empty or a directory."""
    if not hostname or hostname.startswith("/"):
        path = os.path.join(hostname or DEFAULT_BACKEND_SOCKET_DIR, f".s.PGSQL.{port}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
    else:
        sock = socket.create_connection((hostname, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


def connect_backend(
    node_id: int,
    hostname: str,
    port: int,
    startup: m.StartupMessage,
    respond: AuthResponder,
    *,
    wait: Waiter,
    on_interrupt: Callable[[], None],
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> BackendConnection:
    """
    Open, start up and authenticate; return once the backend says ReadyForQuery.  With ``tls``
    a TCP connection asks for TLS first and stays in clear text if the backend declines.
    """
    deadline = time.monotonic() + timeout
    try:
        sock = open_socket(hostname, port, timeout)
    except OSError as exc:
        raise SessionError(
            "failed to create a backend connection",
            sqlstate="08006",
            detail=f"connecting to backend node {node_id} ({hostname or DEFAULT_BACKEND_SOCKET_DIR}:{port}) failed: {exc}",
        ) from exc
    conn = BackendConnection(node_id, Stream(sock, f"backend node {node_id}", wait, on_interrupt))
    try:
        if tls is not None and sock.family != socket.AF_UNIX:
            _start_tls(conn, tls, deadline, wait, on_interrupt)
        conn.stream.send(startup.to_backend_bytes())
        while True:
            typ, body = conn.stream.read_message(deadline, "waiting for the backend's startup reply")
            if typ == ord("R"):
                req = m.parse_authentication(body)
                if req.code != m.AUTH_OK:
                    conn.auth_codes.append(req.code)
                # AuthenticationOk goes to the responder too: a SCRAM client must check that
                # the server finished the exchange.
                reply = respond(req.code, req.data)
                if reply:
                    conn.stream.send(reply)
            elif typ == ord("S"):
                conn.set_param(body)
            elif typ == ord("K"):
                conn.pid = m.unpack_int32_from(body, 0)[0]
                conn.key = bytes(body[4:8])
            elif typ == ord("Z"):
                conn.tx_status = body[0]
                return conn
            elif typ == ord("E"):
                f = m.parse_error_fields(body)
                raise PgError(
                    f.get("M", "backend error"),
                    sqlstate=f.get("C", "XX000"),
                    detail=f.get("D"),
                    hint=f.get("H"),
                    severity=f.get("V", f.get("S", "FATAL")),
                )
            elif typ == ord("v"):
                continue  # NegotiateProtocolVersion: we only ever ask for 3.0 and no options
            elif typ == ord("N"):
                continue
            else:
                raise SessionError(f"unexpected message type {chr(typ)!r} from backend during startup", sqlstate="08P01")
    except BaseException:
        conn.close(terminate=False)
        raise


def _start_tls(conn: BackendConnection, ctx: ssl.SSLContext, deadline: float, wait: Waiter,
               on_interrupt: Callable[[], None]) -> None:
    """SSLRequest to the backend: on ``S`` the connection continues over TLS, on ``N`` in clear."""
    stream = conn.stream
    stream.send(m.ssl_request())
    answer = stream.read_exact(1, deadline, "waiting for the backend's answer to SSLRequest")
    if answer == b"N":
        return
    if answer != b"S":
        raise SessionError(
            "failed to create a backend connection",
            sqlstate="08P01",
            detail=f"backend node {conn.node_id} answered SSLRequest with {answer!r}",
        )
    if stream.buf:
        # Bytes after "S" but before the handshake could be injected by a man in the middle.
        raise SessionError("received unencrypted data after SSL response", sqlstate="08P01")
    sock = handshake(ctx, stream.sock, deadline, server_side=False, who=stream.who)
    conn.stream = TlsStream(sock, stream.who, wait, on_interrupt)
