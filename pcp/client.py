"""
PCP client: one connection to a pgpool-II (or pgpool-py) PCP port, one method per command.

    with PcpConnection("127.0.0.1", 9898, "pcpadmin", "secret") as conn:
        for node in conn.node_info():
            print(node.backend_hostname, node.status_name)

Like libpcp: no host (or a host starting with ``/``) means a Unix socket
``<dir>/.s.PGSQL.<port>`` in /tmp (or that directory); no user means the OS user; no password
means a lookup in ``.pcppass``. A server ``E`` packet raises PcpError (PcpAuthError while
authenticating); after an ERROR the connection stays usable, after a FATAL it is closed.
"""

from __future__ import annotations

import os
import pwd
import socket
from collections import deque
from types import TracebackType
from typing import TextIO

from pcp import protocol as proto
from pcp.errors import PcpAuthError, PcpConnectionError, PcpError, PcpProtocolError
from pcp.pcppass import lookup_password
from pcp.protocol import Packet, Report
from pcp.types import HealthCheckStats, NodeInfo, PoolStatusItem, ProcessInfo, WatchdogInfo

_RECV_SIZE = 65536
# Replies that are a single packet without a CommandComplete tag.
_UNTAGGED_REPLIES = frozenset("mrt")


def _os_username() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return ""


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _choice(value: str, choices: dict[str, str], what: str) -> str:
    """The wire letter for a word ("smart") or a letter ("s")."""
    if value in choices.values():
        return value
    if value in choices:
        return choices[value]
    raise ValueError(f"invalid {what} {value!r}, must be one of {', '.join(choices)}")


class PcpConnection:
    """An authenticated PCP connection. Use as a context manager, or call close()."""

    def __init__(
        self,
        host: str | None = None,
        port: int = proto.DEFAULT_PCP_PORT,
        user: str | None = None,
        password: str | None = None,
        *,
        connect_timeout: float | None = 10.0,
        timeout: float | None = None,
        debug: TextIO | None = None,
    ) -> None:
        """Connect and authenticate.

        ``connect_timeout`` bounds the connection and the authentication; ``timeout`` bounds
        each later wait for the server (None: wait as long as the command takes, as
        pcp_recovery_node must). ``debug`` receives libpcp's ``DEBUG: send/recv`` trace.
        """
        self.host = host
        self.port = port
        self.user = user if user is not None else _os_username()
        # Notices (N packets) the server sent, oldest first.
        self.notices: list[Report] = []
        self._debug = debug
        self._buffer = bytearray()
        self._pending: deque[Packet] = deque()
        sock = self._connect(connect_timeout)
        self._sock: socket.socket | None = sock
        try:
            if not password:
                password = lookup_password(host, port, self.user) or ""
            self._authenticate(password)
            sock.settimeout(timeout)
        except BaseException:
            self._close_socket()
            raise

    # --- transport -------------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> socket.socket:
        if not self.host or self.host.startswith("/"):
            path = f"{self.host or proto.DEFAULT_SOCKET_DIR}/.s.PGSQL.{self.port}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError as e:
                sock.close()
                raise PcpConnectionError(f'connection to socket "{path}" failed with error "{_reason(e)}"') from e
            return sock
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except socket.gaierror as e:
            raise PcpConnectionError(
                f'could not retrieve hostname. gethostbyname failed with error "{_reason(e)}"'
            ) from e
        except OSError as e:
            raise PcpConnectionError(f'connection to host "{self.host}" failed with error "{_reason(e)}"') from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise PcpConnectionError("invalid PCP connection")
        try:
            self._sock.sendall(data)
        except OSError as e:
            self._close_socket()
            raise PcpConnectionError(f'sending data to backend failed with error "{_reason(e)}"') from e
        kind = data[:1].decode("ascii")
        # libpcp traces commands, not the authentication packets.
        if self._debug is not None and kind not in ("M", "R"):
            self._debug.write(f'DEBUG: send: tos="{kind}", len={len(data) - 1}\n')

    def _next_packet(self) -> Packet:
        while not self._pending:
            if self._sock is None:
                raise PcpConnectionError("invalid PCP connection")
            try:
                chunk = self._sock.recv(_RECV_SIZE)
            except OSError as e:
                self._close_socket()
                raise PcpConnectionError(f"unable to read data from socket: {_reason(e)}") from e
            if not chunk:
                self._close_socket()
                raise PcpConnectionError("unable to read data from socket.")
            self._buffer += chunk
            try:
                packets, used = proto.decode_packets(self._buffer)
            except PcpProtocolError:
                self._close_socket()
                raise
            del self._buffer[:used]
            self._pending.extend(packets)
        packet = self._pending.popleft()
        if self._debug is not None:
            self._debug.write(f'DEBUG: recv: tos="{packet.kind}", len={len(packet.payload) + 4}\n')
        return packet

    def _request(self, data: bytes) -> list[Packet]:
        """Send one request and collect its reply packets, up to the one that ends it."""
        self._send(data)
        request_kind = data[:1].decode("ascii")
        expected = proto.REPLY_KIND[request_kind]
        replies: list[Packet] = []
        while True:
            packet = self._next_packet()
            if packet.kind == "N":
                self._notice(proto.decode_report(packet.payload))
                continue
            if packet.kind == "E":
                report = proto.decode_report(packet.payload)
                if report.severity in ("FATAL", "PANIC"):
                    self._close_socket()  # the PCP worker has exited
                raise PcpError(report.message, report.detail, severity=report.severity, hint=report.hint)
            if packet.kind != expected:
                raise PcpProtocolError(
                    "invalid response", f'reply "{packet.kind}" to request "{request_kind}"'
                )
            replies.append(packet)
            if expected in _UNTAGGED_REPLIES or packet.tag == proto.COMMAND_COMPLETE:
                return replies

    def _notice(self, report: Report) -> None:
        self.notices.append(report)
        if self._debug is not None:
            detail = f"DETAIL:  {report.detail}\n" if report.detail else ""
            self._debug.write(f"BACKEND {report.severity}:  {report.message}\n{detail}")

    def _authenticate(self, password: str) -> None:
        if len(self.user.encode()) >= proto.MAX_USER_PASSWD_LEN:
            raise PcpConnectionError("PCP authorization failed. username too long.")
        (salt_reply,) = self._request(proto.salt_request())
        salt = proto.decode_salt(salt_reply.payload)
        password_hash = proto.auth_hash(proto.md5_hex(password), self.user, salt)
        try:
            (ok,) = self._request(proto.auth_request(self.user, password_hash))
        except PcpError as e:
            raise PcpAuthError(e.message, e.detail, severity=e.severity) from None
        proto.decode_auth_ok(ok.payload)

    @staticmethod
    def _records(replies: list[Packet], tag: str) -> list[bytes]:
        """The record payloads of a list reply: ArraySize, records, CommandComplete."""
        if len(replies) == 1:
            return []  # a bare CommandComplete: nothing to list
        first, *records, _ = replies
        if first.tag != proto.ARRAY_SIZE:
            raise PcpProtocolError("command failed. invalid response", f"expected ArraySize, got {first.tag}")
        proto.decode_array_size(first)
        for record in records:
            if record.tag != tag:
                raise PcpProtocolError("command failed. invalid response", f"expected {tag}, got {record.tag}")
        return [record.payload for record in records]

    def _command(self, data: bytes) -> None:
        (reply,) = self._request(data)
        proto.decode_command_complete(reply.payload)

    # --- commands --------------------------------------------------------------------------

    def node_count(self) -> int:
        (reply,) = self._request(proto.node_count_request())
        return proto.decode_node_count(reply.payload)

    def node_info(self, node_id: int = -1) -> list[NodeInfo]:
        """One node, or every configured node with ``node_id`` -1."""
        replies = self._request(proto.node_info_request(node_id))
        return [proto.decode_node_info(p) for p in self._records(replies, proto.NODE_INFO)]

    def health_check_stats(self, node_id: int) -> HealthCheckStats:
        (reply,) = self._request(proto.health_check_stats_request(node_id))
        return proto.decode_health_check_stats(reply.payload)

    def proc_count(self) -> list[int]:
        """The pids of pgpool's child processes."""
        (reply,) = self._request(proto.process_count_request())
        return proto.decode_process_count(reply.payload)

    def proc_info(self, pid: int | None = None) -> list[ProcessInfo]:
        """Every (child, pool slot, backend) row, or those of child ``pid``."""
        replies = self._request(proto.process_info_request(pid or 0))
        return [proto.decode_process_info(p) for p in self._records(replies, proto.PROCESS_INFO)]

    def pool_status(self) -> list[PoolStatusItem]:
        replies = self._request(proto.pool_status_request())
        return [proto.decode_pool_status_item(p) for p in self._records(replies, proto.PROCESS_CONFIG)]

    def attach_node(self, node_id: int) -> None:
        self._command(proto.attach_node_request(node_id))

    def detach_node(self, node_id: int, gracefully: bool = False) -> None:
        self._command(proto.detach_node_request(node_id, gracefully))

    def promote_node(self, node_id: int, gracefully: bool = False, switchover: bool = False) -> None:
        self._command(proto.promote_node_request(node_id, gracefully, switchover))

    def stop_pgpool(self, mode: str = "smart", scope: str = "local") -> None:
        """``mode`` smart/fast/immediate (or s/f/i), ``scope`` local/cluster (or l/c)."""
        mode = _choice(mode, proto.SHUTDOWN_MODES, "shutdown mode")
        scope = _choice(scope, proto.COMMAND_SCOPES, "command scope")
        self._request(proto.stop_pgpool_request(mode, scope))

    def reload_config(self, scope: str = "local") -> None:
        self._command(proto.reload_config_request(_choice(scope, proto.COMMAND_SCOPES, "command scope")))

    def recovery_node(self, node_id: int) -> None:
        """Online recovery of ``node_id``; returns when the server has finished it."""
        self._command(proto.recovery_node_request(node_id))

    def log_rotate(self, scope: str = "local") -> None:
        """Reopen pgpool's log file (pgpool-II 4.6+ and pgpool-py; 4.3 refuses the request)."""
        self._command(proto.log_rotate_request(_choice(scope, proto.COMMAND_SCOPES, "command scope")))

    def watchdog_info(self, node_id: int = -1) -> WatchdogInfo:
        """Every watchdog node with -1, the local one with 0, another with its index."""
        (reply,) = self._request(proto.watchdog_info_request(node_id))
        return proto.decode_watchdog_info(reply.payload)

    # --- lifetime --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        """Say goodbye (X) and close; harmless on a connection the server already closed."""
        if self._sock is None:
            return
        try:
            self._send(proto.disconnect_request())
        except PcpConnectionError:
            pass  # the server may be gone already, e.g. after stop_pgpool
        self._close_socket()

    def __enter__(self) -> PcpConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
