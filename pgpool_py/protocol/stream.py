"""
Socket I/O for the non-hot phases (startup, authentication, reset): read whole messages with a
deadline, through the process's single interruptible wait.  The relay loop in the session does
its own batched I/O.
"""

from __future__ import annotations

import _socket
from typing import Callable, Final

from pgpool_py.errors import ProtocolError, SessionError
from pgpool_py.protocol import messages as m
from pgpool_py.stdlib import monotonic

MAX_PASSWORD_MESSAGE: Final = 65536  # a password or SASL response; longer is garbage or an attack

# wait(fds, timeout) -> readable fds; returns [] on a signal or timeout (SignalQueue.wait).
Waiter = Callable[[list[int], float | None], list[int]]


class PeerClosed(SessionError):
    """The peer closed the connection (EOF or reset)."""

    def __init__(self, who: str) -> None:
        super().__init__(f"{who} closed the connection", sqlstate="08006")
        self.who = who


class Timeout(SessionError):
    def __init__(self, what: str) -> None:
        super().__init__(f"timeout while {what}", sqlstate="08006")


class Stream:
    """A socket plus a read buffer, for message-at-a-time reading."""

    def __init__(self, sock: _socket.socket, who: str, wait: Waiter, on_interrupt: Callable[[], None]) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.who = who
        self.buf = bytearray()
        self._wait = wait
        self._on_interrupt = on_interrupt

    def _fill(self, deadline: float | None, what: str) -> None:
        while True:
            timeout = None if deadline is None else deadline - monotonic()
            if timeout is not None and timeout <= 0:
                raise Timeout(what)
            if not self._wait([self.fd], timeout):
                self._on_interrupt()  # may raise (e.g. fast shutdown)
                continue
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise PeerClosed(self.who) from exc
            if not data:
                raise PeerClosed(self.who)
            self.buf += data
            return

    def read_exact(self, n: int, deadline: float | None, what: str) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline, what)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_startup(self, deadline: float | None) -> m.StartupPacket:
        header = self.read_exact(4, deadline, "reading the startup packet")
        payload = self.read_exact(m.startup_length(header), deadline, "reading the startup packet")
        return m.parse_startup_payload(payload)

    def read_message(self, deadline: float | None, what: str = "reading a message") -> tuple[int, bytes]:
        """One whole message: (type byte, body without the length word).  Sliced from the
        buffer once: a reply of several messages usually arrives in one read."""
        buf = self.buf
        while len(buf) < 5:
            self._fill(deadline, what)
        size = m.message_length(buf, 0)
        while len(buf) < size:
            self._fill(deadline, what)
        typ = buf[0]
        body = bytes(buf[5:size])
        del buf[:size]
        return typ, body

    def read_password(self, deadline: float | None) -> bytes:
        """
        The body of a client's PasswordMessage (also SASL responses).  Anything else, or one
        over 64 kB, is refused on its header, as PostgreSQL refuses it: a client that has not
        logged in must not make us read up to 1 GB.
        """
        header = self.read_exact(5, deadline, "authenticating the client")
        if header[0] != ord("p"):
            raise ProtocolError(f"expected password response, got message type {chr(header[0])!r}")
        length = m.message_length(header, 0) - 5
        if length > MAX_PASSWORD_MESSAGE:
            raise ProtocolError("invalid password packet length")
        return self.read_exact(length, deadline, "authenticating the client")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise PeerClosed(self.who) from exc
