"""
Health checks, failover, failback and the status file against real PostgreSQL clusters
(a private primary + streaming standby per test: these tests stop and promote nodes).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pcp.client import PcpConnection
from pgpool_py.cluster import HOST, PCP_PASSWORD, SERVER_USER, PgNode
from tests.fix_pg import ClusterFactory
from tests.fix_pgpool import PgpoolFactory, PgpoolServer

ETC = Path(__file__).resolve().parents[2] / "etc"
PERIOD, TIMEOUT, RETRIES = 1, 2, 0
HEALTH = {
    "health_check_period": PERIOD,
    "health_check_timeout": TIMEOUT,
    "health_check_max_retries": RETRIES,
    "health_check_retry_delay": 1,
    "connect_timeout": 2000,
    "sr_check_period": 1,
    "search_primary_node_timeout": 5,
    "failover_command": f"{ETC}/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S",
}
# issue 8: a stopped standby is marked down within this bound.
DETECT_BOUND = PERIOD * (RETRIES + 1) + TIMEOUT + 1
WRITES_BACK_BOUND = 10.0


def pool_nodes(server: PgpoolServer) -> list[dict[str, str]]:
    with server.connect() as conn:
        cur = conn.execute("SHOW POOL_NODES")
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def show(rows: list[dict[str, str]]) -> str:
    cols = ("node_id", "port", "status", "pg_status", "lb_weight", "role", "pg_role", "select_cnt",
            "replication_delay", "replication_state")
    return "\n".join(" | ".join(str(r.get(c, "")) for c in cols) for r in rows)


def wait_for(what: str, cond: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """Seconds until ``cond()`` holds; fails after ``timeout``."""
    start = time.monotonic()
    while not _holds(cond):
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:.1f} s")
        time.sleep(step)
    return time.monotonic() - start


def _holds(cond: Callable[[], bool]) -> bool:
    # A client that reaches pgpool-py between a node's death and its detection gets an error,
    # as with pgpool-II: polling simply asks again.
    try:
        return cond()
    except psycopg.OperationalError:
        return False


def _process_titles(server: PgpoolServer) -> str:
    """The command lines (process titles) of pgpool-py's processes."""
    titles = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[2]) != server.pid:  # process group
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    titles.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except (OSError, ValueError, IndexError):
                continue
    return "\n".join(titles)


def node_status(server: PgpoolServer, node: int) -> str:
    return pool_nodes(server)[node]["status"]


class ClientLoop(threading.Thread):
    """A bounded read/write loop in one persistent session; counts errors."""

    def __init__(self, server: PgpoolServer, table: str) -> None:
        super().__init__(daemon=True)
        self.conn = server.connect(autocommit=True)
        self.table = table
        self.stop = threading.Event()
        self.done = 0
        self.errors: list[str] = []

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                try:
                    self.conn.execute(f"INSERT INTO {self.table} VALUES (%s)", (i,))
                    self.conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
                    self.done += 1
                except psycopg.Error as exc:
                    self.errors.append(str(exc).strip())
                    if self.conn.closed:
                        return
                time.sleep(0.01)
        finally:
            self.conn.close()


def stop_standby_under_load(nodes: list[PgNode], server: PgpoolServer) -> tuple[float, list[ClientLoop]]:
    """Stop the standby (immediate) while three sessions write and read; returns the seconds
    until SHOW POOL_NODES marked it down, and the finished client loops."""
    server.psql("CREATE TABLE hc_loop (i int)")
    clients = [ClientLoop(server, "hc_loop") for _ in range(3)]
    for c in clients:
        c.start()
    time.sleep(0.5)
    stopped = time.monotonic()
    nodes[1].stop("immediate")
    wait_for("standby marked down", lambda: node_status(server, 1) == "down", DETECT_BOUND + 2)
    took = time.monotonic() - stopped
    time.sleep(1.0)  # the clients keep running across the failover
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(10)
    print(f"\nstandby stopped -> down after {took:.2f} s (bound {DETECT_BOUND} s)")
    print("client loops: " + ", ".join(f"{c.done} ok / {len(c.errors)} errors" for c in clients))
    return took, clients


def test_standby_down_is_detected_in_time(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory) -> None:
    nodes: list[PgNode] = pg_cluster_factory()
    # Weight 0 on the standby: no session balances to it.
    server = pgpool_factory(nodes, extra={**HEALTH, "backend_weight1": 0})
    took, clients = stop_standby_under_load(nodes, server)
    rows = pool_nodes(server)
    print("SHOW POOL_NODES after the standby stopped:\n" + show(rows))
    assert took <= DETECT_BOUND
    assert [r["status"] for r in rows] == ["up", "down"]
    assert rows[0]["role"] == "primary"
    assert all(c.done > 0 for c in clients)
    # New connections work, and the status file remembers the node.
    assert server.psql("SELECT count(*) > 0 FROM hc_loop") == "t"
    status_file = server.conf_path.parent / "log" / "pgpool_status"
    assert status_file.read_text().split() == ["up", "down"]
    assert "failover done. shutdown host" in server.log_text()


def test_sessions_not_using_a_failed_standby_see_no_error(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory) -> None:
    nodes: list[PgNode] = pg_cluster_factory()
    server = pgpool_factory(nodes, extra={**HEALTH, "backend_weight1": 0})
    _took, clients = stop_standby_under_load(nodes, server)
    assert [c.errors for c in clients] == [[], [], []]


@pytest.mark.parametrize("synchronous", [True, False], ids=["sync", "async"])
def test_primary_failover_promotes_standby_and_survives_restart(
    pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory, synchronous: bool
) -> None:
    nodes: list[PgNode] = pg_cluster_factory(synchronous=synchronous)
    server = pgpool_factory(nodes, extra=HEALTH)
    server.psql("CREATE TABLE ledger (i int PRIMARY KEY)")
    acknowledged: list[int] = []
    stop = threading.Event()
    back_at: list[float] = []
    errors: list[str] = []
    stopped_at: list[float] = []

    def writer() -> None:
        i = 0
        conn: psycopg.Connection[Any] | None = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = server.connect(autocommit=True, connect_timeout=3)
                i += 1
                conn.execute("INSERT INTO ledger VALUES (%s)", (i,))
                acknowledged.append(i)
                if stopped_at and not back_at:
                    back_at.append(time.monotonic())  # the first commit after the primary is gone
            except psycopg.Error as exc:
                errors.append(str(exc).strip().splitlines()[0])
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.1)
        if conn is not None:
            conn.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.5)
    nodes[0].stop("immediate")
    stopped_at.append(time.monotonic())
    before = len(acknowledged)
    wait_for("writes through pgpool-py succeed again", lambda: bool(back_at), WRITES_BACK_BOUND + 5)
    time.sleep(0.5)
    stop.set()
    thread.join(10)
    rows = pool_nodes(server)
    back = back_at[0] - stopped_at[0]
    print(f"\nprimary stopped -> writes succeed again after {back:.2f} s (bound {WRITES_BACK_BOUND} s); "
          f"{before} commits before the stop, {len(acknowledged)} in all, {len(errors)} client errors meanwhile")
    print("SHOW POOL_NODES after the failover:\n" + show(rows))
    assert back <= WRITES_BACK_BOUND
    assert [(r["status"], r["role"]) for r in rows] == [("down", "standby"), ("up", "primary")]
    assert nodes[1].psql("SELECT pg_is_in_recovery()") == "f"
    present = {int(x) for x in nodes[1].psql("SELECT i FROM ledger", dbname="test").split()}
    lost = sorted(set(acknowledged) - present)
    print(f"{'synchronous' if synchronous else 'asynchronous'} replication: "
          f"acknowledged commits lost by the promotion: {len(lost)}")
    assert "failover.sh: promoting node 1" in server.log_text()
    if not synchronous:
        return
    # Synchronous replication: every commit the client saw is on the promoted node.
    assert lost == []

    # A restart keeps node 0 down (pgpool_status) ...
    log_dir = str(server.conf_path.parent / "log")
    assert server.stop("fast") == 0
    again = pgpool_factory(nodes, extra={**HEALTH, "logdir": log_dir})
    rows = pool_nodes(again)
    print("SHOW POOL_NODES after a restart:\n" + show(rows))
    assert [(r["status"], r["role"]) for r in rows] == [("down", "standby"), ("up", "primary")]
    assert again.stop("fast") == 0
    # ... and -D forgets it.  Nothing may find node 0 dead again (no health check, no failover
    # on a session's connection error), so it stays "waiting" as for a fresh start.
    program = [sys.executable, "-m", "pgpool_py", "-D"]
    forgot = pgpool_factory(nodes, extra={**HEALTH, "logdir": log_dir, "health_check_period": 0,
                                          "failover_on_backend_error": False}, program=program)
    rows = pool_nodes(forgot)
    print("SHOW POOL_NODES after a restart with -D:\n" + show(rows))
    assert rows[0]["status"] != "down"
    assert rows[1]["role"] == "primary"
    assert not os.path.exists(os.path.join(log_dir, "pgpool_status")) or "down" not in Path(
        log_dir, "pgpool_status").read_text()


def test_auto_failback_and_detach_false_primary(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory) -> None:
    nodes: list[PgNode] = pg_cluster_factory()
    # Reads only on the standby, so that its return shows in where reads go.
    # The health check starts disabled and is switched on by a reload; sessions do not report
    # failed backends, so the health check alone must find the stopped standby.
    server = pgpool_factory(nodes, extra={**HEALTH, "auto_failback": True, "auto_failback_interval": 1,
                                          "backend_weight0": 0, "health_check_period": 0,
                                          "failover_on_backend_error": False, "detach_false_primary": True})
    with open(server.conf_path, "a") as f:
        f.write(f"health_check_period = {PERIOD}\n")
    server.signal(signal.SIGHUP)
    wait_for("health check process started", lambda: "health check process(1)" in _process_titles(server), 5)
    stopped = time.monotonic()
    nodes[1].stop("immediate")
    wait_for("standby marked down", lambda: node_status(server, 1) == "down", DETECT_BOUND + 2)
    print(f"\nhealth check alone: standby down after {time.monotonic() - stopped:.2f} s (bound {DETECT_BOUND} s)")
    assert time.monotonic() - stopped <= DETECT_BOUND
    assert "health check failed on node 1" in server.log_text()
    nodes[1].start()
    took = wait_for("restarted standby attached again",
                    lambda: node_status(server, 1) in ("up", "waiting"), 15)
    print(f"\nrestarted standby attached again after {took:.2f} s")
    print("SHOW POOL_NODES after auto_failback:\n" + show(pool_nodes(server)))
    assert "failback done. reconnect host" in server.log_text()
    def read_port() -> int:
        with server.connect() as conn:
            return int(conn.execute("SELECT current_setting('port')").fetchone()[0])  # type: ignore[index]

    # Children restart when idle after a failback: give them a moment, then every read goes there.
    wait_for("a read reaches the standby", lambda: read_port() == nodes[1].port, 5)
    ports = {read_port() for _ in range(10)}
    assert ports == {nodes[1].port}, "reads go to the standby again"

    # detach_false_primary: a standby promoted behind pgpool-py's back is detached by sr_check.
    nodes[1].psql("SELECT pg_promote()")
    took = wait_for("false primary detached", lambda: node_status(server, 1) == "down", 5)
    print(f"false primary detached after {took:.2f} s")
    assert "node 1 is a false primary" in server.log_text()
    assert pool_nodes(server)[0]["role"] == "primary"


def test_follow_primary_command_rebuilds_the_other_standby(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory) -> None:
    nodes: list[PgNode] = pg_cluster_factory(num_nodes=3)
    # pcp_attach_node is replaced by `true`: the test checks the PostgreSQL side of following.
    follow = (f"PCP_ATTACH_NODE=true LOGFILE={nodes[2].log_path} "
              f"{ETC}/follow_primary.sh %d %h %p %D %m %H %M %P %r %R")
    server = pgpool_factory(nodes, extra={**HEALTH, "follow_primary_command": follow})
    stopped = time.monotonic()
    nodes[0].stop("immediate")
    wait_for("node 1 promoted", lambda: pool_nodes(server)[1]["role"] == "primary", WRITES_BACK_BOUND)
    receiver = "SELECT status, conninfo FROM pg_stat_wal_receiver"

    def follows_node1() -> bool:
        try:
            out = nodes[2].psql(receiver)
        except Exception:  # restarting
            return False
        return out.startswith("streaming|") and f"port={nodes[1].port}" in out

    wait_for("node 2 streams from node 1", follows_node1, 30, step=0.5)
    print(f"\nnode 2 follows the new primary {time.monotonic() - stopped:.2f} s after the primary stopped")
    wait_for("follow child finished", lambda: "follow primary done" in server.log_text(), 10)
    rows = pool_nodes(server)
    print("SHOW POOL_NODES after follow_primary_command:\n" + show(rows))
    # Every node but the new primary was detached for following; attaching is pcp_attach_node's job.
    assert [(r["status"], r["role"]) for r in rows] == [("down", "standby"), ("up", "primary"), ("down", "standby")]
    assert "follow_primary.sh: node 2 is a standby of node 1 again" in server.log_text()
    assert "follow_primary.sh: node 0 is not running; skipping it" in server.log_text()


def test_node_added_by_reload_is_down_until_attached(pg_cluster: list[PgNode], pgpool_factory: PgpoolFactory) -> None:
    # pgpool-II: "New nodes can be added by adding parameter rows and reloading".  Before, the
    # rows reached PGPOOL SHOW but no node appeared and pcp_attach_node called it invalid.
    primary, standby = pg_cluster
    server = pgpool_factory([primary], extra={"backend_weight0": 0, "read_only_function_list": "pg_is_in_recovery"})
    assert [r["status"] for r in pool_nodes(server)] == ["up"]
    with open(server.conf_path, "a") as f:
        f.write(f"backend_hostname1 = '{standby.host}'\nbackend_port1 = {standby.port}\nbackend_weight1 = 1\n")
    server.signal(signal.SIGHUP)
    wait_for("node 1 to appear", lambda: len(pool_nodes(server)) == 2, 10)
    assert [r["status"] for r in pool_nodes(server)] == ["up", "down"]
    assert "backend node 1" in server.log_text() and "added" in server.log_text()
    with PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, timeout=10) as pcp:
        assert pcp.node_count() == 2
        pcp.attach_node(1)
    wait_for("node 1 to be attached", lambda: pool_nodes(server)[1]["status"] == "up", 10)
    assert pool_nodes(server)[1]["role"] == "standby"
    # Weight 0 on the primary: a new session reads from the new node.
    wait_for("a read on node 1",
             lambda: server.psql("SELECT pg_is_in_recovery()") == "t", 10)


def test_failover_command_arguments_keep_their_places_without_a_new_main(
    pg_cluster: list[PgNode], pgpool_factory: PgpoolFactory, tmp_path: Path
) -> None:
    # pgpool-II writes "" for %H %r %R (and %N %S) of a node that does not exist, such as the
    # new main node (-1) once the last node is detached: the script still gets every argument
    # in its place.  Detaching changes nothing in PostgreSQL, so the session's cluster serves.
    record = tmp_path / "arguments"
    script = tmp_path / "record.sh"
    script.write_text(f'#!/bin/sh\n{{ echo "$#"; printf "[%s]" "$@"; echo; }} >> {record}\n')
    script.chmod(0o755)
    server = pgpool_factory(pg_cluster, extra={
        "failover_command": f"{script} %d %h %p %D %m %H %M %P %r %R %N %S end",
        "health_check_period": 0, "sr_check_period": 0,
    })
    primary, standby = pg_cluster
    with PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, timeout=10) as pcp:
        pcp.detach_node(1, gracefully=True)
        pcp.detach_node(0, gracefully=True)
        assert [n.status_name for n in pcp.node_info()] == ["down", "down"]
    lines = record.read_text().splitlines()
    print("\nfailover_command arguments:\n" + "\n".join(lines))
    h = HOST
    assert lines == [
        "13", f"[1][{h}][{standby.port}][{standby.datadir}][0][{h}][0][0][{primary.port}][{primary.datadir}]"
              f"[{h}][{primary.port}][end]",
        # No node is left: new main -1, its host, port and data directory are empty arguments.
        "13", f"[0][{h}][{primary.port}][{primary.datadir}][-1][][0][0][][][{h}][{primary.port}][end]",
    ]


def test_a_detached_node_shows_what_its_server_is(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory) -> None:
    # As pgpool-II: pg_status and pg_role of a down node say what its server is (a detached
    # standby: down | up | standby | standby; once stopped: down | down | standby | unknown),
    # in SHOW POOL_NODES and pcp_node_info alike.  The health check's rounds on a down node
    # count as skipped, and the failure of one triggers nothing.
    nodes: list[PgNode] = pg_cluster_factory()
    server = pgpool_factory(nodes, extra=HEALTH)

    def node1() -> list[tuple[str, str, str, str]]:
        row = pool_nodes(server)[1]
        with PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, timeout=10) as pcp:
            info = pcp.node_info(1)[0]
        return [(row["status"], row["pg_status"], row["role"], row["pg_role"]),
                (info.status_name, info.pg_backend_status, info.role_name, info.pg_role)]

    def stats1() -> dict[str, str]:
        with server.connect() as conn:
            cur = conn.execute("SHOW POOL_HEALTH_CHECK_STATS")
            names = [d.name for d in cur.description or []]
            return dict(zip(names, cur.fetchall()[1]))

    wait_for("node 1 checked", lambda: node1() == 2 * [("up", "up", "standby", "standby")], 5)
    with PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, timeout=10) as pcp:
        pcp.detach_node(1, gracefully=True)
    wait_for("detached standby seen up", lambda: node1() == 2 * [("down", "up", "standby", "standby")], 5)
    wait_for("two skipped rounds", lambda: int(stats1()["skip_count"]) >= 2, 5)
    s = stats1()
    print(f"\nhealth check stats of the detached node: {s}")
    assert int(s["total_count"]) == int(s["success_count"]) + int(s["fail_count"]) + int(s["skip_count"])
    assert s["last_health_check"] >= s["last_skip_health_check"] != ""

    nodes[1].stop("immediate")
    wait_for("stopped standby seen down", lambda: node1() == 2 * [("down", "down", "standby", "unknown")], 5)
    time.sleep(2 * PERIOD)
    print("SHOW POOL_NODES after the detached standby stopped:\n" + show(pool_nodes(server)))
    log = server.log_text()
    assert log.count("starting degeneration") == 1  # the detach, nothing after the stop
    assert "health check failed on node 1" not in log


def test_a_promoted_standby_shows_no_replication_state_or_delay(
    pg_cluster: list[PgNode], pgpool_factory: PgpoolFactory
) -> None:
    # pgpool-II clears replication_state / replication_sync_state on each sr_check round and
    # gives the primary a delay of 0: a standby that pgpool takes for the primary shows none of
    # the values it had as a standby.  pcp_promote_node without --switchover leaves PostgreSQL
    # alone, so the session's cluster serves (node 1 replays again at the end).
    primary, standby = pg_cluster
    server = pgpool_factory(pg_cluster, extra={"sr_check_period": 1, "health_check_period": 0})
    standby.psql("SELECT pg_wal_replay_pause()")
    try:
        primary.psql("CREATE TABLE replication_delay_probe (i int); DROP TABLE replication_delay_probe")
        wait_for("node 1 behind", lambda: int(pool_nodes(server)[1]["replication_delay"]) > 0, 5)
        before = pool_nodes(server)[1]
        assert (before["replication_state"], before["replication_sync_state"]) == ("streaming", "async")
        with PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, timeout=10) as pcp:
            pcp.promote_node(1, gracefully=True)

        def replication_columns() -> list[tuple[str, str, str]]:
            return [(r["replication_delay"], r["replication_state"], r["replication_sync_state"])
                    for r in pool_nodes(server)]

        wait_for("values of a standby cleared", lambda: replication_columns() == [("0", "", "")] * 2, 5)
        print("\nSHOW POOL_NODES after the promotion:\n" + show(pool_nodes(server)))
    finally:
        standby.psql("SELECT pg_wal_replay_resume()")


def test_native_replication_roles_and_failback_placeholders(pgpool_factory: PgpoolFactory, tmp_path: Path) -> None:
    # Native replication, as pgpool-II: pg_role is the node's role (main/replica), and with no
    # primary failback_command's %P %N %S name the main node (pgpool-II's PRIMARY_NODE_ID),
    # where failover_command got -1 and empty arguments.  Detaching and attaching change
    # nothing in PostgreSQL, so the session's native cluster serves.
    record = tmp_path / "arguments"
    script = tmp_path / "record.sh"
    script.write_text(f'#!/bin/sh\nprintf "[%s]" "$@" >> {record}; echo >> {record}\n')
    script.chmod(0o755)
    args = "%d %m %M %P %N %S end"
    server = pgpool_factory(mode="native", extra={
        "failover_command": f"{script} failover {args}", "failback_command": f"{script} failback {args}",
        "health_check_period": 0,
    })
    rows = pool_nodes(server)
    with PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, timeout=10) as pcp:
        infos = pcp.node_info()
        assert [(r["role"], r["pg_role"]) for r in rows] == [("main", "main"), ("replica", "replica")]
        assert [(i.role_name, i.pg_role) for i in infos] == [("main", "main"), ("replica", "replica")]
        pcp.detach_node(0, gracefully=True)
        assert [(i.role_name, i.pg_role) for i in pcp.node_info()] == [("replica", "replica"), ("main", "main")]
        pcp.attach_node(0)
    node1 = infos[1]
    wait_for("failback_command ran", lambda: record.exists() and "failback" in record.read_text(), 10)
    assert record.read_text().splitlines() == [
        "[failover][0][1][0][-1][][][end]",
        f"[failback][0][0][1][1][{node1.backend_hostname}][{node1.backend_port}][end]",
    ]


def test_a_stop_request_ends_the_primary_search_of_a_failover(pg_cluster_factory: ClusterFactory,
                                                              pgpool_factory: PgpoolFactory) -> None:
    # The primary fails and nothing promotes the standby: main searches for a primary for up
    # to search_primary_node_timeout, and an operator's stop must not wait for that.
    nodes: list[PgNode] = pg_cluster_factory()
    server = pgpool_factory(nodes, extra={**HEALTH, "failover_command": "true", "search_primary_node_timeout": 60})
    nodes[0].stop()
    wait_for("the failover's primary search", lambda: "starting degeneration" in server.log_text(),
             DETECT_BOUND + 5)
    time.sleep(1.5)  # a retry or two of the search, SIGCHLDs of restarted children pending meanwhile
    started = time.monotonic()
    assert server.stop("fast", timeout=10) == 0
    took = time.monotonic() - started
    assert took < 5, f"stopped after {took:.1f} s"
    assert "stopped by a shutdown request" in server.log_text()
