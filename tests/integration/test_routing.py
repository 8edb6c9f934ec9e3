"""
Several backends: streaming replication (primary + standby) load balancing and read/write
split, and native replication.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from pgpool_py.cluster import HOST, SERVER_USER
from pgpool_py.protocol import messages as m
from tests.fix_pgpool import _group_members, read_until

# pg_is_in_recovery() is VOLATILE: pgpool-II keeps volatile functions on the primary unless
# they are listed as read-only.
READ_ONLY = {"read_only_function_list": "pg_is_in_recovery"}


def wait_replayed(nodes: Any, timeout: float = 10) -> None:
    """Until the standby has replayed everything the primary wrote (reads may go there)."""
    target = nodes[0].psql("SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    while nodes[1].psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'") != "t":
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.05)


def _answers(server: Any, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        with server.connect(autocommit=True) as conn:
            seen[str(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])] += 1
    return seen


def test_weights_one_to_one_balance_fresh_sessions(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra=READ_ONLY)
    seen = _answers(server, 200)
    print("200 sessions, weights 1:1:", dict(seen))
    assert 70 <= seen["True"] <= 130 and 70 <= seen["False"] <= 130, seen


def test_weight_zero_keeps_reads_off_the_standby(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight1": 0})
    assert _answers(server, 40) == Counter({"False": 40})


def _value(sock: Any, sql: str) -> str | None:
    """One simple query's single value; a socket timeout says the reply never came."""
    sock.sendall(m.query(sql))
    reply = read_until(sock)
    msgs = m.split_messages(reply)[0]
    assert not any(typ == ord("E") for typ, _s, _e in msgs), reply
    return [m.parse_data_row(reply[start + 5 : end]) for typ, start, end in msgs if typ == ord("D")][0][0]


def test_sessions_reach_both_nodes_after_their_pooled_connections_were_replaced(
        pgpool_factory: Any, pg_cluster: Any) -> None:
    # The relay waits on one epoll per child, where a pooled connection's socket stays between
    # sessions.  With one child and one pool slot, a session to the other database evicts the
    # slot and a server-side kill breaks it: the new sockets mostly get the closed ones'
    # numbers, and must be watched all the same, or the session waits for a reply forever.
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight0": 0,
                                               "num_init_children": 1, "max_pool": 1})
    for round in range(8):
        with server.raw_session(5.0, database="test" if round % 2 == 0 else "template1") as sock:
            assert _value(sock, "SELECT pg_is_in_recovery()") == "t"  # the standby
            assert _value(sock, "SELECT txid_current() > 0") == "t"  # the primary
            assert _value(sock, "SELECT pg_is_in_recovery()") == "t"
            sock.sendall(m.TERMINATE)
        if round == 4:
            for node in pg_cluster:  # the pooled connections to "test", killed while idle
                node.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = 'test' AND pid <> pg_backend_pid()")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_another_pooled_connection_closed_by_its_server_does_not_wake_a_session(
        pgpool_factory: Any, pg_cluster: Any) -> None:
    # The relay's epoll keeps every pooled connection's socket between sessions, those of
    # other pool slots too.  One the server closes while another slot's session runs must
    # not wake that session again and again (level-triggered, nobody reads it): the session
    # would spin at full CPU until it ends.
    primary = pg_cluster[0]
    if primary.psql("SELECT count(*) FROM pg_database WHERE datname = 'other_db'") == "0":
        primary.psql("CREATE DATABASE other_db")
    wait_replayed(pg_cluster)
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "num_init_children": 1, "max_pool": 2})
    with server.raw_session(5.0) as sock:  # slot 0: "test", pooled when it ends
        assert _value(sock, "SELECT txid_current() > 0") == "t"
        assert _value(sock, "SELECT pg_is_in_recovery() IS NOT NULL") == "t"
        sock.sendall(m.TERMINATE)
    with server.raw_session(5.0, database="other_db") as sock:  # slot 1, same child
        assert _value(sock, "SELECT txid_current() > 0") == "t"
        assert _value(sock, "SELECT pg_is_in_recovery() IS NOT NULL") == "t"
        for node in pg_cluster:  # slot 0's connections, closed by their servers
            node.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'test'")
        child = next(pid for pid in _group_members(server.pid)
                     if b"other_db" in Path(f"/proc/{pid}/cmdline").read_bytes())
        before = _cpu_seconds(child)
        time.sleep(1.0)  # the session idle
        spent = _cpu_seconds(child) - before
        assert spent < 0.3, f"the idle session's child spent {spent:.2f} s of CPU in 1 s"
        assert _value(sock, "SELECT txid_current() > 0") == "t"
        sock.sendall(m.TERMINATE)
    with server.raw_session(5.0) as sock:  # slot 0 again: found broken, connected afresh
        assert _value(sock, "SELECT txid_current() > 0") == "t"
        assert _value(sock, "SELECT pg_is_in_recovery() IS NOT NULL") == "t"
        sock.sendall(m.TERMINATE)


def test_writes_and_writing_reads_go_to_the_primary(pgpool_factory: Any, pg_cluster: Any) -> None:
    # With the standby weighted 100:1 a read lands there almost always; whatever must not go
    # there would fail on it ("cannot execute ... in a read-only transaction").
    extra = {**READ_ONLY, "backend_weight0": 0, "write_function_list": "f_writes"}
    server = pgpool_factory(pg_cluster, extra=extra)
    with server.connect(autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        conn.execute("DROP TABLE IF EXISTS routed; DROP SEQUENCE IF EXISTS routed_seq")
        conn.execute("CREATE TABLE routed (id int primary key, v int)")
        conn.execute("CREATE SEQUENCE routed_seq")
        conn.execute(
            "CREATE OR REPLACE FUNCTION f_writes() RETURNS boolean STABLE LANGUAGE sql AS 'SELECT pg_is_in_recovery()'"
        )
        conn.execute("INSERT INTO routed VALUES (1, 1)")
        wait_replayed(pg_cluster)
        assert conn.execute("SELECT nextval('routed_seq')").fetchone() == (1,)
        assert conn.execute("SELECT f_writes()").fetchone() == (False,)
        conn.execute("SELECT * FROM routed FOR UPDATE")
        # In a transaction, reads after a write stay on the primary.
        with conn.transaction():
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            conn.execute("UPDATE routed SET v = v + 1")
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            assert conn.execute("SELECT v FROM routed").fetchone() == (2,)
        # After the transaction, reads are balanced again.
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        # A prepared read, first run on the standby, bound again after a write in a transaction.
        query = "SELECT v, pg_is_in_recovery() FROM routed WHERE id = %s"
        conn.execute(query, (1,), prepare=True)
        assert conn.execute(query, (1,), prepare=True).fetchone()[1] is True
        with conn.transaction():
            conn.execute("UPDATE routed SET v = 10")
            assert conn.execute(query, (1,), prepare=True).fetchone() == (10, False)
        conn.execute("DROP TABLE routed; DROP SEQUENCE routed_seq; DROP FUNCTION f_writes()")


def test_psycopg_prepared_and_pipeline_with_balancing(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "statement_level_load_balance": True})
    with server.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pipe (id int primary key, v text)")
        conn.execute("TRUNCATE pipe")
        wait_replayed(pg_cluster)
        with conn.pipeline():
            for i in range(50):
                conn.execute("INSERT INTO pipe VALUES (%s, %s)", (i, f"v{i}"))
            curs = [conn.execute("SELECT v FROM pipe WHERE id = %s", (i,)) for i in range(0, 50, 7)]
        results = [c.fetchone() for c in curs]
        # Reads may run on the standby, which may not have replayed the inserts yet: only the
        # primary's answer is certain, so check the writes through the primary.
        assert all(r is None or r[0] == f"v{7 * k}" for k, r in enumerate(results))
        for _ in range(20):
            row = conn.execute("SELECT count(*) FROM pipe WHERE id < %s", (1000,), prepare=True).fetchone()
            assert row[0] in range(0, 51)
        with conn.transaction():
            conn.execute("DELETE FROM pipe WHERE id >= 40")
            assert conn.execute("SELECT count(*) FROM pipe", prepare=True).fetchone() == (40,)
        conn.execute("DROP TABLE pipe")


def test_asyncpg_named_statements_binary_and_executemany(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra=READ_ONLY)

    async def work() -> None:
        conn = await asyncpg.connect(host=HOST, port=server.port, user=SERVER_USER, database="test")
        try:
            await conn.execute("DROP TABLE IF EXISTS apg; CREATE TABLE apg (id int primary key, f float8, b bytea)")
            await conn.executemany("INSERT INTO apg VALUES ($1, $2, $3)", [(i, i / 3, bytes([i % 256]) * 10) for i in range(100)])
            wait_replayed(pg_cluster)
            stmt = await conn.prepare("SELECT f, b FROM apg WHERE id = $1")
            async with conn.transaction():
                for i in (1, 50, 99):
                    f, b = await stmt.fetchrow(i)
                    assert f == pytest.approx(i / 3) and b == bytes([i % 256]) * 10
            rows = await conn.fetch("SELECT id FROM apg WHERE id < $1 ORDER BY id", 10)
            assert [r["id"] for r in rows] == list(range(10))
            await conn.execute("DROP TABLE apg")
        finally:
            await conn.close()

    asyncio.run(work())


async def _read_on_the_standby(conn: Any, pg_cluster: Any, table: str) -> Any:
    """A table (id, t) holding (1, 'a'), and a statement reading it prepared and run on the
    standby (the primary's weight is 0)."""
    await conn.execute(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int, t text);"
                       f" INSERT INTO {table} VALUES (1, 'a')")
    wait_replayed(pg_cluster)
    stmt = await conn.prepare(f"SELECT * FROM {table} WHERE id = $1")
    assert tuple(await stmt.fetchrow(1)) == (1, "a")
    return stmt


def test_a_statement_re_parsed_elsewhere_keeps_its_result_shape(pgpool_factory: Any, pg_cluster: Any) -> None:
    """A statement prepared on the standby, bound in a writing transaction, is re-parsed on
    the primary. After an ALTER TABLE in between, PostgreSQL fails it with 0A000 "cached plan
    must not change result type", which asyncpg and pgjdbc know to prepare again; re-parsed
    as it is, it returned the new columns (asyncpg: "the number of columns in the result row
    (3) is different from what was described (2)")."""
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0})  # reads on the standby

    async def work() -> None:
        conn = await asyncpg.connect(host=HOST, port=server.port, user=SERVER_USER, database="test")
        try:
            stmt = await _read_on_the_standby(conn, pg_cluster, "shape")
            await conn.execute("ALTER TABLE shape ADD COLUMN q int")
            wait_replayed(pg_cluster)
            with pytest.raises(asyncpg.InvalidCachedStatementError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO shape VALUES (2, 'b', 2)")
                    await stmt.fetchrow(1)
            # The transaction failed as a whole, as without a pooler.
            assert await conn.fetchval("SELECT count(*) FROM shape") == 1
            # Prepared again, the statement has the new shape everywhere.
            async with conn.transaction():
                await conn.execute("INSERT INTO shape VALUES (3, 'c', 3)")
                assert tuple(await conn.fetchrow("SELECT * FROM shape WHERE id = $1", 3)) == (3, "c", 3)
            # A statement whose shape did not change is re-parsed as before.
            same = await conn.prepare("SELECT t FROM shape WHERE id = $1")
            assert await same.fetchval(1) == "a"
            async with conn.transaction():
                await conn.execute("INSERT INTO shape VALUES (4, 'd', 4)")
                assert await same.fetchval(4) == "d"
            await conn.execute("DROP TABLE shape")
        finally:
            await conn.close()

    asyncio.run(work())


def test_a_re_parse_on_a_node_ahead_fails_as_postgresql_would(pgpool_factory: Any, pg_cluster: Any) -> None:
    """The standby has not replayed the ALTER TABLE yet: it still describes the statement with
    the old columns, the primary with the new ones.  The client gets PostgreSQL's own error
    (with its routine, by which asyncpg and pgjdbc know it) rather than rows of a new shape."""
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0})
    standby = pg_cluster[1]

    async def work() -> None:
        conn = await asyncpg.connect(host=HOST, port=server.port, user=SERVER_USER, database="test")
        try:
            stmt = await _read_on_the_standby(conn, pg_cluster, "ahead")
            standby.psql("SELECT pg_wal_replay_pause()")
            try:
                await conn.execute("ALTER TABLE ahead ADD COLUMN q int")
                with pytest.raises(asyncpg.InvalidCachedStatementError):  # asyncpg words it anew
                    async with conn.transaction():
                        await conn.execute("INSERT INTO ahead VALUES (2, 'b', 2)")
                        await stmt.fetchrow(1)
            finally:
                standby.psql("SELECT pg_wal_replay_resume()")
            assert await conn.fetchval("SELECT count(*) FROM ahead WHERE id = 2") == 0
            await conn.execute("DROP TABLE ahead")
        finally:
            await conn.close()

    asyncio.run(work())


def test_native_replication_re_parses_a_statement_whose_table_has_other_oids(pgpool_factory: Any,
                                                                              pg_native_cluster: Any) -> None:
    """In native replication each node gives the table an oid of its own, and a RowDescription
    carries it: a statement re-parsed on another node must not be taken for one whose
    columns changed."""
    server = pgpool_factory(pg_native_cluster, mode="native", extra={"backend_weight0": 0})

    async def work() -> None:
        conn = await asyncpg.connect(host=HOST, port=server.port, user=SERVER_USER, database="test")
        try:
            for _ in range(3):  # until the nodes' oid counters differ (other tests used the nodes)
                await conn.execute("DROP TABLE IF EXISTS other_oids; CREATE TABLE other_oids (id int, t text)")
                oids = [node.psql("SELECT 'other_oids'::regclass::oid", dbname="test") for node in pg_native_cluster]
                if oids[0] != oids[1]:
                    break
                pg_native_cluster[1].psql("CREATE TABLE oid_spender (v int); DROP TABLE oid_spender", dbname="test")
            assert oids[0] != oids[1]
            assert await conn.fetchrow("SELECT * FROM other_oids WHERE id = $1", 1) is None  # node 1 prepares it
            async with conn.transaction():
                await conn.execute("INSERT INTO other_oids VALUES (1, 'a')")
                row = await conn.fetchrow("SELECT * FROM other_oids WHERE id = $1", 1)  # re-parsed on node 0
                assert row is not None and tuple(row) == (1, "a")
            await conn.execute("DROP TABLE other_oids")
        finally:
            await conn.close()

    asyncio.run(work())


def test_pgbench_prepared_with_load_balancing(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster)
    base = ["pgbench", "-h", HOST, "-p", str(server.port), "-U", SERVER_USER]
    init = subprocess.run(base + ["-i", "-s", "1", "-q", "test"], capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    for mode in ("prepared", "extended", "simple"):
        out = subprocess.run(base + ["-S", "-M", mode, "-c", "4", "-j", "2", "-T", "2", "test"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "number of failed transactions: 0 (0.000%)" in out.stdout, out.stdout


def test_show_pool_nodes_counts(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight0": 0})
    for _ in range(5):
        with server.connect(autocommit=True) as conn:
            conn.execute("SELECT 1")
    with server.connect(autocommit=True) as conn:
        rows = conn.execute("SHOW POOL_NODES").fetchall()
    assert len(rows) == 2
    by_node = {r[0]: r for r in rows}
    assert by_node["0"][3] == "up" and by_node["0"][6] == "primary" and by_node["0"][5] == "0.000000"
    assert by_node["1"][3] == "up" and by_node["1"][6] == "standby" and by_node["1"][5] == "1.000000"
    # Readiness probe + 5 sessions: every SELECT went to the standby.
    assert int(by_node["1"][8]) >= 5 and by_node["0"][8] == "0"
    assert by_node["1"][9] == "true"
    # Each child counts for itself; SHOW POOL_NODES adds up the children: three sessions at
    # once are three children.
    before = int(by_node["1"][8])
    sessions = [server.connect(autocommit=True) for _ in range(3)]
    for conn in sessions:
        conn.execute("SELECT 1")
        conn.execute("SELECT 2")
    for conn in sessions:
        conn.close()
    with server.connect(autocommit=True) as conn:
        after = {r[0]: r for r in conn.execute("SHOW POOL_NODES").fetchall()}
    assert int(after["1"][8]) == before + 6 and after["0"][8] == "0"


def test_statement_closed_and_prepared_again_in_one_batch(pgpool_factory: Any, pg_cluster: Any) -> None:
    # One batch closes statement s1 and prepares s1 anew; the next binds it.  The router must
    # remember the new s1 (it once applied the batch's Parses before its Closes, forgot s1,
    # and sent the Bind to the primary, where s1 was never prepared).
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight0": 0})

    def parse(sql: bytes) -> bytes:
        return m.frame(b"P", b"s1\0" + sql + b"\0\0\0")

    with server.raw_session() as sock:
        sock.sendall(parse(b"SELECT 1") + m.frame(b"S"))
        read_until(sock)
        sock.sendall(m.frame(b"C", b"Ss1\0") + parse(b"SELECT pg_is_in_recovery()") + m.frame(b"S"))
        read_until(sock)
        sock.sendall(m.frame(b"B", b"\0s1\0\0\0\0\0\0\0") + m.frame(b"E", b"\0\0\0\0\0") + m.frame(b"S"))
        reply = read_until(sock)
    assert b"SERROR\0" not in reply, reply
    assert b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x01t" in reply, reply  # run on the standby


def test_close_reaches_every_node_the_statement_lives_on(pgpool_factory: Any, pg_cluster: Any) -> None:
    # s1 is prepared on the standby, then replayed on the primary by a Bind in a writing
    # transaction.  The client's Close must reach both: left on the primary, s1 would pile up
    # there (pgjdbc closes what its statement cache evicts), and preparing s1 again there fails.
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight0": 0})

    def parse(sql: bytes) -> bytes:
        return m.frame(b"P", b"s1\0" + sql + b"\0\0\0")

    run_s1 = m.frame(b"B", b"\0s1\0\0\0\0\0\0\0") + m.frame(b"E", b"\0\0\0\0\0") + m.SYNC
    def write(table: bytes) -> bytes:  # a transaction that has written: reads stay on the primary
        return m.query("BEGIN") + m.frame(b"Q", b"CREATE TEMP TABLE " + table + b" (v int)\0")

    with server.raw_session() as sock:
        sock.sendall(parse(b"SELECT pg_is_in_recovery()") + m.SYNC)
        assert _read_messages(sock, b"Z") == [b"1", b"Z"]
        sock.sendall(write(b"closing1") + run_s1 + m.query("COMMIT"))
        reply = read_until(sock, count=4)
        assert b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x01f" in reply, reply  # s1 ran on the primary
        sock.sendall(m.frame(b"C", b"Ss1\0") + m.SYNC)
        assert _read_messages(sock, b"Z") == [b"3", b"Z"]
        sock.sendall(write(b"closing2") + parse(b"SELECT 2") + m.SYNC + m.query("COMMIT"))
        reply = read_until(sock, count=4)
    assert b"SERROR\0" not in reply, reply  # not 'prepared statement "s1" already exists'


# ---------------------------------------------------------------- native replication


def test_native_replication_close_reaches_every_node(pgpool_factory: Any, pg_native_cluster: Any) -> None:
    # A write statement is prepared on every node; its Close (a batch of its own) must reach
    # every node too, or preparing the name again fails on the others only, and the difference
    # in the results detaches them.
    server = pgpool_factory(pg_native_cluster, mode="native")
    parse = m.frame(b"P", b"w1\0CREATE TEMP TABLE IF NOT EXISTS closed_w (v int)\0\0\0") + m.SYNC
    with server.raw_session() as sock:
        sock.sendall(parse)
        assert _read_messages(sock, b"Z") == [b"1", b"Z"]
        sock.sendall(m.frame(b"C", b"Sw1\0") + m.SYNC)
        assert _read_messages(sock, b"Z") == [b"3", b"Z"]
        sock.sendall(parse)
        assert _read_messages(sock, b"Z") == [b"1", b"Z"]
    assert "detected a difference" not in server.log_text()
    with server.connect(autocommit=True) as conn:
        rows = conn.execute("SHOW POOL_NODES").fetchall()
    assert [row[3] for row in rows] == ["up", "up"], rows


def test_native_replication_writes_everywhere(pgpool_factory: Any, pg_native_cluster: Any) -> None:
    server = pgpool_factory(pg_native_cluster, mode="native")
    with server.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS nat")
        conn.execute("CREATE TABLE nat (id int primary key, v text)")
        for i in range(20):
            conn.execute("INSERT INTO nat VALUES (%s, %s)", (i, f"v{i}"))
        conn.execute("UPDATE nat SET v = v || '!' WHERE id % 2 = 0")
        with conn.transaction():
            conn.execute("DELETE FROM nat WHERE id > 15")
        assert conn.execute("SELECT count(*) FROM nat").fetchone() == (16,)
    dumps = [node.psql("SELECT id, v FROM nat ORDER BY id", dbname="test") for node in pg_native_cluster]
    assert dumps[0] == dumps[1] and dumps[0].count("\n") == 15


def test_native_replication_divergence_detaches_node(pgpool_factory: Any, pg_cluster_factory: Any) -> None:
    nodes = pg_cluster_factory(num_nodes=2, mode="native")
    server = pgpool_factory(nodes, mode="native", extra={"log_per_node_statement": True,
                                                         "failover_if_affected_tuples_mismatch": True})
    with server.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE div (id int)")
        conn.execute("INSERT INTO div VALUES (1)")
    nodes[1].psql("INSERT INTO div VALUES (2)", dbname="test")  # behind pgpool's back
    with server.connect(autocommit=True) as conn:
        conn.execute("UPDATE div SET id = id + 10")  # UPDATE 1 on node 0, UPDATE 2 on node 1
    deadline = time.monotonic() + 10
    status = ""
    while time.monotonic() < deadline:
        try:
            status = server.psql("SHOW POOL_NODES")
        except Exception:  # children restart during the failover
            time.sleep(0.1)
            continue
        if "|down|" in status:
            break
        time.sleep(0.1)
    assert status.splitlines()[1].split("|")[3] == "down", status
    assert "detected a difference" in server.log_text()
    assert "UPDATE 1" in server.log_text() and "UPDATE 2" in server.log_text()


def _standby_transactions(standby: Any) -> list[str]:
    """States of the test's session on the standby."""
    rows = standby.psql("SELECT state FROM pg_stat_activity WHERE application_name = 'lazy_begin'")
    return [r for r in rows.splitlines() if r]


def test_begin_reaches_a_standby_only_when_the_transaction_reads_there(pgpool_factory: Any, pg_cluster: Any) -> None:
    # pgpool-II sends BEGIN to every node; pgpool-py sends it to a standby with the first
    # statement of the transaction that goes there, and COMMIT only where BEGIN went.
    server = pgpool_factory(pg_cluster, extra={"read_only_function_list": "pg_is_in_recovery,now", "backend_weight0": 0,
                                               "log_per_node_statement": True})
    standby = pg_cluster[1]
    with server.connect(autocommit=True, application_name="lazy_begin") as conn:
        conn.execute("DROP TABLE IF EXISTS lazy; CREATE TABLE lazy (v int)")
        wait_replayed(pg_cluster)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO lazy VALUES (1)")
        assert conn.execute("SELECT pg_is_in_recovery(), count(*) FROM lazy").fetchone() == (False, 1)
        assert _standby_transactions(standby) == ["idle"]  # no BEGIN there
        conn.execute("COMMIT")
        # A transaction that reads from the standby has a transaction there: now() stays put.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        first = conn.execute("SELECT pg_is_in_recovery(), now()").fetchone()
        assert first[0] is True
        assert _standby_transactions(standby) == ["idle in transaction"]
        time.sleep(0.05)
        assert conn.execute("SELECT pg_is_in_recovery(), now()").fetchone() == first
        conn.execute("SAVEPOINT s")
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute("INSERT INTO lazy VALUES (2)")
        conn.execute("COMMIT")
        assert _standby_transactions(standby) == ["idle"]
        # BEGIN READ WRITE is refused by a standby: it gets a plain BEGIN.
        conn.execute("BEGIN READ WRITE")
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM lazy").fetchone() == (2,)
        # The same through the extended protocol: a named statement, parsed once, bound twice.
        for _ in range(2):
            conn.execute("BEGIN", prepare=True)
            conn.execute("INSERT INTO lazy VALUES (3)", prepare=True)
            assert _standby_transactions(standby) == ["idle"]
            assert conn.execute("SELECT pg_is_in_recovery()", prepare=True).fetchone() == (False,)
            conn.execute("COMMIT", prepare=True)
            conn.execute("BEGIN", prepare=True)
            assert conn.execute("SELECT pg_is_in_recovery()", prepare=True).fetchone() == (True,)
            assert _standby_transactions(standby) == ["idle in transaction"]
            conn.execute("COMMIT", prepare=True)
            assert _standby_transactions(standby) == ["idle"]
        conn.execute("DROP TABLE lazy")
    log = server.log_text()
    standby_begins = [line for line in log.splitlines()
                      if "lazy_begin" in line and "DB node id: 1" in line and "BEGIN" in line]
    assert len(standby_begins) == 4, standby_begins
    assert not [line for line in log.splitlines() if "could not begin" in line]


def test_begin_prepared_and_bound_in_one_write_stays_off_the_standby(pgpool_factory: Any, pg_cluster: Any) -> None:
    # Parse of BEGIN goes to every node (the statement may be bound anywhere later); its Bind,
    # sent before the standby has answered the Parse, is still the transaction's BEGIN and goes
    # to the primary only.  (A Parse once counted as the start of a transaction.)
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0, "log_per_node_statement": True})
    begin = m.frame(b"P", b"b1\0BEGIN\0\0\0") + m.frame(b"S")
    run = m.frame(b"B", b"\0b1\0\0\0\0\0\0\0") + m.frame(b"E", b"\0\0\0\0\0") + m.frame(b"S")
    with server.raw_session(application_name="lazy_begin") as sock:
        sock.sendall(begin + run)
        reply = read_until(sock, count=2)
        assert reply.endswith(b"Z\x00\x00\x00\x05T"), reply
        assert _standby_transactions(pg_cluster[1]) == ["idle"]
    log = server.log_text()
    assert "DB node id: 1" in log and "statement: Parse Sync" in log
    assert not [line for line in log.splitlines() if "DB node id: 1" in line and "Bind" in line]


def test_reset_queries_run_only_on_the_nodes_a_session_used(pgpool_factory: Any, pg_cluster: Any) -> None:
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0, "num_init_children": 1})  # one pool

    def last_queries(expected: list[str]) -> list[str]:
        """The last query of the probe's backends, once they are as expected (the reset runs
        after the client has gone) or after 5 s."""
        deadline = time.monotonic() + 5
        while True:
            seen = [node.psql("SELECT coalesce(string_agg(query, ','), '') FROM pg_stat_activity "
                              "WHERE application_name = 'reset_probe'") for node in pg_cluster]
            if seen == expected or time.monotonic() > deadline:
                return seen
            time.sleep(0.05)

    with server.connect(autocommit=True, application_name="reset_probe") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)   # on the standby (weight 0 on the primary)
    assert last_queries(["", "DISCARD ALL"]) == ["", "DISCARD ALL"]  # the primary has run nothing at all
    with server.connect(autocommit=True, application_name="reset_probe") as conn:  # the same pooled connections
        conn.execute("SET statement_timeout = 12345")       # every node
        conn.execute("CREATE TEMP TABLE reset_probe (v int)")
    assert last_queries(["DISCARD ALL", "DISCARD ALL"]) == ["DISCARD ALL", "DISCARD ALL"]
    with server.connect(autocommit=True, application_name="reset_probe") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'reset_probe'").fetchone() == (0,)


def test_statements_in_a_writing_transaction_still_track_temporary_tables(pgpool_factory: Any, pg_cluster: Any) -> None:
    # In a writing transaction every statement goes to the primary; a SELECT INTO TEMP there
    # must still be seen, or a later read of the table would be balanced to the standby.
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight0": 0})
    with server.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS written; CREATE TABLE written (v int)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO written VALUES (1)")
        conn.execute("SELECT v INTO TEMP tmp_written FROM written")
        assert conn.execute("SELECT pg_is_in_recovery(), v FROM written").fetchone() == (False, 1)
        conn.execute("COMMIT")
        assert conn.execute("SELECT v FROM tmp_written").fetchone() == (1,)
        wait_replayed(pg_cluster)
        assert conn.execute("SELECT pg_is_in_recovery(), v FROM written").fetchone() == (True, 1)
        conn.execute("DROP TABLE written")


@pytest.mark.parametrize("how", ["pgpool.conf", "PGPOOL SET"])
def test_client_idle_limit_ends_an_idle_session(pgpool_factory: Any, pg_cluster: Any, how: str) -> None:
    server = pgpool_factory(pg_cluster, extra={"client_idle_limit": 1} if how == "pgpool.conf" else {})
    with server.connect(autocommit=True) as conn:
        if how == "PGPOOL SET":
            conn.execute("PGPOOL SET client_idle_limit = 1")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        time.sleep(1.5)
        with pytest.raises(psycopg.OperationalError, match="client_idle_limit"):
            conn.execute("SELECT 1")


# ---------------------------------------------------------------- Flush


def _read_messages(sock: Any, until: bytes, count: int = 1) -> list[bytes]:
    """Types of the messages read until ``count`` of type ``until``."""
    return [bytes([typ]) for typ, _s, _e in m.split_messages(read_until(sock, until, count))[0]]


def test_commit_after_an_extended_begin_that_went_to_a_standby(pgpool_factory: Any, pg_cluster: Any) -> None:
    """pgjdbc without autocommit sends BEGIN in the batch of the transaction's first statement;
    with a read, both went to the standby only.  The COMMIT that followed went to the standby
    but waited for the primary's answer, and the session hung."""
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight0": 0})
    unnamed = b"\0\0\0\0\0\0\0\0"

    def run(sql: bytes, describe: bool = False) -> bytes:
        return (m.frame(b"P", b"\0" + sql + b"\0\0\0") + m.frame(b"B", unnamed)
                + (m.frame(b"D", b"P\0") if describe else b"") + m.frame(b"E", b"\0\0\0\0\0"))

    with server.raw_session() as sock:
        for ending in (run(b"COMMIT") + m.SYNC, run(b"ROLLBACK") + m.SYNC, m.query("COMMIT")):
            sock.sendall(run(b"BEGIN") + run(b"SELECT pg_is_in_recovery()", describe=True) + m.SYNC)
            reply = read_until(sock)
            rows = [m.parse_data_row(reply[start + 5 : end]) for typ, start, end in m.split_messages(reply)[0]
                    if typ == ord("D")]
            assert rows == [["t"]] and reply.endswith(m.ready_for_query(m.TX_IN_BLOCK))
            sock.sendall(ending)
            assert read_until(sock).endswith(m.ready_for_query(m.TX_IDLE))


@pytest.mark.parametrize("mode", ["raw", "streaming", "native"])
def test_flush_after_execute_returns_the_results_before_sync(pgpool_factory: Any, pg_cluster: Any,
                                                             pg_native_cluster: Any, mode: str) -> None:
    # pgpool-II 4.3 answers nothing after Flush until Sync arrives; drivers that pipeline
    # with Flush (asyncpg, JDBC's fetch size) then wait forever.
    if mode == "native":
        nodes = pg_native_cluster
        server = pgpool_factory(nodes, mode="native")
    else:
        nodes = pg_cluster
        # Streaming: reads go to the standby, so a write after one changes nodes.
        server = pgpool_factory(nodes, extra={"backend_clustering_mode": "raw"} if mode == "raw" else
                                {"backend_weight0": 0})
    nodes[0].psql("DROP TABLE IF EXISTS flushed", "test")
    if mode == "native":
        nodes[1].psql("DROP TABLE IF EXISTS flushed", "test")
    parse = m.frame(b"P", b"\0SELECT 42\0\0\0")
    run = m.frame(b"B", b"\0\0\0\0\0\0\0\0") + m.frame(b"E", b"\0\0\0\0\0")
    with server.raw_session(timeout=5) as sock:
        sock.sendall(parse + run + m.FLUSH)
        assert _read_messages(sock, b"C") == [b"1", b"2", b"D", b"C"]
        # More of the same cycle after the Flush, then Sync ends it with one ReadyForQuery.
        sock.sendall(run + m.FLUSH)
        assert _read_messages(sock, b"C") == [b"2", b"D", b"C"]
        sock.sendall(m.SYNC)
        assert _read_messages(sock, b"Z") == [b"Z"]
        # A cursor-like fetch (node-postgres' pg-cursor): Execute with a row limit, Flush, again.
        series = m.frame(b"P", b"\0SELECT generate_series(1, 5)\0\0\0") + m.frame(b"B", b"\0\0\0\0\0\0\0\0")
        sock.sendall(series + m.frame(b"D", b"P\0") + m.frame(b"E", b"\0\0\0\0\2") + m.FLUSH)
        assert _read_messages(sock, b"s") == [b"1", b"2", b"T", b"D", b"D", b"s"]
        sock.sendall(m.frame(b"E", b"\0\0\0\0\2") + m.FLUSH)
        assert _read_messages(sock, b"s") == [b"D", b"D", b"s"]
        sock.sendall(m.frame(b"E", b"\0\0\0\0\0") + m.FLUSH)
        assert _read_messages(sock, b"C") == [b"D", b"C"]
        sock.sendall(m.SYNC)
        assert _read_messages(sock, b"Z") == [b"Z"]
        # A write after a read in one cycle: the read ran on the standby (streaming) or on the
        # main node alone (native); the write must still reach the primary, or every node.
        sock.sendall(m.frame(b"P", b"\0SELECT 1\0\0\0") + run + m.FLUSH)
        assert _read_messages(sock, b"C") == [b"1", b"2", b"D", b"C"]
        sock.sendall(m.frame(b"P", b"\0CREATE TABLE flushed (v int)\0\0\0") + run + m.FLUSH)
        assert _read_messages(sock, b"C") == [b"1", b"2", b"C"]
        sock.sendall(m.SYNC)
        assert _read_messages(sock, b"Z") == [b"Z"]
        sock.sendall(m.query("SELECT 1"))
        assert _read_messages(sock, b"Z") == [b"T", b"D", b"C", b"Z"]
    for node in nodes[: 2 if mode == "native" else 1]:
        assert node.psql("SELECT count(*) FROM flushed", "test") == "0"
        node.psql("DROP TABLE flushed", "test")


@pytest.mark.parametrize("mode", ["raw", "streaming", "native"])
def test_simple_query_after_extended_messages_without_sync(pgpool_factory: Any, pg_cluster: Any,
                                                          pg_native_cluster: Any, mode: str) -> None:
    # PostgreSQL takes a Query in the middle of an extended cycle; pgjdbc since 42.7.7 sends
    # its Close messages and then a simple BEGIN so.  pgpool-II 4.3 ends the session ("simple
    # query arrived before ending an extended query message").
    if mode == "native":
        server = pgpool_factory(pg_native_cluster, mode="native")
    else:
        server = pgpool_factory(pg_cluster, extra={"backend_clustering_mode": "raw"} if mode == "raw" else
                                {"backend_weight0": 0})
    parse_s1 = m.frame(b"P", b"s1\0SELECT 1\0\0\0")
    with server.raw_session(timeout=5) as sock:
        sock.sendall(parse_s1 + m.SYNC)
        assert _read_messages(sock, b"Z") == [b"1", b"Z"]
        # pgjdbc's pattern: a Close, then a simple BEGIN, then the statement with its Sync.
        sock.sendall(m.frame(b"C", b"Ss1\0") + m.query("BEGIN") + parse_s1 + m.SYNC)
        # s1 was closed: it can be prepared again.
        assert _read_messages(sock, b"Z", 2) == [b"3", b"C", b"Z", b"1", b"Z"]
        # Inside the transaction: a write without Sync, then a Query that sees it.
        insert = m.frame(b"P", b"\0CREATE TEMP TABLE nosync AS SELECT 7 AS v\0\0\0")
        run = m.frame(b"B", b"\0\0\0\0\0\0\0\0") + m.frame(b"E", b"\0\0\0\0\0")
        sock.sendall(insert + run + m.query("SELECT v FROM nosync"))
        assert _read_messages(sock, b"Z") == [b"1", b"2", b"C", b"T", b"D", b"C", b"Z"]
        sock.sendall(m.query("COMMIT"))
        assert _read_messages(sock, b"Z") == [b"C", b"Z"]
        # A Flush-ended cycle, then a Query, then one of pgpool's own commands.
        sock.sendall(m.frame(b"P", b"\0SELECT 42\0\0\0") + run + m.FLUSH)
        assert _read_messages(sock, b"C") == [b"1", b"2", b"D", b"C"]
        sock.sendall(m.query("SELECT 1"))
        assert _read_messages(sock, b"Z") == [b"T", b"D", b"C", b"Z"]
        sock.sendall(m.frame(b"P", b"\0SELECT 42\0\0\0") + run + m.FLUSH)
        assert _read_messages(sock, b"C") == [b"1", b"2", b"D", b"C"]
        sock.sendall(m.query("SHOW POOL_VERSION"))
        assert _read_messages(sock, b"Z") == [b"T", b"D", b"C", b"Z"]
        sock.sendall(m.query("SELECT 1"))
        assert _read_messages(sock, b"Z") == [b"T", b"D", b"C", b"Z"]


@pytest.mark.parametrize("mode", ["streaming", "native"])
@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_an_error_on_the_load_balance_node_fails_the_whole_transaction(pgpool_factory: Any, pg_cluster_factory: Any,
                                                                        mode: str, protocol: str) -> None:
    # The read fails on node 1 while node 0's side of the transaction is still healthy.  As
    # in PostgreSQL, everything after it must fail and COMMIT must roll back: before, the
    # INSERT ran on the primary and was committed (streaming), or ran on node 0 only and the
    # difference detached node 1 (native).
    nodes = pg_cluster_factory(num_nodes=2, mode=mode)
    server = pgpool_factory(nodes, mode=mode, extra={"backend_weight0": 0})
    params = (0,) if protocol == "extended" else None
    with server.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE kept_out (id int)")
        if mode == "streaming":
            wait_replayed(nodes)
        for attempt in range(3):  # the BEGIN may reach node 1 lazily or not, each time
            conn.execute("BEGIN")
            if attempt == 2:
                conn.execute("SAVEPOINT s")  # and with a savepoint, recovery still works
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / %s" if params else "SELECT 1 / 0", params)
            if attempt == 2:
                conn.execute("ROLLBACK TO SAVEPOINT s")
                conn.execute("INSERT INTO kept_out VALUES (%s)", (attempt,))
            else:
                with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                    conn.execute("INSERT INTO kept_out VALUES (%s)", (attempt,))
            assert conn.execute("COMMIT").statusmessage == ("COMMIT" if attempt == 2 else "ROLLBACK")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert [node.psql("SELECT id FROM kept_out", dbname="test") for node in nodes] == ["2", "2"]
    assert "down" not in server.psql("SHOW POOL_NODES")


def test_native_replication_copy_in_and_pipelined_writes(pgpool_factory: Any, pg_native_cluster: Any) -> None:
    # A write to every node answers when every node has done it, at ReadyForQuery.  But a
    # client waits for CopyInResponse before it sends the data, and for results after a
    # Flush before it sends Sync: held back, both hung for ever.
    server = pgpool_factory(pg_native_cluster, mode="native")
    with server.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS copied")
        conn.execute("CREATE TABLE copied (id int PRIMARY KEY)")
        with conn.cursor().copy("COPY copied (id) FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i,))
        with conn.pipeline():
            returned = conn.execute("INSERT INTO copied VALUES (1000) RETURNING id").fetchall()
        assert returned == [(1000,)]
        cur = conn.cursor()
        cur.executemany("INSERT INTO copied VALUES (%s) RETURNING id", [(1001,), (1002,)], returning=True)
        assert cur.fetchone() == (1001,) and cur.nextset() and cur.fetchone() == (1002,)
        with pytest.raises(psycopg.errors.UniqueViolation):  # an error on every node, in the COPY
            with conn.cursor().copy("COPY copied (id) FROM STDIN") as copy:
                copy.write_row((5,))
        assert conn.execute("SELECT count(*) FROM copied").fetchone() == (1003,)
    dumps = [node.psql("SELECT count(*), sum(id) FROM copied", dbname="test") for node in pg_native_cluster]
    assert dumps == ["1003|502503"] * 2
    assert "down" not in server.psql("SHOW POOL_NODES")


@pytest.mark.parametrize("difference", ["affected tuples", "kind"])
def test_native_replication_difference_ends_the_session_by_default(pgpool_factory: Any, pg_cluster_factory: Any,
                                                                    difference: str) -> None:
    # pgpool-II: with replication_stop_on_mismatch / failover_if_affected_tuples_mismatch off
    # (the default) a difference ends the session and detaches nothing; on, it detaches.
    nodes = pg_cluster_factory(num_nodes=2, mode="native")
    server = pgpool_factory(nodes, mode="native")
    with server.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE differ (id int)")
        conn.execute("INSERT INTO differ VALUES (1)")
    if difference == "kind":
        nodes[1].psql("ALTER TABLE differ ADD CHECK (id < 100)", dbname="test")  # behind pgpool's back
        statement, param = "INSERT INTO differ VALUES (500)", "replication_stop_on_mismatch"
    else:
        nodes[1].psql("INSERT INTO differ VALUES (2)", dbname="test")
        statement, param = "UPDATE differ SET id = id + 10", "failover_if_affected_tuples_mismatch"
    with server.connect(autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InternalError_, match=f"{difference.split()[-1]}.* differs among backends"):
            conn.execute(statement)
    assert "down" not in server.psql("SHOW POOL_NODES")
    with server.connect(autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with open(server.conf_path, "a") as f:
        f.write(f"{param} = on\n")
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "down" not in server.psql("SHOW POOL_NODES") and time.monotonic() < deadline:
        try:
            with server.connect(autocommit=True) as conn:
                conn.execute(statement)
        except psycopg.Error:
            pass
        time.sleep(0.2)
    assert server.psql("SHOW POOL_NODES").splitlines()[1].split("|")[3] == "down"
    assert server.psql("SHOW POOL_NODES").splitlines()[0].split("|")[3] == "up"


@pytest.mark.parametrize("table", ["serial_ids", '"Identity Ids"'])
def test_native_replication_insert_lock_keeps_ids_equal(pgpool_factory: Any, pg_native_cluster: Any,
                                                        table: str) -> None:
    # Concurrent INSERTs drawing ids from a sequence: without insert_lock each node draws
    # them in the order the INSERTs reach it, and rows end up with different ids.
    server = pgpool_factory(pg_native_cluster, mode="native")
    column = "serial PRIMARY KEY" if table == "serial_ids" else "int GENERATED ALWAYS AS IDENTITY"
    with server.connect(autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id {column}, who int)")

    def insert(who: int) -> None:
        with server.connect(autocommit=True) as conn:
            for i in range(60):
                if i % 3 == 2:  # in a transaction too, and by the extended protocol
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {table} (who) VALUES (%s)", (who,))
                else:
                    conn.execute(f"INSERT INTO {table} (who) VALUES ({who})")

    threads = [threading.Thread(target=insert, args=(who,)) for who in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    dumps = [node.psql(f"SELECT string_agg(id || ':' || who, ',' ORDER BY id) FROM {table}", dbname="test")
             for node in pg_native_cluster]
    assert dumps[0].count(":") == 180 and dumps[0] == dumps[1]
    assert "down" not in server.psql("SHOW POOL_NODES")


def test_native_replication_sends_a_function_call_to_every_node(pgpool_factory: Any,
                                                                 pg_native_cluster: Any) -> None:
    """pgjdbc writes large objects with the protocol's FunctionCall (lo_create, lowrite, ...).
    pgpool-II routes a FunctionCall as a write; it reached the main node only, and the large
    object existed there alone."""
    server = pgpool_factory(pg_native_cluster, mode="native")
    lo_create = int(pg_native_cluster[0].psql("SELECT 'lo_create'::regproc::oid", dbname="test"))
    lo_unlink = int(pg_native_cluster[0].psql("SELECT 'lo_unlink'::regproc::oid", dbname="test"))

    def call(function: int, oid: int) -> bytes:
        # One binary argument (an oid), a binary result.
        return m.frame(b"F", struct.pack("!IhhhiIh", function, 1, 1, 1, 4, oid, 1))

    def stored() -> list[str]:
        return [node.psql("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 424242", dbname="test")
                for node in pg_native_cluster]

    with server.raw_session() as sock:
        sock.sendall(call(lo_create, 424242))
        reply = read_until(sock)
        assert b"V" in reply[:1] and b"SERROR" not in reply
        assert stored() == ["1", "1"]
        sock.sendall(call(lo_unlink, 424242))
        assert b"SERROR" not in read_until(sock)
        assert stored() == ["0", "0"]
    assert "down" not in server.psql("SHOW POOL_NODES")


def test_native_replication_lo_creat_gets_one_oid_everywhere(pgpool_factory: Any, pg_native_cluster: Any) -> None:
    """lo_creat lets each node pick the new large object's oid, and the next call with it
    (lo_open) fails on a node that picked another: the session ended.  With lobj_lock_table,
    as in pgpool-II, the main node picks it under the table's lock and every node runs
    lo_create with it (pgpool-II takes max(loid) of pg_largeobject, which objects without
    data are missing from: two such in a row got one oid)."""
    server = pgpool_factory(pg_native_cluster, mode="native", extra={"lobj_lock_table": "lobj_lock"})
    server.psql("DROP TABLE IF EXISTS lobj_lock; CREATE TABLE lobj_lock (dummy int)")
    for node in pg_native_cluster[1:]:  # another node hands out oids ahead of the main node
        node.psql("SELECT lo_unlink(lo_creat(-1)) FROM generate_series(1, 3)", dbname="test")
    lo_creat = m.frame(b"F", struct.pack("!IhhhiIh", 957, 1, 1, 1, 4, 0x60000, 1))  # lo_creat(INV_READ | INV_WRITE)
    with server.raw_session() as sock:
        sock.sendall(m.query("BEGIN"))
        read_until(sock)
        oids = []
        for _ in range(2):
            sock.sendall(lo_creat)
            reply = read_until(sock)
            assert reply[:1] == b"V", reply
            oids.append(struct.unpack_from("!I", reply, 9)[0])
        sock.sendall(m.query("COMMIT"))
        read_until(sock)
    assert len(set(oids)) == 2
    for node in pg_native_cluster:
        assert node.psql("SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_largeobject_metadata"
                         f" WHERE oid IN ({oids[0]}, {oids[1]})", dbname="test") == f"{min(oids)},{max(oids)}"
    server.psql(f"SELECT lo_unlink({oids[0]}), lo_unlink({oids[1]})")


def test_a_failed_insert_in_a_transaction_releases_the_insert_lock(pgpool_factory: Any,
                                                                   pg_native_cluster: Any) -> None:
    """insert_lock is an advisory lock of the session, released once every node has answered
    the INSERT.  When the INSERT failed inside a transaction, the release failed too (the
    transaction refuses every query): the lock stayed until the client left, and INSERTs into
    the table from every other session waited for it."""
    server = pgpool_factory(pg_native_cluster, mode="native")
    with server.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS locked_ids; CREATE TABLE locked_ids (id serial, v int)")
    with server.connect() as holder, server.connect(autocommit=True, options="-c statement_timeout=3000") as other:
        for how in ("ROLLBACK", "ROLLBACK TO SAVEPOINT"):
            holder.execute("SAVEPOINT s" if how != "ROLLBACK" else "SELECT 1")
            with pytest.raises(psycopg.errors.DivisionByZero):
                holder.execute("INSERT INTO locked_ids (v) VALUES (1/0)")
            holder.execute("ROLLBACK TO SAVEPOINT s") if how != "ROLLBACK" else holder.rollback()
            # The holder's session stays open, idle (or in its transaction): others insert
            # without waiting (they waited for statement_timeout on each node, then went on).
            started = time.monotonic()
            other.execute("INSERT INTO locked_ids (v) VALUES (2)")
            assert time.monotonic() - started < 2
        holder.rollback()
    assert "could not release the insert lock" not in server.log_text()


@pytest.mark.parametrize("mode", ["streaming", "native"])
def test_a_client_leaving_right_after_queries_of_ours_leaves_a_clean_connection(
        pgpool_factory: Any, pg_cluster: Any, pg_native_cluster: Any, mode: str) -> None:
    # Some replies are to queries of pgpool-py's own, swallowed: the failure it sends the
    # primary after a failed read (streaming), the unlock after an INSERT under insert_lock
    # (native).  A client that says Terminate at once must not leave them unread on the pooled
    # connection: the reset queries would take them for their own and leave the next client
    # the rest (native), or fail and close the connection (streaming).
    nodes = pg_native_cluster if mode == "native" else pg_cluster
    server = pgpool_factory(nodes, mode=mode, extra={"backend_weight0": 0, "num_init_children": 1, "max_pool": 1})
    if mode == "native":
        with server.connect(autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS left_at_once")
            conn.execute("CREATE TABLE left_at_once (id serial)")
        statements = m.query("INSERT INTO left_at_once DEFAULT VALUES")
    else:
        statements = m.query("BEGIN") + m.query("SELECT 1/0")
    for _ in range(5):
        with server.raw_session() as sock:
            sock.sendall(statements + m.TERMINATE)
            read_until(sock, count=1 if mode == "native" else 2)
        with server.connect(autocommit=True) as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
            assert conn.execute("SELECT 'next'").fetchone() == ("next",)
    assert "reset of pooled connection failed" not in server.log_text()


def test_native_replication_stores_one_time_on_every_node(pgpool_factory: Any, pg_native_cluster: Any) -> None:
    # Each node reads its own clock: without the rewrite (pgpool-II's rewrite_timestamp)
    # now(), CURRENT_DATE and a left-out DEFAULT now() column differ between the nodes.
    server = pgpool_factory(pg_native_cluster, mode="native")
    server.psql("DROP TABLE IF EXISTS clocked; CREATE TABLE clocked (id serial, at timestamptz DEFAULT now(),"
                " day date DEFAULT CURRENT_DATE, note text, t2 timestamp)")
    server.psql("INSERT INTO clocked (note) VALUES ('defaults'); INSERT INTO clocked DEFAULT VALUES;"
                " INSERT INTO clocked VALUES (DEFAULT, now(), CURRENT_DATE, 'explicit', LOCALTIMESTAMP(2));"
                " INSERT INTO clocked (note, t2) SELECT 'select', 'now'::timestamp")
    server.psql("BEGIN; INSERT INTO clocked (note) VALUES ('in a transaction');"
                " UPDATE clocked SET t2 = CURRENT_TIMESTAMP, at = DEFAULT WHERE note = 'defaults'; COMMIT")
    with server.connect(autocommit=True) as conn:  # the same table from the cache, another session
        conn.execute("SELECT 1")
    server.psql("INSERT INTO clocked (note) VALUES ('cached')")
    dumps = [node.psql("SELECT id, at, day, note, t2 FROM clocked ORDER BY id", dbname="test")
             for node in pg_native_cluster]
    assert dumps[0].count("\n") == 5 and dumps[0].count("+00|") == 6, dumps[0]
    assert dumps[0] == dumps[1]
    # Definitions keep reading the clock when they run: the default is still now().
    default = pg_native_cluster[1].psql("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef"
                                        " WHERE adrelid = 'clocked'::regclass AND adnum = 2", dbname="test")
    assert default == "now()"
    assert "down" not in server.psql("SHOW POOL_NODES")


def test_native_replication_extended_protocol_stores_one_time(pgpool_factory: Any, pg_native_cluster: Any) -> None:
    # The extended protocol: each Bind of a statement that reads the clock binds a copy made
    # with the main node's time, so a prepared statement still reads the clock per execution.
    server = pgpool_factory(pg_native_cluster, mode="native")
    server.psql("DROP TABLE IF EXISTS clocked_x; CREATE TABLE clocked_x (id int, at timestamptz DEFAULT now(),"
                " t2 timestamptz)")
    with server.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO clocked_x (id) VALUES (%s)", (1,))
        for i in range(2, 5):  # a named statement from the first execution on
            conn.execute("INSERT INTO clocked_x (id, t2) VALUES (%s, now())", (i,), prepare=True)
        with conn.pipeline():
            conn.execute("INSERT INTO clocked_x (id, t2) VALUES (%s, CURRENT_TIMESTAMP)", (5,))
            conn.execute("UPDATE clocked_x SET t2 = now() WHERE id = %s", (1,))

    async def work() -> None:  # asyncpg describes each statement and counts its parameters
        conn = await asyncpg.connect(host=HOST, port=server.port, user=SERVER_USER, database="test")
        try:
            await conn.execute("INSERT INTO clocked_x (id, t2) VALUES ($1, now())", 6)
            stmt = await conn.prepare("INSERT INTO clocked_x (id, t2) VALUES ($1, LOCALTIMESTAMP) RETURNING at")
            assert (await stmt.fetchval(7)) is not None
        finally:
            await conn.close()

    asyncio.run(work())
    dumps = [node.psql("SELECT id, at, t2 FROM clocked_x ORDER BY id", dbname="test") for node in pg_native_cluster]
    assert dumps[0].count("\n") == 6 and dumps[0] == dumps[1], dumps
    times = [line.split("|")[2] for line in dumps[0].splitlines()[1:4]]
    assert len(set(times)) == 3, f"each execution of the prepared statement reads the clock: {times}"
    assert "down" not in server.psql("SHOW POOL_NODES")


def _extended(*statements: str) -> bytes:
    """Each statement as Parse/Bind/Describe/Execute of the unnamed statement, then one Sync: how
    pgjdbc sends its BEGIN together with a transaction's first statement."""
    out = b""
    for sql in statements:
        out += (m.frame(b"P", b"\0" + sql.encode() + b"\0\0\0") + m.frame(b"B", b"\0\0\0\0\0\0\0\0")
                + m.frame(b"D", b"P\0") + m.frame(b"E", b"\0\0\0\0\0"))
    return out + m.SYNC


def _status_and_rows(reply: bytes) -> tuple[str, list[list[str | None]]]:
    msgs, _ = m.split_messages(reply)
    rows = [m.parse_data_row(reply[start + 5 : end]) for typ, start, end in msgs if typ == ord("D")]
    errors = [reply[start:end] for typ, start, end in msgs if typ == ord("E")]
    assert not errors, errors
    return chr(reply[msgs[-1][2] - 1]), rows


@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize("on_write", ["transaction", "off"])
def test_begin_sent_with_a_write_makes_a_writing_transaction(pgpool_factory: Any, pg_cluster: Any,
                                                             protocol: str, on_write: str) -> None:
    # pgjdbc (autocommit off) sends BEGIN in the same batch as the first statement; psql users
    # write "BEGIN; INSERT ...".  The transaction writes: its reads stay on the primary (or,
    # with disable_load_balance_on_write = off, run in a transaction on the standby), and the
    # client must hear it is in a transaction, or pgjdbc skips COMMIT and the reset rolls the
    # row back.
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0, "disable_load_balance_on_write": on_write})
    server.psql("DROP TABLE IF EXISTS begun_w; CREATE TABLE begun_w (id int)")
    wait_replayed(pg_cluster)

    def send(*statements: str) -> tuple[str, list[list[str | None]]]:
        if protocol == "simple":
            sock.sendall(m.query("; ".join(statements)))
        else:
            sock.sendall(_extended(*statements))
        return _status_and_rows(read_until(sock))

    with server.raw_session() as sock:
        assert send("BEGIN", "INSERT INTO begun_w VALUES (1)")[0] == "T"
        seen = "1" if on_write == "transaction" else "0"  # the standby does not see the row yet
        assert send("SELECT count(*) FROM begun_w") == ("T", [[seen]]), "the read left the transaction"
        assert send("COMMIT")[0] == "I"
    assert pg_cluster[0].psql("SELECT count(*) FROM begun_w", dbname="test") == "1"


def test_begin_sent_with_a_read_goes_where_the_read_goes(pgpool_factory: Any, pg_cluster: Any) -> None:
    # pgjdbc's first batch of a transaction is BEGIN and a read: the standby runs both, and the
    # primary gets its BEGIN only with the transaction's first write.  Before, the batch ran on
    # both nodes, and a failure of the read on the standby went unseen until the next read.
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0, "log_per_node_statement": True})
    server.psql("DROP TABLE IF EXISTS begun_r; CREATE TABLE begun_r (id int)")
    wait_replayed(pg_cluster)
    with server.raw_session() as sock:
        sock.sendall(_extended("BEGIN", "SELECT count(*) FROM begun_r /* first read */"))
        assert _status_and_rows(read_until(sock)) == ("T", [["0"]])
        sock.sendall(_extended("INSERT INTO begun_r VALUES (1)"))
        assert _status_and_rows(read_until(sock))[0] == "T"
        sock.sendall(_extended("COMMIT"))
        assert _status_and_rows(read_until(sock))[0] == "I"
        # A read that fails on the standby fails the transaction on the primary too, though
        # the primary has not begun it yet: the INSERT after it fails, and COMMIT rolls back.
        sock.sendall(_extended("BEGIN", "SELECT 1 / (count(*) - 1) FROM begun_r"))
        reply = read_until(sock)
        assert b"C22012\0" in reply and reply.endswith(b"Z\0\0\0\x05E")
        sock.sendall(_extended("INSERT INTO begun_r VALUES (2)"))
        reply = read_until(sock)
        assert b"C25P02\0" in reply and reply.endswith(b"Z\0\0\0\x05E")
        sock.sendall(m.query("COMMIT"))
        assert b"ROLLBACK" in read_until(sock)
    assert pg_cluster[0].psql("SELECT string_agg(id::text, ',') FROM begun_r", dbname="test") == "1"
    batches = [line for line in server.log_text().splitlines()
               if line.endswith("statement: Parse Bind Describe Execute Parse Bind Describe Execute Sync")]
    assert len(batches) == 2 and all("DB node id: 1 " in line for line in batches), batches


@pytest.mark.parametrize("setting", ["SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                                     "SET default_transaction_isolation = 'serializable'"])
def test_a_serializable_session_default_keeps_reads_on_the_primary(pgpool_factory: Any, pg_cluster: Any,
                                                                    setting: str) -> None:
    # pgjdbc's setTransactionIsolation sends the first form.  A standby cannot run SERIALIZABLE
    # transactions, and the setting reaches only the primary: reads there would run at READ
    # COMMITTED.  pgpool-II keeps them on the primary.
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0})
    isolation = "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"
    with server.connect(autocommit=True) as conn:
        assert conn.execute(isolation).fetchone() == ("read committed", "on")  # the standby
        conn.execute(setting)
        assert conn.execute(isolation).fetchone() == ("serializable", "off")
        # Reads that are not "SELECT ..." in a simple Query, too: prepared, or a WITH.
        assert conn.execute(isolation, prepare=True).fetchone() == ("serializable", "off")
        assert conn.execute(f"WITH s AS ({isolation}) SELECT * FROM s").fetchone() == ("serializable", "off")
        with conn.transaction():
            assert conn.execute(isolation).fetchone() == ("serializable", "off")
        conn.execute("RESET ALL")
        assert conn.execute(isolation).fetchone() == ("read committed", "on")


def test_a_notification_arriving_while_a_standby_answers_reaches_the_client(pgpool_factory: Any,
                                                                            pg_cluster: Any) -> None:
    # LISTEN runs on the primary; a NOTIFY delivered while the session reads from the standby
    # came from a node that was not answering, and was dropped.
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0})
    with server.raw_session() as sock:
        sock.sendall(m.query("LISTEN pgpool_py_ch"))
        read_until(sock)
        sock.sendall(m.query("SELECT count(*) FROM generate_series(1, 4000000)"))  # on the standby
        time.sleep(0.2)
        pg_cluster[0].psql("NOTIFY pgpool_py_ch, 'during the read'", dbname="test")
        reply = read_until(sock)
        assert b"4000000" in reply, "the read was answered"
        deadline = time.monotonic() + 5
        while b"during the read" not in reply:
            assert time.monotonic() < deadline, f"no notification: {reply!r}"
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            reply += sock.recv(65536)
        msgs, _ = m.split_messages(reply)
        assert [chr(typ) for typ, _s, _e in msgs][-1] == "A", "after the read's ReadyForQuery"


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_temporary_tables_made_where_they_cannot_be_seen_keep_reads_on_the_primary(
        pgpool_factory: Any, pg_cluster: Any, protocol: str) -> None:
    # check_temp_table = catalog (the default): a DO block or a function creates a temporary
    # table that no CREATE statement shows; the primary is asked what the session has.
    server = pgpool_factory(pg_cluster, extra={"backend_weight0": 0})
    server.psql("CREATE OR REPLACE FUNCTION make_temp() RETURNS int LANGUAGE sql"
                " AS 'CREATE TEMP TABLE IF NOT EXISTS tmp_f AS SELECT 2 AS a; SELECT 1'")
    with server.connect(autocommit=True) as conn:
        cursor = conn.cursor() if protocol == "extended" else psycopg.ClientCursor(conn)
        cursor.execute("DO $$BEGIN CREATE TEMP TABLE tmp_do AS SELECT 1 AS a; END$$")
        assert cursor.execute("SELECT a FROM tmp_do").fetchone() == (1,)
        cursor.execute("SELECT make_temp()")
        assert cursor.execute("SELECT a FROM tmp_f").fetchone() == (2,)
        cursor.execute("DO $$BEGIN DROP TABLE tmp_do; END$$")
        # Known to be gone: reads of other tables go to the standby again.
        assert cursor.execute("SELECT current_setting('transaction_read_only')").fetchone() == ("on",)


def test_a_parse_seen_before_follows_a_temporary_table_made_since(pgpool_factory: Any, pg_cluster: Any) -> None:
    # The router remembers the verdicts of the Parse messages a session repeats; a temporary
    # table that shadows a table of the same name must still send them to the primary.
    server = pgpool_factory(pg_cluster, extra={**READ_ONLY, "backend_weight0": 0})
    server.psql("DROP TABLE IF EXISTS shadowed; CREATE TABLE shadowed AS SELECT 1 AS v")
    wait_replayed(pg_cluster)
    rows = "SELECT v, pg_is_in_recovery() FROM shadowed ORDER BY v"
    with server.connect(autocommit=True) as conn:
        for _ in range(2):
            assert conn.execute(rows).fetchall() == [(1, True)]  # the extended protocol: Parse each time
        conn.execute("CREATE TEMP TABLE shadowed AS SELECT 2 AS v UNION ALL SELECT 3")
        for _ in range(2):
            assert conn.execute(rows).fetchall() == [(2, False), (3, False)]
        conn.execute("DROP TABLE pg_temp.shadowed")
        assert conn.execute(rows).fetchall() == [(1, True)]


def test_native_replication_begin_sent_with_a_read_reaches_every_node(pgpool_factory: Any,
                                                                       pg_native_cluster: Any) -> None:
    # Native replication has no BEGIN for later: one sent with a read must reach every node,
    # or a later write runs outside the transaction there and ROLLBACK cannot undo it.
    server = pgpool_factory(pg_native_cluster, mode="native")
    server.psql("DROP TABLE IF EXISTS begun_n; CREATE TABLE begun_n (id int)")
    with server.raw_session() as sock:
        sock.sendall(_extended("BEGIN", "SELECT count(*) FROM begun_n"))
        assert _status_and_rows(read_until(sock)) == ("T", [["0"]])
        sock.sendall(_extended("INSERT INTO begun_n VALUES (1)"))
        assert _status_and_rows(read_until(sock))[0] == "T"
        sock.sendall(_extended("ROLLBACK"))
        assert _status_and_rows(read_until(sock))[0] == "I"
    assert [node.psql("SELECT count(*) FROM begun_n", dbname="test") for node in pg_native_cluster] == ["0", "0"]
