"""PcpConnection and the tools end to end, against a small PCP server made of pcp.protocol's encoders.

The server listens on a Unix socket in a private directory (no network); it answers as
pgpool-II 4.3.5 does, including its errors, notices and FATAL disconnects.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pcp import cli
from pcp import protocol as proto
from pcp.client import PcpConnection
from pcp.errors import PcpAuthError, PcpConnectionError, PcpError
from pcp.protocol import Packet
from pcp.types import HealthCheckStats, NodeInfo, PoolStatusItem, ProcessInfo

PORT = 9898
USER, PASSWORD = "admin", "s3cret"
SALT = b"\x10\x20\x30\x40"

NODE = NodeInfo("db0", 5432, 2, False, "up", 0.5, 2, "primary", 0, "", "", 0)
ROW = ProcessInfo(101, "2026-11-28 09:18:13", 1, 0, 0, "test", "alice", "", "", "", "0", 3, 0, 1, 555, 1, "Idle")
# Runs a tool against the fake server: (exit status, stdout, stderr).
RunTool = Callable[..., tuple[int, str, str]]

STATS = HealthCheckStats(0, "db0", 5432, "up", "primary", "", 1, 1, 0, 0, 0, 0.0, 0, 5, 5, 5.0, "", "", "", "")


class FakePcpServer:
    """Accepts connections one after the other and answers each request like pgpool-II."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.requests: list[Packet] = []
        self._sessions_done = threading.Semaphore(0)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(directory, f".s.PGSQL.{PORT}"))
        self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self._session(conn)
            self._sessions_done.release()

    def wait_session_end(self) -> None:
        assert self._sessions_done.acquire(timeout=5), "the client did not end its session"

    def _session(self, conn: socket.socket) -> None:
        buf = bytearray()
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
            packets, used = proto.decode_packets(buf, requests=True)
            del buf[:used]
            for packet in packets:
                self.requests.append(packet)
                reply, keep_going = self._answer(packet)
                if reply:
                    conn.sendall(reply)
                if not keep_going:
                    return

    def _answer(self, packet: Packet) -> tuple[bytes, bool]:
        kind = packet.kind
        if kind == "M":
            return proto.salt_reply(SALT), True
        if kind == "R":
            user, password_hash = proto.decode_auth_request(packet.payload)
            if user == USER and password_hash == proto.auth_hash(proto.md5_hex(PASSWORD), USER, SALT):
                return proto.auth_ok_reply(), True
            return proto.error_response(
                f'authentication failed for user "{user}"', "username and/or password does not match",
                severity="FATAL"), False
        if kind == "X":
            return b"", False
        node_id = proto.request_strings(packet.payload)[0] if packet.payload.endswith(b"\0") else ""
        replies: dict[str, tuple[bytes, bool]] = {
            "L": (proto.notice_response("counting nodes", severity="LOG") + proto.node_count_reply(2), True),
            "N": (proto.process_count_reply([101, 102]), True),
            "P": (proto.process_info_response([ROW], array_size=4), True),
            "B": (proto.pool_status_response([PoolStatusItem("port", "9999", "pgpool accepting port number")]), True),
            "H": (proto.health_check_stats_reply(STATS), True),
            "C": (proto.command_complete("c"), True),
            "O": (proto.command_complete("c"), True),
            "D": (proto.error_response(
                "invalid degenerate backend request, node id : 1 status: [3] is not valid for failover"), True),
            "J": (proto.error_response("invalid pgpool mode for process promote request",
                                       "not in streaming replication mode, can't promote node id 1",
                                       severity="FATAL"), False),
            "T": (proto.command_complete("t"), False),
            "Z": (proto.command_complete("z"), True),
            "W": (proto.error_response("PCP: informing watchdog info failed", "watchdog is not enabled"), True),
        }
        if kind == "I":
            if node_id == "-1":
                return proto.node_info_response([NODE, NODE]), True
            if node_id == "0":
                return proto.node_info_response([NODE]), True
            return proto.error_response("informing node info failed", f"invalid node ID : {node_id}"), True
        return replies.get(kind, (proto.error_response("PCP processing request", f'unknown PCP packet type "{kind}"',
                                                       severity="FATAL"), False))


@pytest.fixture
def server() -> Iterator[FakePcpServer]:
    # A short private directory: Unix socket paths are limited to about 100 bytes.
    directory = tempfile.mkdtemp(prefix="pcp-", dir="/tmp")
    fake = FakePcpServer(directory)
    yield fake
    fake.close()
    shutil.rmtree(directory)


def connect(server: FakePcpServer, password: str | None = PASSWORD) -> PcpConnection:
    return PcpConnection(server.directory, PORT, USER, password, connect_timeout=5, timeout=5)


def test_queries(server: FakePcpServer) -> None:
    with connect(server) as conn:
        assert conn.node_count() == 2
        assert [n.severity for n in conn.notices] == ["LOG"]
        assert conn.node_info() == [NODE, NODE]
        assert conn.node_info(0) == [NODE]
        assert conn.proc_count() == [101, 102]
        assert conn.proc_info(101) == [ROW]
        assert conn.pool_status() == [PoolStatusItem("port", "9999", "pgpool accepting port number")]
        assert conn.health_check_stats(0) == STATS
    assert conn.closed
    server.wait_session_end()
    assert [p.kind for p in server.requests] == ["M", "R", "L", "I", "I", "N", "P", "B", "H", "X"]
    assert server.requests[6].payload == b"101\x00"


def test_commands(server: FakePcpServer) -> None:
    with connect(server) as conn:
        conn.attach_node(1)
        conn.recovery_node(1)
        conn.reload_config("cluster")
        conn.stop_pgpool("fast")
    server.wait_session_end()
    assert [(p.kind, p.payload) for p in server.requests[2:]] == [
        ("C", b"1\x00"), ("O", b"1\x00"), ("Z", b"c"), ("T", b"f")
    ]


def test_error_keeps_the_connection_fatal_closes_it(server: FakePcpServer) -> None:
    with connect(server) as conn:
        with pytest.raises(PcpError) as info:
            conn.node_info(7)
        assert (info.value.message, info.value.detail, info.value.severity) == (
            "informing node info failed", "invalid node ID : 7", "ERROR"
        )
        assert conn.node_count() == 2
        with pytest.raises(PcpError) as info:
            conn.promote_node(1, switchover=True)
        assert info.value.severity == "FATAL"
        assert conn.closed
    server.wait_session_end()
    assert server.requests[-1] == Packet("J", b"1 \x00s")


def test_wrong_password(server: FakePcpServer) -> None:
    with pytest.raises(PcpAuthError) as info:
        connect(server, "wrong")
    assert info.value.message == f'authentication failed for user "{USER}"'
    assert info.value.detail == "username and/or password does not match"


def test_password_from_pcppass(server: FakePcpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passfile = tmp_path / "pcppass"
    # A socket directory other than /tmp is matched by its own path.
    passfile.write_text(f"{server.directory}:{PORT}:{USER}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PCPPASSFILE", str(passfile))
    with connect(server, None) as conn:
        assert conn.node_count() == 2


def test_no_server() -> None:
    with pytest.raises(PcpConnectionError) as info:
        PcpConnection("/nonexistent", 9898, USER, PASSWORD)
    assert str(info.value) == (
        'connection to socket "/nonexistent/.s.PGSQL.9898" failed with error "No such file or directory"'
    )


# --- the tools against the same server -------------------------------------------------------


@pytest.fixture
def tool(server: FakePcpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> RunTool:
    passfile = tmp_path / "pcppass"
    passfile.write_text(f"*:*:{USER}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PCPPASSFILE", str(passfile))

    def run(name: str, *args: str) -> tuple[int, str, str]:
        status = cli.main([name, "-h", server.directory, "-p", str(PORT), "-U", USER, "-w", *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_tool_output(tool: RunTool) -> None:
    assert tool("pcp_node_count") == (0, "2\n", "")
    assert tool("pcp_proc_count") == (0, "101 102 \n", "")
    assert tool("pcp_attach_node", "1") == (0, "pcp_attach_node -- Command Successful\n", "")
    status, out, _ = tool("pcp_node_info", "-v", "0")
    assert status == 0 and out.startswith("Hostname               : db0\n")


def test_tool_debug_trace(tool: RunTool) -> None:
    status, out, _ = tool("pcp_node_count", "-d")
    assert status == 0
    assert out == (
        'DEBUG: recv: tos="m", len=8\n'
        'DEBUG: recv: tos="r", len=21\n'
        'DEBUG: send: tos="L", len=4\n'
        'DEBUG: recv: tos="N", len=38\n'
        "BACKEND LOG:  counting nodes\n"
        'DEBUG: recv: tos="l", len=22\n'
        "2\n"
        'DEBUG: send: tos="X", len=4\n'
    )


def test_tool_server_error_exits_2(tool: RunTool) -> None:
    assert tool("pcp_detach_node", "1") == (
        2, "", "ERROR:  invalid degenerate backend request, node id : 1 status: [3] is not valid for failover\n\n"
    )
    assert tool("pcp_watchdog_info") == (
        2, "", "ERROR:  PCP: informing watchdog info failed\nDETAIL:  watchdog is not enabled\n\n"
    )


def test_tool_wrong_password_exits_1(tool: RunTool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCPPASSFILE", "/nonexistent")
    assert tool("pcp_node_count") == (
        1, "", f'FATAL:  authentication failed for user "{USER}"\nDETAIL:  username and/or password does not match\n\n'
    )


def test_tool_refuses_an_unsafe_pcppass(tool: RunTool, tmp_path: Path) -> None:
    passfile = tmp_path / "pcppass"
    passfile.chmod(0o644)
    status, out, err = tool("pcp_node_count")
    assert (status, out) == (1, "")
    assert err.startswith(
        f'WARNING: password file "{passfile}" has group or world access; '
        "permissions should be u=rw (0600) or less\nFATAL:  authentication failed"
    )
