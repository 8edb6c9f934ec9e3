"""
Faults: a backend killed mid-query, mid-COPY (paused and streaming) and mid-transaction; a
process killed while it holds a shared-memory lock; children killed mid-session; main killed; a
full disk under the status file and the log; PCP clients that vanish mid-command.

After each: no process hangs, clients get an error (never a hang) and can reconnect, the
shared connection counter is consistent, and no acknowledged write is lost (a ledger of
acknowledged inserts is compared with the table).  Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pcp import protocol as proto
from pcp.client import PcpConnection
from pgpool_py.cluster import HOST, PCP_PASSWORD, SERVER_USER, PgNode
from pgpool_py.protocol import messages as m
from tests.fix_pgpool import PgpoolServer, _group_members

COPY_ROWS_BOUND = 3_000_000  # a streaming COPY stops by itself if the fault never ends it
FAULT_TIMEOUT = 10.0  # a client must have its error within this long after a fault
BACK_WITHIN = 15.0  # and be served again within this long after the repair

# A single node, so that killing it is a whole-cluster outage; without failover_on_backend_error
# the node stays attached and clients are served again as soon as it is back.
ONE_NODE = {"backend_clustering_mode": "raw", "num_init_children": 4, "failover_on_backend_error": False}


def bounded(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a thread; fail the test if it does not finish in time (a hang)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the test thread
            error.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{what} hung for more than {timeout:.0f}s")
    if error:
        raise error[0]
    return result[0] if result else None


def served_again(server: PgpoolServer, within: float = BACK_WITHIN) -> int:
    """Wait until a new client runs a query; return how many attempts it took."""
    deadline = time.monotonic() + within
    attempts = 0
    while True:
        attempts += 1
        try:
            with server.connect(connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            return attempts
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Ledger:
    """Inserts whose COMMIT was acknowledged to the client, to compare with the table later."""

    def __init__(self, server: PgpoolServer) -> None:
        self.server = server
        self.acknowledged: set[int] = set()
        self.next_id = 1
        with server.connect(autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS ledger")
            conn.execute("CREATE TABLE ledger (id int PRIMARY KEY)")

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def write(self, count: int) -> None:
        with self.server.connect(autocommit=True) as conn:
            for _ in range(count):
                n = self.take_id()
                conn.execute("INSERT INTO ledger VALUES (%s)", (n,))
                self.acknowledged.add(n)

    def stored(self) -> set[int]:
        with self.server.connect() as conn:
            return {r[0] for r in conn.execute("SELECT id FROM ledger").fetchall()}


class Writer(threading.Thread):
    """Writes through pgpool while a fault happens, reconnecting after each error."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(daemon=True)
        self.ledger = ledger
        self.stop = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.ledger.server.connect(autocommit=True, connect_timeout=5) as conn:
                    while not self.stop.is_set():
                        n = self.ledger.take_id()
                        conn.execute("INSERT INTO ledger VALUES (%s)", (n,))
                        self.ledger.acknowledged.add(n)
                        time.sleep(0.01)
            except psycopg.Error:
                self.errors += 1
                time.sleep(0.05)


# ---------------------------------------------------------------- backend faults


# Each victim signals ``started`` once it is in the middle of its work, and goes on after
# ``killed`` (the node is down); its last step must fail.


def _mid_query(conn: psycopg.Connection[Any], started: threading.Event, killed: threading.Event,
               ledger: Ledger) -> set[int]:
    started.set()
    conn.execute("SELECT pg_sleep(30)")
    return set()


def _mid_copy(conn: psycopg.Connection[Any], started: threading.Event, killed: threading.Event,
              ledger: Ledger) -> set[int]:
    sent: set[int] = set()
    with conn.cursor().copy("COPY ledger (id) FROM STDIN") as copy:
        for i in range(200):
            n = ledger.take_id()
            copy.write_row((n,))
            sent.add(n)
            if i == 100:
                started.set()
                killed.wait(FAULT_TIMEOUT)
    return sent  # leaving the block sent CopyDone and waited for the result


def _streaming_copy(conn: psycopg.Connection[Any], started: threading.Event, killed: threading.Event,
                    ledger: Ledger) -> set[int]:
    # No pause: the node dies while pgpool is forwarding CopyData, not waiting for replies.
    sent: set[int] = set()
    with conn.cursor().copy("COPY ledger (id) FROM STDIN") as copy:
        for i in range(COPY_ROWS_BOUND):
            n = ledger.take_id()
            copy.write_row((n,))
            sent.add(n)
            if i == 1000:
                started.set()
    return sent


def _mid_transaction(conn: psycopg.Connection[Any], started: threading.Event, killed: threading.Event,
                     ledger: Ledger) -> set[int]:
    n = ledger.take_id()
    conn.execute("BEGIN")
    conn.execute("INSERT INTO ledger VALUES (%s)", (n,))
    started.set()
    killed.wait(FAULT_TIMEOUT)  # idle in transaction while the node dies
    conn.execute("COMMIT")
    return {n}


def test_backend_killed_mid_query_copy_and_transaction(pgpool_factory: Any, pg_cluster_factory: Any) -> None:
    (node,) = pg_cluster_factory(num_nodes=1)
    server = pgpool_factory([node], extra=ONE_NODE)
    ledger = Ledger(server)
    processes = sorted(_group_members(server.pid))
    report = []
    for name, victim in (("query", _mid_query), ("copy", _mid_copy), ("streaming copy", _streaming_copy),
                         ("transaction", _mid_transaction)):
        ledger.write(20)
        writer = Writer(ledger)
        writer.start()
        started, killed = threading.Event(), threading.Event()
        unacknowledged: set[int] = set()
        outcome: list[str] = []

        def run(victim: Callable[..., set[int]] = victim) -> None:
            with server.connect(autocommit=True) as conn:
                try:
                    unacknowledged.update(victim(conn, started, killed, ledger))
                    outcome.append("succeeded")
                except psycopg.Error as exc:
                    outcome.append(f"error {exc.sqlstate or ''}: {str(exc).splitlines()[0]}")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert started.wait(FAULT_TIMEOUT), f"{name}: the victim never got going"
        time.sleep(0.2)
        node.stop("immediate")
        killed.set()
        thread.join(FAULT_TIMEOUT)
        assert not thread.is_alive(), f"mid-{name}: the client hung after its backend was killed"
        node.start()
        attempts = served_again(server)
        writer.stop.set()
        writer.join(FAULT_TIMEOUT)
        assert not writer.is_alive(), f"mid-{name}: the writer hung"

        assert outcome and outcome[0].startswith("error"), f"mid-{name}: {outcome}"
        stored = ledger.stored()
        lost = ledger.acknowledged - stored
        assert not lost, f"mid-{name}: acknowledged writes lost: {sorted(lost)[:10]}"
        # What was never acknowledged was rolled back (COPY and a transaction are atomic).
        assert not unacknowledged & stored, f"mid-{name}: unacknowledged rows were kept"
        report.append(f"mid-{name}: client got '{outcome[0]}'; writer errors {writer.errors}; "
                      f"served again after {attempts} attempt(s)")
    print(f"\n{len(report)} backend kills survived, {len(ledger.acknowledged)} acknowledged writes all kept:")
    print("\n".join("  " + line for line in report))
    assert sorted(_group_members(server.pid)) == processes, "a pgpool process died of a backend fault"


# ---------------------------------------------------------------- child and lock faults


def _lock_file_path(server: PgpoolServer, pid: int) -> str:
    """/proc path of the shared lock file as ``pid`` holds it: the unlinked temporary file
    (O_TMPFILE, so it has no name) that main also holds."""

    def unnamed_files(p: int) -> dict[str, str]:
        out = {}
        for fd in os.listdir(f"/proc/{p}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{p}/fd/{fd}")
                if re.search(r"/#\d+ \(deleted\)$", target):
                    out[target] = f"/proc/{p}/fd/{fd}"
        return out

    ours, mains = unnamed_files(pid), unnamed_files(server.pid)
    common = [path for target, path in ours.items() if target in mains]
    assert len(common) == 1, f"cannot tell the lock file of process {pid}: {ours}"
    return common[0]


# Takes the lock as a child does (fcntl.lockf on the byte of LockId.CONN_COUNTER), then waits
# to be killed.  POSIX record locks belong to the process and the file, so this is exactly
# the lock the children and main contend for.
HOLD_LOCK = """
import fcntl, sys, time
from pgpool_py.shmem.layout import LockId
f = open(sys.argv[1], "r+b")
fcntl.lockf(f.fileno(), fcntl.LOCK_EX, 1, int(LockId.CONN_COUNTER))
print("locked", flush=True)
time.sleep(60)
"""


def _startup_answer(port: int, timeout: float) -> bytes:
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test"}))
        return sock.recv(1)


def test_pooled_connection_closed_while_idle_is_replaced(pgpool_factory: Any, pg_cluster: list[PgNode]) -> None:
    # One child, so the second client finds the first one's pooled connections; reads on the
    # standby, whose connection (not the first of the slot's) is the one that dies.
    server = pgpool_factory(pg_cluster, extra={"num_init_children": 1, "backend_weight0": 0,
                                                "failover_on_backend_error": False})
    standby = pg_cluster[1]
    with server.connect(autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert standby.psql(f"SELECT pg_terminate_backend({pid})") == "t"
    deadline = time.monotonic() + FAULT_TIMEOUT
    while standby.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") != "0":
        assert time.monotonic() < deadline, "the terminated backend did not exit"
        time.sleep(0.1)
    with server.connect(autocommit=True) as conn:
        # Served by a new connection to the standby, not the dead one (which would fail here).
        new_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert new_pid != pid


def test_holder_of_a_shared_memory_lock_killed(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": "raw", "num_init_children": 2})
    child = next(p for p in _group_members(server.pid) if p != server.pid)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, _lock_file_path(server, child)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # While the lock is held, a new client waits: the lock is the one the children use.
        with pytest.raises(socket.timeout):
            _startup_answer(server.port, timeout=1.0)
        holder.send_signal(signal.SIGKILL)
        holder.wait(5)
        # The kernel released the dead holder's lock: clients are served at once.
        answer = bounded(lambda: _startup_answer(server.port, timeout=5.0), 6, "a client after the kill")
        assert answer == b"R"
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert served_again(server, within=5) == 1
    print("\nlock holder SIGKILLed with CONN_COUNTER held: 1 client blocked, then served at once")


def _child_serving(server: PgpoolServer, conn: psycopg.Connection[Any]) -> int:
    """The pid of the child process at the other end of ``conn`` (by the socket's inode)."""
    with socket.fromfd(conn.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as s:
        client_port = s.getsockname()[1]
    wanted = f"{server.port:04X}"
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if local.endswith(":" + wanted) and remote.endswith(f":{client_port:04X}"):
                inode = fields[9]
    assert inode, "cannot find the server side of the connection"
    for pid in _group_members(server.pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" and pid != server.pid:
                        return pid
    raise AssertionError("no child holds the connection")


def test_children_killed_mid_session_keep_the_counter_consistent(pgpool_factory: Any, pg_cluster: Any) -> None:
    children, reserved, kills = 4, 1, 6
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": "raw", "num_init_children": children,
                                               "reserved_connections": reserved})
    errors = []
    for _ in range(kills):
        conn = server.connect(autocommit=True, sslmode="disable")
        conn.execute("BEGIN")
        os.kill(_child_serving(server, conn), signal.SIGKILL)
        with pytest.raises(psycopg.OperationalError) as info:
            bounded(lambda: conn.execute("SELECT 1"), FAULT_TIMEOUT, "a client whose child was killed")
        errors.append(str(info.value).splitlines()[0])
        conn.close()
    # Each killed child had counted its client in shared memory and never counted it out. If
    # main did not correct the counter, these clients would be refused as "too many".
    time.sleep(0.5)  # main reaps and respawns
    conns = [bounded(lambda: server.connect(sslmode="disable"), FAULT_TIMEOUT, "a new client")
             for _ in range(children - reserved)]
    for conn in conns:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.close()
    print(f"\n{kills} children SIGKILLed mid-session; their clients got: {sorted(set(errors))}; "
          f"then {children - reserved} concurrent clients were served")


def test_main_killed_children_exit_and_ports_close(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": "raw", "num_init_children": 4})
    idle_client = server.connect()
    idle_client.execute("SELECT 1")
    busy_child = _child_serving(server, idle_client)
    processes = _group_members(server.pid)
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(5)

    def closed(port: int) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return False
        return True

    deadline = time.monotonic() + 5
    while not (closed(server.port) and closed(server.pcp_port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert closed(server.port) and closed(server.pcp_port), "something still listens after main died"
    # Every process but the one still serving its client exits at once ...
    while set(_group_members(server.pid)) - {busy_child} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(_group_members(server.pid)) <= {busy_child}
    # ... and that one goes as soon as its client has left.
    idle_client.close()
    while _group_members(server.pid) and time.monotonic() < deadline + 5:
        time.sleep(0.1)
    assert not _group_members(server.pid), "processes outlived main"
    print(f"\nmain SIGKILLed: {len(processes) - 1} other processes exited, ports {server.port} and "
          f"{server.pcp_port} closed")


# ---------------------------------------------------------------- full disk


@contextlib.contextmanager
def tiny_tmpfs(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory``; return the filler file (delete it to make room)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        (directory / "probe").write_text("x" * 8192)
    return filler


def _pcp(server: PgpoolServer) -> PcpConnection:
    return PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, timeout=FAULT_TIMEOUT)


def test_disk_full_under_the_status_file(pgpool_factory: Any, pg_cluster: list[PgNode], tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "full") as work_dir:
        server = pgpool_factory(pg_cluster, extra={"work_dir": str(work_dir), "num_init_children": 2})
        fill(work_dir)
        with _pcp(server) as pcp:
            pcp.detach_node(1)  # main writes pgpool_status: the disk is full
            served = [served_again(server, within=5) for _ in range(5)]
            pcp.attach_node(1)
        lines = [l for l in server.log_text().splitlines() if "could not write status file" in l]
        assert lines and "No space left on device" in lines[0], server.log_tail(30)
        print(f"\nstatus file on a full disk: {len(served)} clients served; the log says: {lines[0]}")
        server.stop("fast")


def test_disk_full_under_the_log(pgpool_factory: Any, pg_cluster: list[PgNode], tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "full") as log_dir:
        server = pgpool_factory(pg_cluster, extra={"logging_collector": True, "log_directory": str(log_dir),
                                                   "num_init_children": 2, "log_connections": True})
        processes = sorted(_group_members(server.pid))
        filler = fill(log_dir)
        for _ in range(20):  # each logs a connection line it cannot write
            served_again(server, within=5)
        assert sorted(_group_members(server.pid)) == processes, "a process died of the full disk"
        filler.unlink()
        # A startup packet with a made-up protocol version is logged with the version in it.
        marker = "unsupported frontend protocol 7.1234"
        with socket.create_connection((HOST, server.port), timeout=5) as sock:
            sock.sendall(struct.pack("!ii", 8, (7 << 16) | 1234))
            sock.recv(4096)
        deadline = time.monotonic() + 5
        text = ""
        while marker not in text and time.monotonic() < deadline:
            text = "".join(p.read_text(errors="replace") for p in log_dir.iterdir() if p.suffix == ".log")
            time.sleep(0.1)
        print("\nlog on a full disk: 20 clients served; logging resumed once space was freed:",
              marker in text)
        assert marker in text
        server.stop("fast")


# ---------------------------------------------------------------- PCP client vanishing


def _pcp_drop(server: PgpoolServer, how: int) -> str:
    """Authenticate, then vanish in the middle of a command in one of several ways."""
    with socket.create_connection((HOST, server.pcp_port), timeout=5) as sock:
        sock.sendall(proto.salt_request())
        packets: list[proto.Packet] = []
        buf = b""
        while not packets:
            buf += sock.recv(4096)
            packets, _ = proto.decode_packets(buf)
        salt = proto.decode_salt(packets[0].payload)
        sock.sendall(proto.auth_request(SERVER_USER, proto.auth_hash(proto.md5_hex(PCP_PASSWORD), SERVER_USER, salt)))
        assert sock.recv(4096)[:1] == b"r"
        request = [proto.process_info_request(0), proto.node_info_request(-1), proto.pool_status_request()][how % 3]
        if how % 2:
            sock.sendall(request[: len(request) // 2])  # half a packet, then gone
            return "half a request"
        sock.sendall(request)  # a whole request, gone before the reply
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        return "request, reset before the reply"


def test_pcp_client_dropped_mid_command(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"num_init_children": 2})
    baseline = set(_group_members(server.pid))
    counts: dict[str, int] = {}
    for how in range(30):
        kind = _pcp_drop(server, how)
        counts[kind] = counts.get(kind, 0) + 1
    with _pcp(server) as pcp:
        assert pcp.node_count() == len(pg_cluster)
    served_again(server, within=5)
    deadline = time.monotonic() + 5
    while set(_group_members(server.pid)) != baseline and time.monotonic() < deadline:
        time.sleep(0.1)  # PCP workers of the dropped clients exit
    assert set(_group_members(server.pid)) == baseline, "PCP workers of vanished clients linger"
    print(f"\nPCP clients dropped mid-command: {counts}; PCP and clients served afterwards, no worker left")


def _titles_of_children(parent: int) -> dict[int, str]:
    """Live (non-zombie) child processes of ``parent``: pid -> process title."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if int(ppid) == parent and state != "Z":
            found[int(entry)] = title
    return found


def test_processes_stopped_by_a_signal_are_restarted(pgpool_factory: Any, pg_cluster: Any) -> None:
    # A stop signal sent to one process (not to main) used to end it for good: a smaller pool,
    # no more health checks, and PCP clients hanging on the listen socket main still held.
    children = 2
    server = pgpool_factory(pg_cluster, extra={"num_init_children": children, "health_check_period": 1,
                                               "sr_check_period": 1})
    client_title = "pgpool: wait for connection request"
    cases = [
        (client_title, signal.SIGTERM), (client_title, signal.SIGINT), (client_title, signal.SIGQUIT),
        ("pgpool: health check process(0)", signal.SIGTERM), ("pgpool: health check process(1)", signal.SIGINT),
        ("pgpool: worker process", signal.SIGQUIT), ("pgpool: worker process", signal.SIGTERM),
        ("pgpool: PCP: wait for connection request", signal.SIGTERM),
        ("pgpool: PCP: wait for connection request", signal.SIGINT),
        ("pgpool: PCP: wait for connection request", signal.SIGQUIT),
    ]
    for title, sig in cases:
        before = _titles_of_children(server.pid)
        victim = next(pid for pid, t in before.items() if t == title)
        wanted = sum(1 for t in before.values() if t == title)
        os.kill(victim, sig)

        def replaced() -> bool:
            # At least as many as before: a child still ending the fixture's session may
            # have come back to waiting meanwhile.
            now = _titles_of_children(server.pid)
            return victim not in now and sum(1 for t in now.values() if t == title) >= wanted

        def logged() -> bool:
            # The victim may be gone, and enough others waiting, before main has reaped it
            # and logged the restart.
            return re.search(rf"(LOG|WARNING):  .*process {victim} (exited|was terminated).*; restarting it",
                             server.log_text()) is not None

        deadline = time.monotonic() + FAULT_TIMEOUT
        while not replaced():
            assert time.monotonic() < deadline, f"{title!r} not restarted after {sig.name}\n{server.log_tail(30)}"
            time.sleep(0.1)
        while not logged():
            assert time.monotonic() < deadline, f"{title!r}'s restart not logged\n{server.log_tail(30)}"
            time.sleep(0.1)
    with _pcp(server) as pcp:
        assert pcp.node_count() == 2
    assert served_again(server, within=5) >= 0
    assert server.stop("fast") == 0


def test_stray_signals_to_main_are_logged_and_ignored(pgpool_factory: Any, pg_cluster: Any) -> None:
    # Signals pgpool-py does not use whose default action is to terminate: main died of them silently.
    server = pgpool_factory(pg_cluster, extra={"num_init_children": 2})
    stray = [signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGPWR]
    for sig in stray + [signal.SIGPIPE]:
        os.kill(server.pid, sig)
    for sig in stray:
        deadline = time.monotonic() + FAULT_TIMEOUT
        while f"WARNING:  received signal {sig.name}; pgpool-py does not use it, ignoring it" not in server.log_text():
            assert server.proc.poll() is None, f"main died of {sig.name}\n{server.log_tail(30)}"
            assert time.monotonic() < deadline, server.log_tail(30)
            time.sleep(0.1)
    assert served_again(server, within=5) >= 1
    assert server.proc.poll() is None
    assert server.stop("fast") == 0
