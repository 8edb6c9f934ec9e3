"""The PostgreSQL clusters that every integration test stands on."""

from __future__ import annotations

import time

from pgpool_py.cluster import PgNode
from tests.fix_pg import ClusterFactory

# Streaming replication on loopback shows a row within milliseconds; this only bounds a failure.
REPLICATION_TIMEOUT = 10.0


def _wait_for(node: PgNode, sql: str, expected: str, dbname: str = "test") -> str:
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while (got := node.psql(sql, dbname)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_streaming_cluster_roles(pg_cluster: list[PgNode]) -> None:
    primary, standby = pg_cluster
    assert primary.psql("SELECT pg_is_in_recovery()") == "f"
    assert standby.psql("SELECT pg_is_in_recovery()") == "t"
    assert primary.psql("SELECT application_name, state FROM pg_stat_replication") == "server1|streaming"
    # Each node reports its own port, so the list maps node ids to the right servers.
    assert [n.psql("SHOW port") for n in pg_cluster] == [str(n.port) for n in pg_cluster]


def test_streaming_cluster_replicates(pg_cluster: list[PgNode]) -> None:
    primary, standby = pg_cluster
    # One -c string is one transaction: once the table is visible on the standby, so is the row.
    primary.psql("CREATE TABLE t_replicates (v text); INSERT INTO t_replicates VALUES ('hello')", "test")
    try:
        assert _wait_for(standby, "SELECT to_regclass('t_replicates') IS NOT NULL", "t") == "t"
        assert standby.psql("SELECT v FROM t_replicates", "test") == "hello"
    finally:
        primary.psql("DROP TABLE t_replicates", "test")


def test_native_cluster_nodes_are_independent(pg_native_cluster: list[PgNode]) -> None:
    node0, node1 = pg_native_cluster
    assert node0.psql("SELECT pg_is_in_recovery()", "test") == node1.psql("SELECT pg_is_in_recovery()", "test") == "f"
    node0.psql("CREATE TABLE t_native (v int)", "test")
    try:
        assert node1.psql("SELECT count(*) FROM pg_class WHERE relname = 't_native'", "test") == "0"
    finally:
        node0.psql("DROP TABLE t_native", "test")


def test_synchronous_standby_and_stop_start(pg_cluster_factory: ClusterFactory) -> None:
    primary, standby = pg_cluster_factory(num_nodes=2, synchronous=True)
    assert primary.psql("SELECT sync_state FROM pg_stat_replication") == "sync"
    # remote_apply: the commit returns only once the standby has replayed it.
    primary.psql("SET synchronous_commit = remote_apply; CREATE TABLE t_sync AS SELECT 1 AS v", "test")
    assert standby.psql("SELECT v FROM t_sync", "test") == "1"
    standby.stop()
    assert not standby.is_running()
    standby.start()
    assert standby.is_running()
    assert standby.psql("SELECT pg_is_in_recovery()") == "t"
