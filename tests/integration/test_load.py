"""
Load: ten times num_init_children clients at once (the excess waits in the listen backlog, or
is refused with "Sorry, too many clients already" when reserved_connections is set), and
memory that stays flat over thousands of sequential sessions.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from pgpool_py.cluster import HOST, SERVER_USER
from pgpool_py.protocol import messages as m
from tests.fix_pgpool import PgpoolServer, _group_members, read_until

CHILDREN = 4
CLIENTS = 10 * CHILDREN
HOLD = 0.2  # seconds each client keeps its child busy
ALL_ANSWERED_WITHIN = 30.0
STARTUP = m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test"})
QUERY = m.query("SELECT 1")


def _client(server: PgpoolServer, n: int) -> tuple[str, float]:
    """One client: connect, run a query that takes HOLD seconds, check the answer."""
    start = time.monotonic()
    try:
        # sslmode=disable: libpq 17+ hides an error sent in reply to SSLRequest, and pgpool
        # (like pgpool-II) sends "too many clients" before reading the startup packet.
        with server.connect(connect_timeout=ALL_ANSWERED_WITHIN, sslmode="disable") as conn:
            row = conn.execute("SELECT %s::int, pg_sleep(%s)", (n, HOLD)).fetchone()
        assert row is not None and row[0] == n
        return "answered", time.monotonic() - start
    except psycopg.OperationalError as exc:
        # libpq keeps no SQLSTATE for a refused connection: the text is all a client gets.
        outcome = "too many clients" if "Sorry, too many clients already" in str(exc) else str(exc)
        return outcome, time.monotonic() - start


def _storm(server: PgpoolServer) -> tuple[dict[str, int], float, float]:
    start = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda n: _client(server, n), range(CLIENTS)))
    outcomes: dict[str, int] = {}
    for outcome, _took in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes, max(took for _o, took in results), time.monotonic() - start


def test_ten_times_num_init_children_clients_all_get_answers(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"num_init_children": CHILDREN})
    outcomes, slowest, total = _storm(server)
    print(f"\n{CLIENTS} clients at once on {CHILDREN} children: {outcomes}; slowest {slowest:.1f}s, all {total:.1f}s")
    assert outcomes == {"answered": CLIENTS}
    # They were served a few at a time: the excess waited in the backlog, not in parallel.
    assert slowest >= (CLIENTS // CHILDREN) * HOLD * 0.9
    assert total < ALL_ANSWERED_WITHIN


def test_reserved_connections_refuse_the_excess(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"num_init_children": CHILDREN, "reserved_connections": 1})
    outcomes, slowest, total = _storm(server)
    print(f"\n{CLIENTS} clients at once, reserved_connections = 1: {outcomes}; all done in {total:.1f}s")
    assert set(outcomes) == {"answered", "too many clients"}, outcomes
    assert total < ALL_ANSWERED_WITHIN
    # With num_init_children - reserved_connections clients connected, the next one gets
    # pgpool-II's FATAL with SQLSTATE 53300 ...
    held = [server.connect() for _ in range(CHILDREN - 1)]
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(STARTUP)
        reply = sock.recv(65536)
    assert reply[:1] == b"E"
    fields = m.parse_error_fields(reply[5:])
    assert (fields["S"], fields["C"], fields["M"]) == ("FATAL", "53300", "Sorry, too many clients already")
    # libpq's default sslmode=prefer opens with an SSLRequest: the refusal still reaches it.
    with pytest.raises(psycopg.OperationalError, match="Sorry, too many clients already"):
        server.connect()
    for conn in held:
        conn.close()
    # ... and once they have left (the children notice the Terminate a moment later), the
    # counter is back down and new clients are served.
    deadline = time.monotonic() + 5
    while True:
        try:
            with server.connect(sslmode="disable") as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "clients still refused after the others left"
            time.sleep(0.1)


# ---------------------------------------------------------------- memory


WARMUP_SESSIONS = 300
SESSIONS = 10_000  # the number; about 20 s here
# Growth allowed per process after the warm-up (the allocator keeps some slack). A leak of
# 1 KB per session would add over 2 MB to each child here.
RSS_GROWTH_LIMIT_KB = 512


def _read_until_ready(sock: socket.socket) -> None:
    reply = read_until(sock)
    assert all(typ != ord("E") for typ, _s, _e in m.split_messages(reply)[0]), reply


def _session(port: int) -> None:
    """A whole session in raw protocol (psycopg is slower than the server under test)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(STARTUP)
        _read_until_ready(sock)
        sock.sendall(QUERY)
        _read_until_ready(sock)
        sock.sendall(m.TERMINATE)


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB from /proc/<pid>/smaps_rollup."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name] = int(rest.split()[0])
    return values["Rss"], values["Pss"]


def test_memory_is_flat_over_many_sessions(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"num_init_children": CHILDREN})
    # Warm every child: idle children are woken one at a time (EPOLLEXCLUSIVE), so sequential
    # sessions may all land on one of them; sessions held side by side reach each child.
    for _ in range(WARMUP_SESSIONS // CHILDREN):
        held = []
        for _ in range(CHILDREN):
            sock = socket.create_connection((HOST, server.port), timeout=10)
            sock.sendall(STARTUP)
            _read_until_ready(sock)
            held.append(sock)
        for sock in held:
            sock.sendall(QUERY)
            _read_until_ready(sock)
            sock.sendall(m.TERMINATE)
            sock.close()
    pids = sorted(_group_members(server.pid))
    before = {pid: _memory_kb(pid) for pid in pids}
    start = time.monotonic()
    for _ in range(SESSIONS):
        _session(server.port)
    took = time.monotonic() - start
    assert sorted(_group_members(server.pid)) == pids, "a process died or was replaced during the run"
    after = {pid: _memory_kb(pid) for pid in pids}

    print(f"\n{SESSIONS} sequential sessions in {took:.1f}s after {WARMUP_SESSIONS} warm-up ones;"
          " per process RSS/PSS kB before -> after:")
    for pid in pids:
        print(f"  {pid}: {before[pid][0]}/{before[pid][1]} -> {after[pid][0]}/{after[pid][1]}"
              f"  (RSS {after[pid][0] - before[pid][0]:+d})")
    grown = {pid: after[pid][0] - before[pid][0] for pid in pids}
    assert max(grown.values()) < RSS_GROWTH_LIMIT_KB, grown
    with server.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
