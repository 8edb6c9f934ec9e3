"""pgpool's own SQL commands on the client port: SHOW POOL_*, PGPOOL SHOW/SET/RESET."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import asyncpg
import psycopg
import pytest

from pgpool_py.cluster import HOST, SERVER_USER
from pgpool_py.protocol import messages as m
from tests.fix_pgpool import read_until


@pytest.fixture
def server(pgpool_factory: Any, pg_cluster: Any) -> Any:
    return pgpool_factory(pg_cluster)


@pytest.mark.parametrize(
    "command, columns",
    [
        ("SHOW POOL_NODES", 14),
        ("SHOW POOL_PROCESSES", 8),
        ("SHOW POOL_POOLS", 17),  # pgpool-II 4.3's columns, ending with status
        ("SHOW POOL_VERSION", 1),
        ("SHOW POOL_STATUS", 3),
        ("SHOW POOL_HEALTH_CHECK_STATS", 20),
        ("SHOW POOL_BACKEND_STATS", 14),
        ("PGPOOL SHOW ALL", 3),
        ("pgpool show port", 1),
    ],
)
def test_show_commands_have_pgpool_columns(server: Any, command: str, columns: int) -> None:
    with server.connect(autocommit=True) as conn:
        cur = conn.execute(command)
        assert cur.description is not None and len(cur.description) == columns
        assert cur.fetchall()


def test_pool_version_sends_its_header_once(server: Any) -> None:
    """pgpool-II 4.3 sent RowDescription twice for POOL_VERSION and POOL_PROCESSES."""
    for command in ("SHOW POOL_VERSION", "SHOW POOL_PROCESSES"):
        with socket.create_connection((HOST, server.port), timeout=5) as s:
            s.sendall(m.startup_message(m.PROTOCOL_3_0, {"user": "postgres", "database": "test"}))
            data = b""
            while not data.endswith(b"Z\x00\x00\x00\x05I"):
                data += s.recv(65536)
            s.sendall(m.query(command))
            reply = b""
            while not reply.endswith(b"Z\x00\x00\x00\x05I"):
                reply += s.recv(65536)
        types = [chr(reply[start]) for _t, start, _e in m.split_messages(reply)[0]]
        assert types.count("T") == 1, (command, types)
        assert types[-2:] == ["C", "Z"]


def test_pool_processes_shows_a_logged_in_client_as_idle(server: Any) -> None:
    # Before, a session showed "Connecting" until its first statement (and for ever if it
    # only ran pgpool's commands).
    # The asking one executes a command meanwhile, as in pgpool-II.
    with server.connect(autocommit=True) as idle, server.connect(autocommit=True) as asking:
        rows = asking.execute("SHOW POOL_PROCESSES").fetchall()
        statuses = sorted(row[-1] for row in rows if row[-1] != "Wait for connection")
        assert statuses == ["Execute command", "Idle"], rows
        # ... and is idle again afterwards.
        rows = idle.execute("SHOW POOL_PROCESSES").fetchall()
        assert sorted(row[-1] for row in rows if row[-1] != "Wait for connection") == ["Execute command", "Idle"]


def test_pool_pools_rows_show_their_process_status(server: Any) -> None:
    """As pgpool-II: every row of a process carries the process's status, slots that hold no
    connection included (they were empty)."""
    with server.connect(autocommit=True) as conn:
        cur = conn.execute("SHOW POOL_POOLS")
        assert cur.description is not None and cur.description[-1].name == "status"
        rows = cur.fetchall()
        me = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert me is not None
    statuses: dict[str, set[str]] = {}
    for row in rows:
        statuses.setdefault(row[0], set()).add(row[16])
    assert all(len(seen) == 1 for seen in statuses.values()), statuses
    mine = [row for row in rows if row[14] == str(me[0])]
    assert len(mine) == 1 and mine[0][15] == "1"
    # This process runs the SHOW; its idle pool slot (not connected) says so too.
    assert statuses[mine[0][0]] == {"Execute command"}
    idle_slots = [row for row in rows if row[0] == mine[0][0] and row[15] == "0"]
    assert idle_slots and all(row[16] == "Execute command" for row in idle_slots)
    others = [pid for pid in statuses if pid != mine[0][0]]
    assert others and all(statuses[pid] == {"Wait for connection"} for pid in others), statuses


def test_start_time_and_idle_duration_count_down_as_in_pgpool_ii(pgpool_factory: Any, pg_cluster: Any) -> None:
    """pgpool-II 4.3 appends the time left before child_life_time restarts an idle child that
    has served clients, and before client_idle_limit ends an idle client's session."""
    server = pgpool_factory(pg_cluster, extra={"child_life_time": 300, "client_idle_limit": 60,
                                               "num_init_children": 4})
    with server.connect(autocommit=True) as idle, server.connect(autocommit=True) as asking:
        with server.connect(autocommit=True) as served:  # its child then waits for the next client
            served.execute("SELECT 1")
        idle_backend = idle.execute("SELECT pg_backend_pid()").fetchone()
        assert idle_backend is not None
        time.sleep(2.2)
        processes = asking.execute("SHOW POOL_PROCESSES").fetchall()
        pools = asking.execute("SHOW POOL_POOLS").fetchall()
    waiting = [row for row in processes if row[-1] == "Wait for connection"]
    counting = [row for row in waiting if row[1].endswith(" before process restarting)")]
    # The child that served the first client and waits again; children that never served
    # a client, and those serving one now, show the time alone.
    assert len(counting) == 1, processes
    left = counting[0][1].rsplit("(", 1)[1].split()[0]
    assert left in ("4:57", "4:58", "4:59", "5:00"), counting
    assert all(len(row[1]) == 19 for row in processes if row not in counting), processes
    mine = [row for row in pools if row[14] == str(idle_backend[0])]
    assert len(mine) == 1, pools
    idle_seconds, rest = mine[0][10].split(" ", 1)
    assert 2 <= int(idle_seconds) <= 4 and rest == f"(0:{60 - int(idle_seconds):02d} before client disconnected)", mine
    # Slots without a client show a bare count.
    assert all(row[10] == "0" for row in pools if row[15] == "0"), pools


def test_pgpool_set_show_reset(server: Any) -> None:
    with server.connect(autocommit=True) as conn:
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchone() == ("0",)
        conn.execute("PGPOOL SET client_idle_limit = 1")
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchone() == ("1s",)
        conn.execute("PGPOOL RESET client_idle_limit")
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchone() == ("0",)
        with pytest.raises(psycopg.errors.lookup("55P02"), match='invalid Context, value for parameter "port"'):
            conn.execute("PGPOOL SET port = 1234")
        with pytest.raises(psycopg.errors.UndefinedObject, match='config variable "no_such_parameter" not found'):
            conn.execute("PGPOOL SHOW no_such_parameter")
        conn.execute("PGPOOL SET client_idle_limit TO 1")
        time.sleep(2.5)
        with pytest.raises(psycopg.OperationalError, match="client_idle_limit:1 is reached"):
            conn.execute("SELECT 1")
    # The value was this session's only.
    with server.connect(autocommit=True) as conn:
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchone() == ("0",)


def test_backend_stats_count_by_kind(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"backend_weight1": 0})
    with server.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kinds (x int)")
        conn.execute("INSERT INTO kinds VALUES (1)")
        conn.execute("UPDATE kinds SET x = 2")
        conn.execute("DELETE FROM kinds")
        conn.execute("DROP TABLE kinds")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM kinds")
        rows = {r[0]: r for r in conn.execute("SHOW POOL_BACKEND_STATS").fetchall()}
    primary = rows["0"]
    assert [int(v) for v in primary[6:10]] == [1, 1, 1, 2]  # insert, update, delete, ddl (create + drop)
    assert int(primary[13]) >= 1  # the error for the missing table


@pytest.mark.parametrize("mode", ["raw", "streaming_replication"])
def test_pool_commands_as_prepared_statements(pgpool_factory: Any, pg_cluster: Any, mode: str) -> None:
    """psycopg prepares a statement from its 6th run on (prepare_threshold=0: from the 1st);
    pgpool-II 4.3 passed pgpool's commands in a Parse to the backend, which knows no
    "pool_nodes" parameter."""
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": mode})
    with server.connect(autocommit=True) as conn:
        for _ in range(8):
            assert len(conn.execute("SHOW POOL_NODES").fetchall()) == 2
    with server.connect(autocommit=True, prepare_threshold=0) as conn:
        cur = conn.execute("SHOW POOL_VERSION")
        assert cur.description is not None and [c.name for c in cur.description] == ["pool_version"]
        row = cur.fetchone()
        assert row is not None and "pgpool-py" in row[0] and cur.statusmessage == "SELECT 1"
        conn.execute("PGPOOL SET client_idle_limit = 7")
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchone() == ("7s",)
        conn.execute("PGPOOL RESET client_idle_limit")
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchone() == ("0",)
        with pytest.raises(psycopg.errors.UndefinedObject, match='config variable "no_such_parameter" not found'):
            conn.execute("PGPOOL SHOW no_such_parameter")
        # The session goes on, prepared statements of its own and of the backend side by side.
        assert conn.execute("SELECT %s::int", (5,)).fetchone() == (5,)
        assert len(conn.execute("SHOW POOL_PROCESSES").fetchall()) >= 1
        with conn.transaction():
            conn.execute("SELECT 1")
            assert len(conn.execute("SHOW POOL_NODES").fetchall()) == 2
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS


@pytest.mark.parametrize("mode", ["raw", "streaming_replication"])
def test_pool_commands_from_asyncpg(pgpool_factory: Any, pg_cluster: Any, mode: str) -> None:
    """asyncpg prepares every statement (Parse, Describe, Sync), asks for binary results and
    executes with a row limit; a cursor fetches in parts (PortalSuspended)."""
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": mode})

    async def work() -> None:
        conn = await asyncpg.connect(host=HOST, port=server.port, user=SERVER_USER, database="test")
        try:
            rows = await conn.fetch("SHOW POOL_NODES")
            assert [r["node_id"] for r in rows] == ["0", "1"] and rows[0]["status"] == "up"
            stmt = await conn.prepare("PGPOOL SHOW ALL")
            assert [a.name for a in stmt.get_attributes()] == ["item", "value", "description"]
            everything = await stmt.fetch()
            assert len(everything) > 100
            async with conn.transaction():
                cursor = await stmt.cursor()
                first = await cursor.fetch(10)
                rest = await cursor.fetch(100000)
                assert [tuple(r) for r in first + rest] == [tuple(r) for r in everything]
            assert await conn.fetchval("PGPOOL SHOW port") == str(server.port)
            assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
        finally:
            await conn.close()

    asyncio.run(work())


def _reply_types(reply: bytes) -> str:
    return "".join(chr(typ) for typ, _s, _e in m.split_messages(reply)[0])


def test_pool_commands_share_a_batch_with_other_statements(server: Any) -> None:
    """pgjdbc without autocommit sends its BEGIN in the same batch as the statement; pgpool's
    replies come in the order of the messages, and an error skips the rest until Sync."""
    def run(sql: bytes) -> bytes:
        return m.frame(b"P", b"\0" + sql + b"\0\0\0") + m.frame(b"B", b"\0\0\0\0\0\0\0\0") + m.frame(b"E", b"\0\0\0\0\0")

    describe = m.frame(b"D", b"P\0")
    with server.raw_session() as sock:
        sock.sendall(run(b"BEGIN") + run(b"SHOW POOL_VERSION")[:-10] + describe + m.frame(b"E", b"\0\0\0\0\0")
                     + run(b"SELECT 42") + m.SYNC)
        reply = read_until(sock)
        assert _reply_types(reply) == "12C" + "12TDC" + "12DC" + "Z"
        assert reply.endswith(m.ready_for_query(m.TX_IN_BLOCK)) and b"pgpool-py" in reply and b"42" in reply
        # An error ends the batch: what follows is skipped, as PostgreSQL does.
        sock.sendall(run(b"PGPOOL SET no_such_parameter = 1") + run(b"SELECT 43") + m.SYNC)
        reply = read_until(sock)
        assert _reply_types(reply) == "12EZ" and b"no_such_parameter" in reply
        one_parameter = m.frame(b"B", b"\0\0\0\0\0\x01\0\0\0\x011\0\0")
        sock.sendall(run(b"SHOW POOL_VERSION")[:-23] + one_parameter + m.frame(b"E", b"\0\0\0\0\0") + m.SYNC)
        reply = read_until(sock)
        assert _reply_types(reply) == "1EZ" and b"C08P01\0" in reply and b"supplies 1 parameters" in reply
        # An error of the backend's skips pgpool's commands after it too, up to Sync; with a
        # Flush instead, until the next Sync.
        sock.sendall(run(b"SELECT 1 / 0") + run(b"SHOW POOL_VERSION") + run(b"SELECT 44") + m.SYNC)
        reply = read_until(sock)
        assert _reply_types(reply) == "1EZ" and b"C22012\0" in reply, reply
        assert reply.endswith(m.ready_for_query(m.TX_FAILED))
        sock.sendall(m.query("ROLLBACK"))
        read_until(sock)
        sock.sendall(run(b"SELECT 1 / 0") + run(b"SHOW POOL_VERSION") + m.frame(b"H"))
        sock.sendall(run(b"SHOW POOL_VERSION") + m.SYNC + run(b"SELECT 45") + m.SYNC)
        reply = read_until(sock, count=2)
        assert _reply_types(reply) == "1EZ" + "12DCZ" and b"45" in reply, reply
        sock.sendall(m.query("BEGIN"))
        read_until(sock)
        # Pipelined behind a slow statement: answered after it, not before.
        sock.sendall(run(b"SELECT pg_sleep(0.3)") + m.SYNC + run(b"SHOW POOL_VERSION") + m.SYNC
                     + m.query("COMMIT"))
        reply = read_until(sock, count=3)
        assert _reply_types(reply) == "12DCZ" + "12DCZ" + "CZ", reply
        assert reply.endswith(m.ready_for_query(m.TX_IDLE))


@pytest.mark.parametrize("mode", ["raw", "streaming_replication"])
def test_deallocate_frees_a_statement_of_pgpool(pgpool_factory: Any, pg_cluster: Any, mode: str) -> None:
    """psycopg with libpq before 17 (and Ruby's pg) evicts a prepared statement with a simple
    Query DEALLOCATE: one of pgpool's is freed here; the backend never knew it.  One of the
    backend's goes where its Parse went (the standby: the primary's weight is 0)."""
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": mode, "backend_weight0": 0})
    with server.raw_session() as sock:
        sock.sendall(m.frame(b"P", b"_pg3_0\0SHOW POOL_VERSION\0\0\0") + m.frame(b"P", b"Mine\0SELECT 1\0\0\0") + m.SYNC)
        assert _reply_types(read_until(sock)) == "11Z"
        sock.sendall(m.query("DEALLOCATE _pg3_0; "))
        reply = read_until(sock)
        assert _reply_types(reply) == "CZ" and b"DEALLOCATE\0" in reply
        # Gone: a Bind of it reaches the backend, which never had it.
        sock.sendall(m.frame(b"B", b"\0_pg3_0\0\0\0\0\0\0\0") + m.SYNC)
        assert b"C26000\0" in read_until(sock)
        sock.sendall(m.query('DEALLOCATE "Mine"'))  # the backend's own
        assert _reply_types(read_until(sock)) == "CZ"


def test_pool_commands_as_prepared_statements_in_native_replication(pgpool_factory: Any,
                                                                    pg_native_cluster: Any) -> None:
    """A batch that writes on every node and then asks pgpool: the write's replies are compared
    before pgpool answers, and no node is found to differ."""
    server = pgpool_factory(pg_native_cluster, mode="native")
    with server.connect(prepare_threshold=0) as conn:  # pgjdbc's way: BEGIN in the statement's batch
        conn.execute("CREATE TEMP TABLE asked (v int)")
        with conn.pipeline():
            conn.execute("INSERT INTO asked VALUES (1)")
            cur = conn.execute("SHOW POOL_NODES")
        assert [row[3] for row in cur.fetchall()] == ["up", "up"]
        conn.commit()
    assert "detected a difference" not in server.log_text()


@pytest.mark.parametrize("mode", ["raw", "streaming_replication"])
def test_pool_command_after_a_comment(pgpool_factory: Any, pg_cluster: Any, mode: str) -> None:
    """Both relays recognise pgpool's commands as the classifier does, leading comments included."""
    server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": mode})
    with server.connect(autocommit=True) as conn:
        row = conn.execute("/* monitoring */ SHOW POOL_VERSION").fetchone()
        assert row is not None and "pgpool-py" in row[0]
        conn.execute("-- per session\nPGPOOL SET client_idle_limit TO 5")
        assert conn.execute("PGPOOL SHOW client_idle_limit").fetchone() == ("5s",)


PGPOOL_II = "/usr/sbin/pgpool"
SHOWN_AS_PGPOOL_II = [
    "authentication_timeout", "child_life_time", "search_primary_node_timeout", "log_rotation_age",
    "log_rotation_size", "memqcache_total_size", "memqcache_maxcache", "client_idle_limit", "recovery_timeout",
    "connection_life_time", "port", "backend_weight1", "backend_hostname", "backend_flag", "backend",
    "health_check_period", "health_check_period1", "connect_timeout", "health_check", "watchdog", "backend_port7",
]


@pytest.mark.skipif(not os.path.exists(PGPOOL_II), reason="pgpool-II 4.3 (package pgpool2) is not installed")
def test_pgpool_show_answers_as_pgpool_ii(pgpool_factory: Any, pg_cluster: Any) -> None:
    """PGPOOL SHOW of the same pgpool.conf, pgpool-II 4.3.5 and pgpool-py: the same columns, items
    and values (descriptions are our own), units included; the same error for an unknown name."""
    extra = {"num_init_children": 2, "sr_check_period": 0, "client_idle_limit": 5, "health_check_period1": 0}

    def answers(server: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with server.connect(autocommit=True) as conn:
            for name in SHOWN_AS_PGPOOL_II:
                cur = conn.execute(f"PGPOOL SHOW {name}")
                assert cur.description is not None
                columns = [c.name for c in cur.description]
                out[name] = (columns, [row[:2] for row in cur.fetchall()], cur.statusmessage)
            with pytest.raises(psycopg.Error) as unknown:
                conn.execute("PGPOOL SHOW no_such_thing")
            out["unknown"] = unknown.value.diag.message_primary
        return out

    real = answers(pgpool_factory(pg_cluster, program=[PGPOOL_II], extra=extra))
    ours = answers(pgpool_factory(pg_cluster, extra=extra))
    assert real["client_idle_limit"][1] == [("5s",)]  # what pgpool-II does, as the audit saw it
    port_ii, port_py = real.pop("port"), ours.pop("port")
    assert port_ii[0] == port_py[0] == ["port"]
    assert ours == real
