"""pgpool-py's PCP server, driven by pgpool-II 4.3.5's own pcp_* tools and by ours.

pgpool-py runs in streaming mode in front of the session's cluster (node 0 primary, node 1
standby) with health checks and streaming checks off, so nothing changes between two calls.
Where both tools run against the same server they must print the same bytes; their output must
also parse the way pcp_node_info etc. print it for the real pgpool-II (see the interop test).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pcp import PcpAuthError, PcpConnection, PcpConnectionError, PcpError, protocol as proto
from pgpool_py.cluster import HOST, PgNode
from tests.fix_pgpool import PgpoolFactory, PgpoolServer

PCP_BIN = "/usr/sbin"
PCP_USER = PCP_PASSWORD = "postgres"  # write_pcp_conf's account
REPO = Path(__file__).resolve().parents[2]
EXTRA = {"sr_check_period": 0, "health_check_period": 0, "num_init_children": 2, "max_pool": 1}
WAIT = 10.0

needs_pgpool2_tools = pytest.mark.skipif(
    not os.path.exists(os.path.join(PCP_BIN, "pcp_node_info")), reason="pgpool-II's pcp tools (package pgpool2)"
)


def tool(server: PgpoolServer, real: bool, name: str, *args: str, host: str = HOST,
         passfile: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run pgpool-II's tool (real=True) or ours against ``server``, logging in through a pcppass file."""
    program = [os.path.join(PCP_BIN, name)] if real else [sys.executable, "-m", "pcp", name]
    env = dict(os.environ, PCPPASSFILE=str(passfile or server.pcppass_path), PYTHONPATH=str(REPO))
    options = ["-h", host, "-p", str(server.pcp_port), "-U", PCP_USER, "-w"]
    return subprocess.run(program + options + list(args), env=env, capture_output=True, text=True, timeout=30,
                          start_new_session=True)


def both(server: PgpoolServer, name: str, *args: str, host: str = HOST,
         passfile: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Both tools print the same, but for the HINT lines only ours show; returns ours without them."""
    real = tool(server, True, name, *args, host=host, passfile=passfile)
    ours = tool(server, False, name, *args, host=host, passfile=passfile)
    hintless = "".join(line for line in ours.stderr.splitlines(keepends=True) if not line.startswith("HINT:  "))
    assert (ours.stdout, hintless) == (real.stdout, real.stderr)
    return subprocess.CompletedProcess(ours.args, ours.returncode, ours.stdout, hintless)


def connect(server: PgpoolServer, password: str = PCP_PASSWORD) -> PcpConnection:
    return PcpConnection(HOST, server.pcp_port, PCP_USER, password, connect_timeout=5, timeout=10)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT:.0f}s waiting for {what}")
        time.sleep(0.05)


def standby_status(server: PgpoolServer) -> str:
    """Node 1's status in SHOW POOL_NODES; "" while a failover restarts the children."""
    try:
        with server.connect() as conn:
            rows = conn.execute("SHOW POOL_NODES").fetchall()
    except psycopg.OperationalError:
        return ""
    return str(rows[1][3])


def _titles(server: PgpoolServer) -> list[str]:
    """Process titles of the server's process group."""
    titles = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                pgrp = int(f.read().rsplit(")", 1)[1].split()[2])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if pgrp == server.pid:
            titles.append(cmdline.replace(b"\0", b" ").decode(errors="replace").strip())
    return titles


def _login(sock: socket.socket) -> None:
    sock.sendall(proto.salt_request())
    salt = proto.decode_salt(_read_packets(sock, 1)[0].payload)
    sock.sendall(proto.auth_request(PCP_USER, proto.auth_hash(proto.md5_hex(PCP_PASSWORD), PCP_USER, salt)))
    assert [p.kind for p in _read_packets(sock, 1)] == ["r"]


def _read_packets(sock: socket.socket, count: int) -> list[proto.Packet]:
    received = b""
    while True:
        packets, used = proto.decode_packets(received)
        if len(packets) >= count:
            assert used == len(received)
            return packets
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        received += chunk


def _error_report(server: PgpoolServer, request: bytes) -> proto.Report:
    """The E packet that answers ``request`` (the pcp clients do not show HINT lines)."""
    with socket.create_connection((HOST, server.pcp_port), timeout=10) as sock:
        _login(sock)
        sock.sendall(request)
        (packet,) = _read_packets(sock, 1)
    assert packet.kind == "E"
    return proto.decode_report(packet.payload)


def _raw_exchange(server: PgpoolServer, data: bytes, *, login: bool) -> list[proto.Packet]:
    """Send ``data`` (after logging in if asked) and read replies until the server closes."""
    with socket.create_connection((HOST, server.pcp_port), timeout=10) as sock:
        if login:
            _login(sock)
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):  # the server ends the connection
            received += chunk
    packets, used = proto.decode_packets(received)
    assert used == len(received)
    return packets


@pytest.fixture
def pgpool(pgpool_factory: PgpoolFactory) -> PgpoolServer:
    server = pgpool_factory(extra=EXTRA)

    def pcp_answers() -> bool:
        # Ready means the client port answers; the PCP process may still be binding its port.
        try:
            with connect(server) as conn:
                return conn.node_count() == 2
        except PcpConnectionError:
            return False

    wait_for(pcp_answers, "the PCP port")
    return server


@needs_pgpool2_tools
def test_information_commands_with_both_tools(pgpool: PgpoolServer, pg_cluster: list[PgNode]) -> None:
    assert both(pgpool, "pcp_node_count").stdout == "2\n"
    lines = both(pgpool, "pcp_node_info").stdout.splitlines()
    # host port status weight status-name pg_status role pg_role delay repstate syncstate "date time"
    fields = [line.split() for line in lines]
    assert [(f[0], int(f[1])) for f in fields] == [(HOST, n.port) for n in pg_cluster]
    assert [(f[3], f[6]) for f in fields] == [("0.500000", "primary"), ("0.500000", "standby")]
    assert all(f[4] in ("up", "waiting") and len(f) == 13 for f in fields)
    assert both(pgpool, "pcp_node_info", "1").stdout == lines[1] + "\n"
    assert "Hostname               : 127.0.0.1" in both(pgpool, "pcp_node_info", "-a", "-v", "-n", "0").stdout

    pids = both(pgpool, "pcp_proc_count").stdout.split()
    assert len(pids) == 2  # num_init_children
    both(pgpool, "pcp_proc_info")
    rows = both(pgpool, "pcp_proc_info", "-a").stdout.splitlines()
    assert len(rows) == 2 * 1 * 2  # children x max_pool x backends
    assert all(sum(f" {pid} " in row for row in rows) == 2 for pid in pids)  # one row per backend
    # Every row shows its process's status, connected or not, as pgpool-II's do.
    assert all(row.endswith(("Wait for connection", "Idle", "Execute command")) for row in rows), rows
    assert both(pgpool, "pcp_proc_info", "-a", pids[0]).stdout.count(f" {pids[0]} ") == 2

    # libpcp keeps 80 characters of a description (POOLCONFIG_MAXDESCLEN); ours prints it whole.
    real, ours = tool(pgpool, True, "pcp_pool_status"), tool(pgpool, False, "pcp_pool_status")
    assert (real.returncode, ours.returncode) == (0, 0)
    assert re.sub(r"(?m)^(desc : .{80}).*$", r"\1", ours.stdout) == real.stdout
    assert f"name : pcp_port\nvalue: {pgpool.pcp_port}\n" in ours.stdout

    stats = both(pgpool, "pcp_health_check_stats", "1").stdout.split()
    assert stats[:3] == ["1", HOST, str(pg_cluster[1].port)] and stats[4] == "standby"
    assert both(pgpool, "pcp_health_check_stats", "-v", "0").returncode == 0

    run_dir = str(pgpool.conf_path.parent / "run")
    assert both(pgpool, "pcp_node_count", host=run_dir).stdout == "2\n"  # the Unix socket


def test_node_info_pg_status_is_what_the_health_check_saw(pgpool_factory: PgpoolFactory) -> None:
    # As SHOW POOL_NODES: "up" once a health check succeeded, "unknown" without health checks.
    checked = pgpool_factory(extra={**EXTRA, "health_check_period": 1})

    def pg_status(server: PgpoolServer) -> list[str]:
        with connect(server) as conn:
            return [info.pg_backend_status for info in conn.node_info()]

    wait_for(lambda: pg_status(checked) == ["up", "up"], "pcp_node_info to show the health checks' verdict")
    rows = checked.psql("SHOW POOL_NODES")
    assert [row.split("|")[4] for row in rows.splitlines()] == ["up", "up"]
    assert pg_status(pgpool_factory(extra=EXTRA)) == ["unknown", "unknown"]


@needs_pgpool2_tools
def test_errors_keep_the_connection(pgpool: PgpoolServer) -> None:
    result = both(pgpool, "pcp_node_info", "7")
    assert result.stderr == "ERROR:  informing node info failed\nDETAIL:  invalid node ID : 7\n\n"
    assert result.returncode == 2  # ours: non-zero on a server error
    assert both(pgpool, "pcp_watchdog_info").stderr.startswith("ERROR:  PCP: informing watchdog info failed\n")
    assert both(pgpool, "pcp_health_check_stats", "2").stderr.startswith("ERROR:  ")
    assert both(pgpool, "pcp_recovery_node", "0").stderr == (
        "ERROR:  process recovery request failed\nDETAIL:  primary server cannot be recovered by online recovery.\n\n"
    )
    with connect(pgpool) as conn:
        with pytest.raises(PcpError, match="informing node info failed") as info:
            conn.node_info(7)
        assert info.value.severity == "ERROR"
        assert conn.node_count() == 2
        with pytest.raises(PcpError) as info:
            conn.watchdog_info()
        assert info.value.detail == "watchdog is not enabled"
        with pytest.raises(PcpError, match="log rotation needs logging_collector = on"):
            conn.log_rotate()
        with pytest.raises(PcpError, match="invalid process ID : 1"):
            conn.proc_info(1)
        with pytest.raises(PcpError) as info:
            conn.detach_node(5)
        assert info.value.message == "invalid degenerate backend request, node id : 5 status: [0] is not valid for failover"
        assert conn.node_count() == 2
        # pgpool-II ends the connection on this one (FATAL).
        with pytest.raises(PcpError, match="invalid promote request") as info:
            conn.promote_node(0)
        assert info.value.severity == "FATAL" and conn.closed
    with connect(pgpool) as conn:
        assert [n.role_name for n in conn.node_info()] == ["primary", "standby"]
    # pgpool-II's message texts, with what pgpool-py adds to them in DETAIL (and HINT).
    assert both(pgpool, "pcp_detach_node", "7").stderr == (
        "ERROR:  invalid degenerate backend request, node id : 7 status: [0] is not valid for failover\n"
        "DETAIL:  node 7 is not configured\n\n"
    )
    assert both(pgpool, "pcp_promote_node", "0").stderr == (
        "FATAL:  invalid promote request\n"
        "DETAIL:  specified node is already primary node, can't promote node id 0\n\n"
    )
    # Ours say what to do about it.
    assert "HINT:  node ids go from 0 to 1" in tool(pgpool, False, "pcp_node_info", "7").stderr
    report = _error_report(pgpool, proto.node_info_request(7))
    assert report.hint == "node ids go from 0 to 1; pcp_node_info lists the nodes and their status"

    # Process titles, as pgpool-II sets them.
    assert "pgpool: PCP: wait for connection request" in _titles(pgpool)
    with connect(pgpool) as conn:
        conn.node_count()
        assert "pgpool: PCP: processing node count request" in _titles(pgpool)


@needs_pgpool2_tools
def test_detach_then_attach_the_standby(pgpool: PgpoolServer) -> None:
    assert standby_status(pgpool) in ("up", "waiting")
    result = tool(pgpool, True, "pcp_detach_node", "-n", "1")
    assert result.stdout == "pcp_detach_node -- Command Successful\n"
    wait_for(lambda: standby_status(pgpool) == "down", "node 1 down in SHOW POOL_NODES")
    assert " down " in both(pgpool, "pcp_node_info", "1").stdout

    # A down node can be neither detached again nor promoted; the message says what to do.
    with connect(pgpool) as conn:
        with pytest.raises(PcpError) as info:
            conn.detach_node(1)
        assert info.value.detail == "node 1 is already down"
    report = _error_report(pgpool, proto.detach_node_request(1))
    assert report.hint == "pcp_attach_node -n 1 brings it back"
    report = _error_report(pgpool, proto.promote_node_request(1))
    assert (report.detail, report.hint) == ("node 1 is not up", "attach it first with pcp_attach_node -n 1")

    result = tool(pgpool, False, "pcp_attach_node", "1")
    assert (result.returncode, result.stdout) == (0, "pcp_attach_node -- Command Successful\n")
    wait_for(lambda: standby_status(pgpool) in ("up", "waiting"), "node 1 attached in SHOW POOL_NODES")

    # -g returns once main has done the failover.
    result = tool(pgpool, False, "pcp_detach_node", "-g", "1")
    assert (result.returncode, result.stdout) == (0, "pcp_detach_node -- Command Successful\n")
    with connect(pgpool) as conn:
        assert conn.node_info(1)[0].status_name == "down"
    assert tool(pgpool, True, "pcp_attach_node", "1").returncode == 0
    wait_for(lambda: standby_status(pgpool) in ("up", "waiting"), "node 1 attached again")


def test_promote_the_standby(pgpool: PgpoolServer, pg_cluster: list[PgNode]) -> None:
    # Without --switchover pgpool-py takes node 1 for the primary and, as pgpool-II does, marks
    # every other node down (there is no follow_primary_command to bring them back); PostgreSQL
    # is left alone.  -g returns when it is done.
    result = tool(pgpool, False, "pcp_promote_node", "-g", "1")
    assert (result.returncode, result.stdout) == (0, "pcp_promote_node -- Command Successful\n")
    with connect(pgpool) as conn:
        nodes = conn.node_info()
        assert [n.role_name for n in nodes] == ["standby", "primary"]
        assert nodes[0].status_name == "down" and nodes[1].status_name in ("up", "waiting")
    assert (pgpool.conf_path.parent / "log" / "pgpool_status").read_text().split() == ["down", "up"]
    # The old primary gets no reads any more.
    assert {pgpool.psql("SELECT current_setting('port')") for _ in range(4)} == {str(pg_cluster[1].port)}
    with connect(pgpool) as conn:
        with pytest.raises(PcpError, match="invalid promote request"):
            conn.promote_node(1)


def test_last_status_change_follows_a_role_change(pgpool: PgpoolServer) -> None:
    # pgpool-II: last_status_change is updated "whenever status or role is changed".  Node 1
    # stays up and becomes the primary.
    with connect(pgpool) as conn:
        before = conn.node_info(1)[0]
    assert before.status_name == "up"  # the client that found the server ready used it
    time.sleep(1.1)  # the time is kept to the second
    assert tool(pgpool, False, "pcp_promote_node", "-g", "1").returncode == 0
    with connect(pgpool) as conn:
        after = conn.node_info(1)[0]
    assert (after.status_name, after.role_name) == ("up", "primary")
    assert after.status_changed_time > before.status_changed_time
    row = pgpool.psql("SHOW POOL_NODES").splitlines()[1].split("|")
    assert row[-1] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(after.status_changed_time))


def test_a_worker_per_connection(pgpool: PgpoolServer) -> None:
    conns = [connect(pgpool) for _ in range(10)]
    try:
        # Ten logged-in connections at once, served in any order.
        assert {len(conn.node_info()) for conn in conns} == {2}
        assert all(conn.node_count() == 2 for conn in reversed(conns))
        assert _titles(pgpool).count("pgpool: PCP: processing node count request") == 10  # one worker each
    finally:
        for conn in conns:
            conn.close()


@needs_pgpool2_tools
def test_wrong_password(pgpool: PgpoolServer, tmp_path: Path) -> None:
    passfile = tmp_path / "pcppass"
    passfile.write_text(f"*:*:{PCP_USER}:wrong\n")
    passfile.chmod(0o600)
    result = both(pgpool, "pcp_node_count", passfile=passfile)
    assert result.returncode == 1
    assert result.stderr == (
        f'FATAL:  authentication failed for user "{PCP_USER}"\nDETAIL:  username and/or password does not match\n\n'
    )
    assert tool(pgpool, True, "pcp_node_count", passfile=passfile).returncode == 1


# Each malformed request, and what the FATAL reply says about it.
MALFORMED = [
    (b"L" + struct.pack("!i", 0), "incorrect packet length (0)"),
    (b"I" + struct.pack("!i", 260) + b"0\0", "incorrect packet length (260)"),
    (b"Q" + struct.pack("!i", 4), 'unknown PCP packet type "Q"'),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", f"incorrect packet length ({int.from_bytes(b'ET /', 'big')})"),
    (b"I" + struct.pack("!i", 6) + b"0x", "a string is not NUL-terminated"),
]


def test_malformed_packets_close_only_their_connection(pgpool: PgpoolServer) -> None:
    with connect(pgpool) as bystander:
        for data, detail in MALFORMED:
            for login in (False, True):
                packets = _raw_exchange(pgpool, data, login=login)
                assert [p.kind for p in packets] == ["E"], data
                report = proto.decode_report(packets[0].payload)
                assert report.severity == "FATAL"
                # A well-framed request before the login is refused for that reason first.
                framing_error = not data.startswith(b"I" + struct.pack("!i", 6))
                assert report.detail == (detail if login or framing_error else "connection not authorized")
            # Other connections, open or new, are served.
            assert bystander.node_count() == 2
    with connect(pgpool) as conn:
        assert conn.node_count() == 2

    # Requests before the login.
    (packet,) = _raw_exchange(pgpool, proto.node_count_request(), login=False)
    report = proto.decode_report(packet.payload)
    assert (report.severity, report.message, report.detail) == (
        "FATAL", "authentication failed for new PCP connection", "connection not authorized")
    # R without M: no salt was given out.
    (packet,) = _raw_exchange(pgpool, proto.auth_request(PCP_USER, "0" * 32), login=False)
    assert proto.decode_report(packet.payload).message == "authentication failed"


@needs_pgpool2_tools
def test_reload_config_goes_to_main(pgpool: PgpoolServer) -> None:
    with connect(pgpool) as conn:
        conn.reload_config()
    wait_for(lambda: pgpool.log_text().count("reload config files.") == 1, "main to reload")
    result = tool(pgpool, True, "pcp_reload_config")
    assert result.stdout == "pcp_reload_config -- Command Successful\n"
    wait_for(lambda: pgpool.log_text().count("reload config files.") == 2, "main to reload again")


@needs_pgpool2_tools
def test_reload_config_of_an_invalid_file_fails_with_the_reason(pgpool: PgpoolServer) -> None:
    with open(pgpool.conf_path, "a") as f:
        f.write("max_pool = -3\n")
    line = len(pgpool.conf_path.read_text().splitlines())
    reason = f'{pgpool.conf_path}:{line}: invalid value for parameter "max_pool": "-3"'
    # pgpool-II's tool exits 0 after any server ERROR (pgpool-facts.md §5); ours exits 2.
    for real, status in ((False, 2), (True, 0)):
        result = tool(pgpool, real, "pcp_reload_config")
        assert (result.returncode, result.stdout) == (status, ""), result
        assert "ERROR:  reload rejected; the running configuration stays\n" in result.stderr, result.stderr
        assert f"DETAIL:  {reason}" in result.stderr, result.stderr
    assert "reload config files." not in pgpool.log_text()  # main was never asked
    with connect(pgpool) as conn:  # the connection stays usable after the error
        with pytest.raises(PcpError, match="reload rejected"):
            conn.reload_config()
        assert conn.node_count() == 2


@needs_pgpool2_tools
def test_stop_pgpool_fast(pgpool: PgpoolServer) -> None:
    with connect(pgpool) as idle:
        idle.node_count()
        result = tool(pgpool, True, "pcp_stop_pgpool", "-m", "fast")
        assert result.stdout == "pcp_stop_pgpool -- Command Successful\n"
        assert pgpool.proc.wait(WAIT) == 0
    assert "received fast shutdown request" in pgpool.log_text()


def test_reload_rereads_pcp_conf(pgpool: PgpoolServer) -> None:
    pcp_conf = pgpool.conf_path.parent / "pcp.conf"
    pcp_conf.write_text(pcp_conf.read_text() + f"admin:{proto.md5_hex('adminpw')}\n")
    with pytest.raises(PcpAuthError):
        PcpConnection(HOST, pgpool.pcp_port, "admin", "adminpw", connect_timeout=5, timeout=10)
    pgpool.signal(signal.SIGHUP)

    def admin_logs_in() -> bool:
        try:
            with PcpConnection(HOST, pgpool.pcp_port, "admin", "adminpw", connect_timeout=5, timeout=10) as conn:
                return conn.node_count() == 2
        except PcpAuthError:
            return False

    wait_for(admin_logs_in, "the PCP server to reload pcp.conf")

    # A bad line is skipped and named in the log; the other users still log in (before, one
    # bad line refused every PCP login); an unreadable file refuses them until it is back.
    good = pcp_conf.read_text()
    pcp_conf.write_text(good + "nocolon\n")
    pgpool.signal(signal.SIGHUP)
    wait_for(lambda: f"{pcp_conf}:3: invalid pcp.conf line" in pgpool.log_text(), "the pcp.conf error in the log")
    assert admin_logs_in()
    pcp_conf.unlink()
    pgpool.signal(signal.SIGHUP)
    wait_for(lambda: "could not read PCP password file" in pgpool.log_text(), "the pcp.conf error in the log")
    with pytest.raises(PcpAuthError, match="failed to authenticate PCP user"):
        connect(pgpool)
    pcp_conf.write_text(good)
    pgpool.signal(signal.SIGHUP)
    wait_for(admin_logs_in, "the PCP server to take the fixed pcp.conf")


def test_smart_shutdown_ends_idle_pcp_connections(pgpool: PgpoolServer) -> None:
    with connect(pgpool) as conn:
        conn.node_count()
        # stop() fails the test if the server hangs or leaves a process behind.
        assert pgpool.stop("smart") == 0


def test_log_rotate_with_the_logging_collector(pgpool_factory: PgpoolFactory, tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    server = pgpool_factory(extra={**EXTRA, "logging_collector": True, "log_directory": str(log_dir),
                                   "log_filename": "pgpool-%H%M%S.log"})
    wait_for(lambda: len(list(log_dir.glob("pgpool-*.log"))) == 1, "the first log file")
    time.sleep(1.1)  # file names have a one-second resolution
    with connect(server) as conn:
        conn.log_rotate()
    assert len(list(log_dir.glob("pgpool-*.log"))) == 2


def test_pcp_port_in_use_stops_the_server(pgpool_factory: PgpoolFactory) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = pgpool_factory(extra={**EXTRA, "pcp_port": port}, wait_ready=False)
        assert server.proc.wait(WAIT) != 0
    assert f"could not bind PCP socket {HOST}:{port}: Address already in use" in server.log_text()


def test_failed_pcp_login_is_logged_with_the_client_address(pgpool_factory: PgpoolFactory) -> None:
    # %r names the client of a SQL session; it named nobody for a PCP client, so a failed PCP
    # login (a password being guessed) could not be traced to where it came from.
    server = pgpool_factory(extra={**EXTRA, "log_line_prefix": "%m: %a %r pid %p: "})
    with pytest.raises(PcpAuthError):
        PcpConnection(HOST, server.pcp_port, PCP_USER, "wrong", connect_timeout=5, timeout=10)
    wait_for(lambda: "authentication failed" in server.log_text(), "the failed login in the log")
    (line,) = [line for line in server.log_text().splitlines() if "authentication failed" in line]
    assert re.search(r": pcp_child 127\.0\.0\.1\(\d+\) pid \d+: FATAL:  authentication failed for user", line), line
