"""
The foundation: real clients through pgpool-py in front of a real PostgreSQL 15, in raw mode
(every session goes to node 0).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest

from pgpool_py.cluster import HOST, SERVER_USER
from pgpool_py.protocol import messages as m
from tests.fix_pgpool import read_until

RAW = {"backend_clustering_mode": "raw"}


def pgbench(server: Any, *args: str, timeout: float = 120) -> str:
    cmd = ["pgbench", "-h", HOST, "-p", str(server.port), "-U", SERVER_USER, *args, "test"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture
def raw_pgpool(pgpool_factory: Any, pg_cluster: Any) -> Any:
    return pgpool_factory(pg_cluster, extra=RAW)


def test_psql_reaches_the_primary(raw_pgpool: Any) -> None:
    assert raw_pgpool.psql("SELECT pg_is_in_recovery()") == "f"


def test_pgbench_simple_extended_and_tpcb(raw_pgpool: Any) -> None:
    pgbench(raw_pgpool, "-i", "-s", "1", "-q")
    for args in (["-S", "-M", "extended"], ["-M", "simple"], ["-S", "-M", "prepared"]):
        out = pgbench(raw_pgpool, *args, "-c", "4", "-j", "2", "-T", "2")
        assert "number of failed transactions: 0 (0.000%)" in out, out
        processed = re.search(r"number of transactions actually processed: (\d+)", out)
        assert processed and int(processed.group(1)) > 0, out


def test_psycopg_simple_prepared_pipeline_copy(raw_pgpool: Any) -> None:
    with raw_pgpool.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t_found")
        conn.execute("CREATE TABLE t_found (id int primary key, v text)")
        # Server-side prepared statements (Parse/Bind/Execute with a name).
        for i in range(10):
            conn.execute("INSERT INTO t_found VALUES (%s, %s)", (i, f"v{i}"), prepare=True)
        assert conn.execute("SELECT count(*) FROM t_found WHERE id >= %s", (0,), prepare=True).fetchone() == (10,)
        # Pipeline mode: many statements before one Sync.
        with conn.pipeline():
            curs = [conn.execute("SELECT v FROM t_found WHERE id = %s", (i,)) for i in range(10)]
        assert [c.fetchone()[0] for c in curs] == [f"v{i}" for i in range(10)]
        # COPY in and out.
        with conn.cursor() as cur:
            with cur.copy("COPY t_found (id, v) FROM STDIN") as copy:
                for i in range(10, 1010):
                    copy.write_row((i, "x" * 50))
            assert cur.execute("SELECT count(*) FROM t_found").fetchone() == (1010,)
            with cur.copy("COPY (SELECT id FROM t_found ORDER BY id) TO STDOUT") as copy:
                rows = [r for r in copy.rows()]
            assert len(rows) == 1010
        # A message far larger than any buffer in the relay, both ways.
        big = "y" * (8 * 1024 * 1024)
        assert conn.execute("SELECT length(%s::text)", (big,)).fetchone() == (len(big),)
        assert len(conn.execute("SELECT repeat('z', 8388608)").fetchone()[0]) == 8388608
        # An error leaves the session usable (ErrorResponse then ReadyForQuery).
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # Notices and NOTIFY pass through.
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
        assert notices == ["hello from plpgsql"]
        conn.execute("LISTEN chan")
        conn.execute("NOTIFY chan, 'payload'")
        got = list(conn.notifies(timeout=2, stop_after=1))
        assert [n.payload for n in got] == ["payload"]
        conn.execute("DROP TABLE t_found")


def test_cached_connection_is_clean_for_the_next_client(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={**RAW, "num_init_children": 1, "max_pool": 1})
    with server.connect(autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("SET work_mem = '17MB'")
        conn.execute("CREATE TEMP TABLE scratch (x int)")
        conn.execute("PREPARE p1 AS SELECT 1")
        conn.execute("SELECT pg_advisory_lock(4242)")
        conn.execute("BEGIN")
        conn.execute("SELECT 1")  # left open: the reset must abort it
    with server.connect(autocommit=True) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid, "connection was not reused"
        assert conn.execute("SHOW work_mem").fetchone()[0] == "4MB"
        assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
        assert locks == 0
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _child_pids(server: Any) -> set[int]:
    out = server.psql("SHOW POOL_PROCESSES")
    return {int(line.split("|")[0]) for line in out.splitlines() if line}


def test_killed_child_is_respawned_and_others_keep_working(raw_pgpool: Any) -> None:
    with raw_pgpool.connect(autocommit=True) as busy:
        mine = busy.execute("SELECT 1").fetchone()
        assert mine == (1,)
        before = _child_pids(raw_pgpool)
        assert len(before) == 4
        # Find a child that is not serving `busy`: any child whose status is waiting.
        out = raw_pgpool.psql("SHOW POOL_PROCESSES")
        idle = [int(l.split("|")[0]) for l in out.splitlines() if l.endswith("Wait for connection")]
        victim = idle[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            after = _child_pids(raw_pgpool)
            if victim not in after and len(after) == 4:
                break
            time.sleep(0.05)
        assert victim not in after and len(after) == 4, f"not respawned within 1 s: {before} -> {after}"
        assert busy.execute("SELECT 2").fetchone() == (2,)


def test_cancel_returns_within_two_seconds(raw_pgpool: Any) -> None:
    with raw_pgpool.connect(autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 2.5
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _send_cancel(port: int, pid: int, key: bytes) -> None:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(m.cancel_request(pid, key))
        sock.recv(1)  # closed once the request is handled


def test_late_cancel_from_an_earlier_client_spares_the_next(pgpool_factory: Any, pg_cluster: Any) -> None:
    # A later client of the first one's cached backend connection: with the backend's own key
    # (pgpool-II), the first client's cancel would stop its query.
    server = pgpool_factory(pg_cluster, extra={**RAW, "num_init_children": 3})
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test"}))
        welcome = read_until(sock)
        sock.sendall(m.TERMINATE)
    msgs, _ = m.split_messages(welcome)
    (body,) = [welcome[start + 5:end] for typ, start, end in msgs if typ == ord("K")]
    first_pid, first_key = struct.unpack("!i", body[:4])[0], body[4:8]

    # Which child accepts is up to the kernel: clients held open take the other children, so
    # the third at the latest reaches the first one's; then the others leave, to serve cancels.
    others = []
    for _ in range(3):
        conn = server.connect(autocommit=True)
        if conn.info.backend_pid == first_pid:
            break
        others.append(conn)
    else:
        pytest.fail("no later client got the first client's backend connection")
    for other in others:
        other.close()
    with conn:
        timer = threading.Timer(0.3, _send_cancel, (server.port, first_pid, first_key))
        timer.start()
        assert conn.execute("SELECT pg_sleep(1.5), 1").fetchone() == ("", 1)
        timer.join()
        # Its own cancel still works.
        timer = threading.Timer(0.3, conn.cancel)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        timer.join()


def test_smart_shutdown_waits_for_clients(raw_pgpool: Any) -> None:
    conn = raw_pgpool.connect(autocommit=True)
    raw_pgpool.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert raw_pgpool.proc.poll() is None, "smart shutdown must wait for the connected client"
    assert conn.execute("SELECT 3").fetchone() == (3,)
    with pytest.raises(psycopg.OperationalError):
        raw_pgpool.connect()
    conn.close()
    assert raw_pgpool.stop("smart", timeout=10) == 0


def test_fast_shutdown_disconnects_clients(raw_pgpool: Any) -> None:
    conn = raw_pgpool.connect(autocommit=True)
    assert raw_pgpool.stop("fast", timeout=5) == 0
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def test_immediate_shutdown(raw_pgpool: Any) -> None:
    conn = raw_pgpool.connect(autocommit=True)
    started = time.monotonic()
    raw_pgpool.stop("immediate", timeout=5)
    assert time.monotonic() - started < 3
    conn.close()


def test_stale_pid_file_is_replaced_and_live_one_refused(pgpool_factory: Any, pg_cluster: Any, tmp_path: Any) -> None:
    pid_file = tmp_path / "stale.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write_text(f"{dead.pid}\n")
    server = pgpool_factory(pg_cluster, extra={**RAW, "pid_file_name": str(pid_file)})
    assert "stale pid file" in server.log_text()
    assert pid_file.read_text().strip() == str(server.pid)
    second = pgpool_factory(pg_cluster, extra={**RAW, "pid_file_name": str(pid_file)}, wait_ready=False)
    assert second.proc.wait(10) != 0
    assert f"found. is another pgpool({server.pid}) is running?" in second.log_text()


def _backend_alive(node: Any, pid: int) -> bool:
    return node.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == "1"


def test_connection_life_time_closes_idle_pooled_connections(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={**RAW, "num_init_children": 1, "connection_life_time": 2})
    with server.connect(autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert _backend_alive(pg_cluster[0], pid), "the connection should be pooled at first"
    deadline = time.monotonic() + 6
    while _backend_alive(pg_cluster[0], pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _backend_alive(pg_cluster[0], pid), "pooled connection outlived connection_life_time"


def test_child_max_connections_recycles_the_child(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={**RAW, "num_init_children": 1, "child_max_connections": 2})
    first = _child_pids(server)  # this session is the child's 2nd (the readiness probe was the 1st)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pids = _child_pids(server)
        if pids and pids != first:
            break
        time.sleep(0.1)
    assert pids and pids != first, "the child was not replaced after child_max_connections sessions"
    assert "child exiting, 2 connections reached" in server.log_text()


@pytest.mark.parametrize("mode", ["raw", "streaming"])
def test_log_connections_statements_and_client_messages(pgpool_factory: Any, pg_cluster: Any, mode: str) -> None:
    # These parameters were read by nothing: turned on, they logged nothing.
    extra = {"log_connections": True, "log_disconnections": True, "log_statement": True,
             "log_client_messages": True}
    server = pgpool_factory(pg_cluster, extra={**extra, **RAW} if mode == "raw" else extra)
    with server.connect(autocommit=True, application_name="logged") as conn:
        conn.execute("SELECT 'simple' || 1")
        conn.execute("SELECT 'extended' || %s", (2,))
    deadline = time.monotonic() + 5
    while "frontend disconnection" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log_text()
    assert "LOG:  new connection received" in log and "DETAIL:  connecting host=127.0.0.1 port=" in log
    assert "LOG:  statement: SELECT 'simple' || 1" in log
    assert "LOG:  statement: SELECT 'extended' || $1" in log
    assert 'LOG:  Parse message from frontend.' in log and 'DETAIL:  statement: "", query: "SELECT ' in log
    assert "LOG:  Bind message from frontend." in log and "LOG:  Sync message from frontend." in log
    assert log.count("LOG:  statement: SELECT 'simple' || 1") == 1  # once, though batches may be read twice
    assert re.search(r"frontend disconnection: session time: \d+:\d\d:\d\d\.\d{3} user=postgres database=test "
                     r"host=127\.0\.0\.1 port=\d+", log)
