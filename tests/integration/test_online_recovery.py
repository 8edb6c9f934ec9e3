"""
Online recovery (issue 5), against real PostgreSQL clusters.

- The recovery functions (pgpool_py/sql/pgpool_recovery.sql) installed into a real server and
  called directly: the arguments a script gets, a failing script's status and stderr, a
  missing script, a background process left by pgpool_remote_start.
- The whole flow through pgpool-py and PCP (``pcp_recovery_node``, ours and pgpool-II's):
  streaming mode under a client loop, pgpool-II's C extension in place of our functions,
  native replication with its 2nd stage, and every failure path.

Every cluster here is private to its test or module: these tests stop, delete and rebuild nodes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pcp import PcpConnection, PcpError
from pgpool_py.cluster import HOST, SERVER_USER, PgNode, make_server_dir
from pgpool_py.recovery import FUNCTIONS_SQL
from tests.fix_pg import ClusterFactory, _clusters
from tests.fix_pgpool import PgpoolFactory, PgpoolServer

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc"
PGPOOL_II_EXTENSION_SQL = "/usr/share/postgresql/15/extension/pgpool_recovery--1.4.sql"
REAL_PCP_BIN = "/usr/sbin"  # pgpool-II's pcp tools (package pgpool2)
PGPOOL_II = "/usr/sbin/pgpool"  # pgpool-II 4.3 itself (package pgpool2)
PCP_PASSWORD = SERVER_USER  # write_pcp_conf's account
RECOVERY_DB = "postgres"  # recovery_database's default
PCP_TIMEOUT = 120.0
SERVED_TIMEOUT = 10.0  # a new client after a recovery, successful or not


# ---------------------------------------------------------------------- helpers


def install_functions(node: PgNode, dbname: str = RECOVERY_DB) -> None:
    subprocess.run([sys.executable, "-m", "pgpool_py.recovery", "install", "--host", node.host,
                    "--port", str(node.port), "--user", SERVER_USER, "--dbname", dbname],
                   check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


def put_script(node: PgNode, name: str, text: str | None = None) -> None:
    """Put ``text`` (default: etc/<name>) as an executable script in ``node``'s data directory."""
    path = os.path.join(node.datadir, name)
    with open(path, "w") as f:
        f.write(text if text is not None else (ETC / name).read_text())
    os.chmod(path, 0o755)
    shutil.chown(path, SERVER_USER, SERVER_USER)


def _pcp_argv(server: PgpoolServer, tool: str, *args: str, real: bool = False) -> list[str]:
    program = [os.path.join(REAL_PCP_BIN, tool)] if real else [sys.executable, "-m", "pcp", tool]
    return program + ["-h", "127.0.0.1", "-p", str(server.pcp_port), "-U", SERVER_USER, "-w", *args]


def pcp_tool(server: PgpoolServer, tool: str, *args: str, real: bool = False,
             timeout: float = PCP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_pcp_argv(server, tool, *args, real=real), capture_output=True, text=True,
                          timeout=timeout, env=_pcp_env(server), start_new_session=True)


def start_pcp_tool(server: PgpoolServer, tool: str, *args: str, capture: bool = False) -> subprocess.Popen[str]:
    """Our ``tool`` in the background; its output is kept only with ``capture``."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(_pcp_argv(server, tool, *args), stdout=out, stderr=out, text=True,
                            env=_pcp_env(server), start_new_session=True)


def _pcp_env(server: PgpoolServer) -> dict[str, str]:
    return dict(os.environ, PCPPASSFILE=str(server.pcppass_path), PYTHONPATH=str(REPO))


def pool_nodes(server: PgpoolServer) -> dict[int, dict[str, str]]:
    with server.connect() as conn:
        cur = conn.execute("SHOW POOL_NODES")
        names = [d.name for d in cur.description or []]
        return {int(row[0]): dict(zip(names, map(str, row))) for row in cur.fetchall()}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def _holds(condition: Callable[[], bool]) -> bool:
    # A poll that connects while a detach restarts the children gets 57P01: ask again.
    try:
        return condition()
    except psycopg.OperationalError:
        return False


def start_pgpool(pgpool_factory: PgpoolFactory, nodes: list[PgNode], mode: str, program: list[str] | None = None,
                 **extra: str | int | bool) -> PgpoolServer:
    """pgpool-py (or ``program``) with recovery settings, once its PCP server answers too."""
    conf: dict[str, str | int | bool] = {"recovery_user": SERVER_USER, "recovery_password": "",
                                         "recovery_timeout": 30}
    conf.update(extra)
    server = pgpool_factory(nodes, mode=mode, extra=conf, program=program)
    wait_for(lambda: pcp_tool(server, "pcp_node_count").returncode == 0, 10, "the PCP server")
    return server


def detach(server: PgpoolServer, node_id: int) -> None:
    result = pcp_tool(server, "pcp_detach_node", "-n", str(node_id))
    # A session that found the node's server stopped may have degenerated it already.
    assert result.returncode == 0 or "is already down" in result.stderr, result.stderr
    wait_for(lambda: pool_nodes(server)[node_id]["status"] == "down", 10, f"node {node_id} down")


def assert_serves_new_clients(server: PgpoolServer) -> None:
    """A new client is served at once: InRecovery is 0 and the children are awake."""
    started = time.monotonic()
    with server.connect(connect_timeout=int(SERVED_TIMEOUT)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert time.monotonic() - started < SERVED_TIMEOUT / 2


def rows(conninfo: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        return conn.execute(query).fetchall()


# ---------------------------------------------------------------------- the SQL functions


@pytest.fixture(scope="module")
def function_node() -> Iterator[PgNode]:
    """A lone server with the functions installed, and a directory its OS user may write."""
    with _clusters() as build:
        node = build(num_nodes=1, mode="native")[0]
        install_functions(node)
        yield node


@pytest.fixture
def outdir(function_node: PgNode) -> Iterator[str]:
    path = make_server_dir(os.path.join(os.path.dirname(function_node.datadir), f"out-{time.monotonic_ns()}"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _call(node: PgNode, query: str) -> Any:
    with psycopg.connect(node.conninfo(RECOVERY_DB), autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]  # type: ignore[index]


def _signatures(text: str) -> set[str]:
    """``name(type, ...)`` of each CREATE FUNCTION in ``text``."""
    out = set()
    for name, args in re.findall(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\s*\((.*?)\)\s*RETURNS", text, re.S):
        types = [a.split()[-1] for a in args.split(",") if a.strip()]
        out.add(f"{name}({', '.join(types)})")
    return out


@pytest.mark.skipif(not os.path.exists(PGPOOL_II_EXTENSION_SQL), reason="pgpool-II's extension is not installed")
def test_functions_have_the_extensions_names_and_arguments() -> None:
    theirs = {s for s in _signatures(Path(PGPOOL_II_EXTENSION_SQL).read_text())
              if s.startswith(("pgpool_recovery(", "pgpool_remote_start("))}
    ours = _signatures(Path(FUNCTIONS_SQL).read_text())
    assert len(theirs) == 6
    assert theirs <= ours


def test_script_gets_pgpool_arguments_as_server_user_in_data_dir(function_node: PgNode, outdir: str) -> None:
    out = os.path.join(outdir, "args")
    put_script(function_node, "args_script", f'#!/bin/sh\n{{ pwd; id -un; echo $#; printf "%s\\n" "$@"; }} > {out}\n')
    assert _call(function_node, "SELECT pgpool_recovery('args_script', 'host b', '/data/it''s', '5432', 1, '5433', "
                                "'host a')") is True
    lines = Path(out).read_text().splitlines()
    assert lines == [function_node.datadir, SERVER_USER, "7", function_node.datadir, "host b", "/data/it's", "5432",
                     "1", "5433", "host a"]
    # The shorter overloads pass a prefix of the same arguments.
    assert _call(function_node, "SELECT pgpool_recovery('args_script', 'h', '/d', '5432')") is True
    assert Path(out).read_text().splitlines()[2:] == ["4", function_node.datadir, "h", "/d", "5432"]


def test_failing_script_reports_status_and_stderr(function_node: PgNode) -> None:
    put_script(function_node, "failing_script", "#!/bin/sh\necho progress\necho 'no space left on target' >&2\nexit 3\n")
    with pytest.raises(psycopg.errors.RaiseException) as info:
        _call(function_node, "SELECT pgpool_recovery('failing_script', 'h', '/d', '1', 1, '2', 'h')")
    diag = info.value.diag
    assert diag.message_primary == "pgpool_recovery failed"
    assert diag.message_detail == 'script "failing_script" exited with status 3: no space left on target'


def test_missing_script_is_named(function_node: PgNode) -> None:
    with pytest.raises(psycopg.errors.RaiseException) as info:
        _call(function_node, "SELECT pgpool_remote_start('h', '/d')")
    diag = info.value.diag
    assert diag.message_primary == "pgpool_remote_start failed"
    assert diag.message_detail == f'script "{function_node.datadir}/pgpool_remote_start" does not exist'
    assert "data directory" in (diag.message_hint or "")


def test_remote_start_returns_while_its_background_process_runs(function_node: PgNode, outdir: str) -> None:
    marker = os.path.join(outdir, "started")
    put_script(function_node, "pgpool_remote_start",
               f"#!/bin/sh\necho \"$1 $2\" > {marker}\nsleep 30 &\nexit 0\n")
    started = time.monotonic()
    assert _call(function_node, "SELECT pgpool_remote_start('127.0.0.1', '/target')") is True
    assert time.monotonic() - started < 5
    assert Path(marker).read_text() == "127.0.0.1 /target\n"


def test_repeated_calls_in_one_session_and_one_transaction(function_node: PgNode) -> None:
    put_script(function_node, "ok_script", "#!/bin/sh\necho fine\n")
    with psycopg.connect(function_node.conninfo(RECOVERY_DB), autocommit=True) as conn:
        for _ in range(3):
            assert conn.execute("SELECT pgpool_recovery('ok_script', 'h', '/d')").fetchone() == (True,)
        with conn.transaction():
            for _ in range(2):
                assert conn.execute("SELECT pgpool_recovery('ok_script', 'h', '/d')").fetchone() == (True,)


def test_install_command_is_idempotent_and_print_sql(function_node: PgNode) -> None:
    install_functions(function_node)  # a second time: CREATE OR REPLACE
    printed = subprocess.run([sys.executable, "-m", "pgpool_py.recovery", "print-sql"], check=True,
                             capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    assert printed == Path(FUNCTIONS_SQL).read_text()
    failed = subprocess.run([sys.executable, "-m", "pgpool_py.recovery", "install", "--port",
                             str(function_node.port), "--dbname", "no_such_db"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert failed.returncode == 1
    assert "could not install the recovery functions" in failed.stderr and "no_such_db" in failed.stderr


# ---------------------------------------------------------------------- the whole flow: streaming


class ClientLoop(threading.Thread):
    """Writes and reads through pgpool, one new connection per row, until stopped."""

    def __init__(self, server: PgpoolServer, bound: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.bound = bound
        self.acked: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.bound
        i = 0
        while not self.stopping.is_set() and time.monotonic() < deadline:
            i += 1
            try:
                with self.server.connect() as conn:
                    conn.execute("INSERT INTO acked VALUES (%s)", (i,))
                    conn.commit()
                    self.acked.append(i)
                    # A read may be balanced to a standby that has not replayed the row yet.
                    count = conn.execute("SELECT count(*) FROM acked").fetchone()
                    assert count is not None and count[0] > 0, count
            except Exception as exc:  # every failure counts, whatever its kind
                self.errors.append(f"row {i}: {exc!r}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def _streaming_setup(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory
                     ) -> tuple[list[PgNode], PgpoolServer]:
    nodes = pg_cluster_factory(num_nodes=2, mode="streaming")
    install_functions(nodes[0])
    put_script(nodes[0], "recovery_1st_stage")
    put_script(nodes[0], "pgpool_remote_start")
    server = start_pgpool(pgpool_factory, nodes, "streaming", recovery_1st_stage_command="recovery_1st_stage")
    return nodes, server


@pytest.mark.parametrize("real_tool", [False, True], ids=["pcp-py", "pgpool2-pcp_recovery_node"])
def test_streaming_recovery_under_client_load(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory,
                                              real_tool: bool) -> None:
    if real_tool and not os.path.exists(os.path.join(REAL_PCP_BIN, "pcp_recovery_node")):
        pytest.skip("pgpool-II's pcp_recovery_node (package pgpool2) is not installed")
    nodes, server = _streaming_setup(pg_cluster_factory, pgpool_factory)
    server.psql("CREATE TABLE acked (id int PRIMARY KEY)")
    standby = nodes[1]
    standby.stop()
    shutil.rmtree(standby.datadir)
    detach(server, 1)

    loop = ClientLoop(server)
    loop.start()
    try:
        wait_for(lambda: len(loop.acked) >= 5 or bool(loop.errors), 30, "the client loop to write")
        result = pcp_tool(server, "pcp_recovery_node", "-n", "1", real=real_tool)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "pcp_recovery_node -- Command Successful" in result.stdout
        written = len(loop.acked)
        wait_for(lambda: len(loop.acked) >= written + 5 or bool(loop.errors), 30, "writes after the recovery")
    finally:
        loop.stop()
    assert loop.errors == []

    node = pool_nodes(server)[1]
    assert node["status"] in ("up", "waiting")  # "waiting" until a session first uses the node
    assert node["role"] == "standby"
    assert standby.is_running()
    assert standby.psql("SELECT pg_is_in_recovery()") == "t"
    want = sorted(loop.acked)
    wait_for(lambda: [r[0] for r in rows(standby.conninfo("test"), "SELECT id FROM acked ORDER BY id")] == want,
             30, "every acknowledged row on the recovered node")
    assert nodes[0].psql("SELECT application_name FROM pg_stat_replication", "postgres") == "server1"


@pytest.mark.skipif(not os.path.exists(PGPOOL_II_EXTENSION_SQL), reason="pgpool-II's extension is not installed")
def test_pgpool_II_c_extension_serves_too(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory) -> None:
    nodes = pg_cluster_factory(num_nodes=2, mode="streaming")
    nodes[0].psql("CREATE EXTENSION pgpool_recovery", RECOVERY_DB)
    put_script(nodes[0], "recovery_1st_stage")
    put_script(nodes[0], "pgpool_remote_start")
    server = start_pgpool(pgpool_factory, nodes, "streaming", recovery_1st_stage_command="recovery_1st_stage")
    nodes[1].stop()
    shutil.rmtree(nodes[1].datadir)
    detach(server, 1)
    result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert pool_nodes(server)[1]["status"] in ("up", "waiting")
    assert nodes[1].psql("SELECT pg_is_in_recovery()") == "t"


# ---------------------------------------------------------------------- the whole flow: native replication


def _native_setup(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory, second_stage: str,
                  first_stage: str | None = None, **extra: str | int | bool
                  ) -> tuple[list[PgNode], PgpoolServer, str]:
    """
    Native cluster, scripts in node 0, node 1 detached and stopped; returns the 2nd-stage marker
    path.  ``first_stage``: the body of a 1st-stage script to run instead of the sample (its
    $1 is node 0's data directory, whose parent holds the markers).
    """
    nodes = pg_cluster_factory(num_nodes=2, mode="native")
    install_functions(nodes[0])
    for name in ("replication_mode_recovery_1st_stage", "replication_mode_recovery_2nd_stage",
                 "pgpool_remote_start"):
        put_script(nodes[0], name)
    marker = os.path.join(os.path.dirname(nodes[0].datadir), "2nd_stage_started")
    put_script(nodes[0], "test_2nd_stage", f"#!/bin/sh\ntouch {marker}\n{second_stage}\n")
    first = "replication_mode_recovery_1st_stage"
    if first_stage is not None:
        first = "test_1st_stage"
        put_script(nodes[0], first, f"#!/bin/sh\n{first_stage}\n")
    server = start_pgpool(pgpool_factory, nodes, "native", recovery_1st_stage_command=first,
                          recovery_2nd_stage_command="test_2nd_stage", **extra)
    detach(server, 1)
    nodes[1].stop()
    return nodes, server, marker


def test_native_recovery_holds_new_clients_during_2nd_stage(pg_cluster_factory: ClusterFactory,
                                                            pgpool_factory: PgpoolFactory) -> None:
    nodes, server, marker = _native_setup(pg_cluster_factory, pgpool_factory,
                                          'sleep 3\nexec "$1/replication_mode_recovery_2nd_stage" "$@"')
    server.psql("CREATE TABLE t (id int PRIMARY KEY, note text)")
    server.psql("INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g")

    recovery = start_pcp_tool(server, "pcp_recovery_node", "-n", "1", capture=True)
    try:
        wait_for(lambda: os.path.exists(marker), 60, "the 2nd stage")
        stage2 = time.monotonic()
        served: list[float] = []
        counted: list[int] = []

        def newcomer() -> None:
            with server.connect(connect_timeout=60) as conn:
                row = conn.execute("SELECT count(*) FROM t").fetchone()
                served.append(time.monotonic())
                counted.append(row[0] if row else -1)

        client = threading.Thread(target=newcomer, daemon=True)
        client.start()
        out, err = recovery.communicate(timeout=PCP_TIMEOUT)
        done = time.monotonic()
        client.join(30)
    finally:
        if recovery.poll() is None:
            recovery.kill()
            recovery.wait()
    assert recovery.returncode == 0, out + err
    assert counted == [100]
    # Held in the listen backlog through the 3 s 2nd stage, served once recovery ended.
    assert served and served[0] - stage2 >= 2.5 and served[0] >= done - 1.0

    query = "SELECT id, note FROM t ORDER BY id"
    assert rows(nodes[1].conninfo("test"), query) == rows(nodes[0].conninfo("test"), query)
    assert nodes[1].psql("SELECT pg_is_in_recovery()") == "f"
    # pgpool-II's log lines, for scripts that watch them.
    log_text = server.log_text()
    assert "LOG:  node recovery, starting 2nd stage\n" in log_text
    assert re.search(r"LOG:  executing recovery\n[^\n]*DETAIL:  starting recovery command: "
                     r"\"SELECT pgpool_recovery\('test_2nd_stage', ", log_text)
    assert re.search(r"LOG:  node recovery\n[^\n]*DETAIL:  CHECKPOINT in the 2nd stage done\n", log_text)
    assert pool_nodes(server)[1]["status"] in ("up", "waiting")
    assert_serves_new_clients(server)


def test_native_recovery_keeps_sequences_equal(pg_cluster_factory: ClusterFactory,
                                               pgpool_factory: PgpoolFactory) -> None:
    # PostgreSQL writes a sequence to WAL up to 32 values ahead of the one it hands out.  A
    # nextval after the copy's base backup reaches the copy in that form: unless the 2nd stage
    # first puts each sequence's real value into WAL, the recovered node hands out other ids.
    nodes, server, _marker = _native_setup(
        pg_cluster_factory, pgpool_factory, 'exec "$1/replication_mode_recovery_2nd_stage" "$@"',
        first_stage='"$1/replication_mode_recovery_1st_stage" "$@" || exit\n'
                    'touch "$1/../copied"\n'
                    'i=0; while [ ! -e "$1/../written" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done')
    copied, written = (os.path.join(os.path.dirname(nodes[0].datadir), name) for name in ("copied", "written"))
    server.psql("CREATE TABLE t (id serial PRIMARY KEY, note text)")
    # Every database: one whose name needs quoting, with a sequence used outside pgpool.
    nodes[0].psql('CREATE DATABASE "it\'s a db"')
    other = "'it\\'s a db'"  # as conninfo quotes it
    nodes[0].psql("CREATE SEQUENCE s; SELECT nextval('s')", other)
    with server.connect(autocommit=True) as early:
        early.execute("INSERT INTO t (note) SELECT 'before' FROM generate_series(1, 5)")
        recovery = start_pcp_tool(server, "pcp_recovery_node", "-n", "1", capture=True)
        try:
            wait_for(lambda: os.path.exists(copied), 60, "the 1st stage's copy")
            # A client of before the 2nd stage may still write; it leaves, so the 2nd stage can start.
            early.execute("INSERT INTO t (note) SELECT 'after the copy' FROM generate_series(1, 3)")
            nodes[0].psql("CHECKPOINT; SELECT nextval('s')", other)
        finally:
            Path(written).touch()
    try:
        out, err = recovery.communicate(timeout=PCP_TIMEOUT)
    finally:
        if recovery.poll() is None:
            recovery.kill()
            recovery.wait()
    assert recovery.returncode == 0, out + err
    wait_for(lambda: pool_nodes(server)[1]["status"] in ("up", "waiting"), 30, "node 1 attached")
    server.psql("INSERT INTO t (note) SELECT 'after the recovery' FROM generate_series(1, 3)")

    query = "SELECT id, note FROM t ORDER BY id"
    want = [(i, "before") for i in range(1, 6)] + [(i, "after the copy") for i in range(6, 9)] \
        + [(i, "after the recovery") for i in range(9, 12)]
    assert rows(nodes[0].conninfo("test"), query) == want
    assert rows(nodes[1].conninfo("test"), query) == want
    # The sequences end equal: the next ids agree too.
    seq = "SELECT last_value, is_called FROM t_id_seq"
    assert rows(nodes[1].conninfo("test"), seq) == rows(nodes[0].conninfo("test"), seq) == [(11, True)]
    assert [node.psql("SELECT nextval('s')", other) for node in nodes] == ["3", "3"]


def test_native_idle_client_ended_per_client_idle_limit_in_recovery(pg_cluster_factory: ClusterFactory,
                                                                    pgpool_factory: PgpoolFactory) -> None:
    nodes, server, marker = _native_setup(pg_cluster_factory, pgpool_factory,
                                          'exec "$1/replication_mode_recovery_2nd_stage" "$@"',
                                          client_idle_limit_in_recovery=2, recovery_timeout=20)
    with server.connect(autocommit=True) as idle:
        idle.execute("SELECT 1")
        result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        with pytest.raises(psycopg.OperationalError, match="client_idle_limit_in_recovery:2 is reached"):
            idle.execute("SELECT 1")
    # The 2nd stage began once the idle client was ended, not after recovery_timeout.
    assert "existing connections did not close" not in server.log_text()
    assert_serves_new_clients(server)


def test_native_idle_limit_in_recovery_counts_from_the_2nd_stage(pg_cluster_factory: ClusterFactory,
                                                                 pgpool_factory: PgpoolFactory) -> None:
    # pgpool-II counts only the idle time spent in the 2nd stage (idle_count_in_recovery): a
    # client idle since before the recovery gets the whole limit from the 2nd stage's start.
    nodes, server, _marker = _native_setup(
        pg_cluster_factory, pgpool_factory, 'exec "$1/replication_mode_recovery_2nd_stage" "$@"',
        first_stage='sleep 4\n"$1/replication_mode_recovery_1st_stage" "$@" || exit\ntouch "$1/../copied"',
        client_idle_limit_in_recovery=3, recovery_timeout=20)
    copied = os.path.join(os.path.dirname(nodes[0].datadir), "copied")
    with server.connect(autocommit=True) as idle:
        idle.execute("SELECT 1")
        recovery = start_pcp_tool(server, "pcp_recovery_node", "-n", "1", capture=True)
        try:
            wait_for(lambda: os.path.exists(copied), 60, "the end of the 1st stage")
            stage2 = time.monotonic()
            time.sleep(1)
            # Idle for 5 s and more, but for 1 s only in the 2nd stage: still served.
            assert idle.execute("SELECT 2").fetchone() == (2,)
            out, err = recovery.communicate(timeout=PCP_TIMEOUT)
        finally:
            if recovery.poll() is None:
                recovery.kill()
                recovery.wait()
        assert recovery.returncode == 0, out + err
        # Then ended once idle for the limit, which let the recovery go on.
        assert time.monotonic() - stage2 >= 3.5
        with pytest.raises(psycopg.OperationalError, match="client_idle_limit_in_recovery:3 is reached"):
            idle.execute("SELECT 1")
    assert_serves_new_clients(server)


def permanent_slots(node: PgNode) -> list[str]:
    """Replication slots that keep WAL on ``node`` until someone drops them."""
    return [r[0] for r in rows(node.conninfo(), "SELECT slot_name FROM pg_replication_slots WHERE NOT temporary")]


def _recover_native_again(server: PgpoolServer, nodes: list[PgNode]) -> None:
    """A recovery with the sample scripts succeeds and node 1 ends a copy of node 0, with no slot left."""
    put_script(nodes[0], "test_2nd_stage", '#!/bin/sh\nexec "$1/replication_mode_recovery_2nd_stage" "$@"\n')
    server.psql("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
    server.psql("INSERT INTO t SELECT coalesce(max(id), 0) + 1 FROM t")
    result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    query = "SELECT id FROM t ORDER BY id"
    assert rows(nodes[1].conninfo("test"), query) == rows(nodes[0].conninfo("test"), query) != []
    assert permanent_slots(nodes[0]) == []


def test_native_failing_2nd_stage_releases_clients(pg_cluster_factory: ClusterFactory,
                                                   pgpool_factory: PgpoolFactory) -> None:
    nodes, server, marker = _native_setup(pg_cluster_factory, pgpool_factory,
                                          "echo 'cannot sync the target' >&2\nexit 4")
    result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'execution of command failed at "2nd stage"' in result.stderr
    assert 'script "test_2nd_stage" exited with status 4: cannot sync the target' in result.stderr
    assert os.path.exists(marker)
    assert_serves_new_clients(server)
    assert pool_nodes(server)[1]["status"] == "down"
    # No slot keeps WAL on the source for ever; the next recovery starts afresh.
    assert permanent_slots(nodes[0]) == []
    _recover_native_again(server, nodes)


def test_native_sample_scripts_clean_up_when_they_fail(pg_cluster_factory: ClusterFactory,
                                                       pgpool_factory: PgpoolFactory) -> None:
    # The samples themselves fail: the copy cannot start (its port is taken), then cannot be
    # reached to follow its replay.  Each time no slot and no server is left behind.
    nodes, server, marker = _native_setup(
        pg_cluster_factory, pgpool_factory, 'exec "$1/replication_mode_recovery_2nd_stage" "$@"',
        first_stage='exec "$1/replication_mode_recovery_1st_stage" "$1" "$2" "$3" "$4" "$5" "$4" "$7"')
    result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'execution of command failed at "1st stage"' in result.stderr
    assert not os.path.exists(marker)
    assert not nodes[1].is_running()
    assert permanent_slots(nodes[0]) == []

    put_script(nodes[0], "test_1st_stage", '#!/bin/sh\nexec "$1/replication_mode_recovery_1st_stage" "$@"\n')
    put_script(nodes[0], "test_2nd_stage", f'#!/bin/sh\ntouch {marker}\nCATCH_UP_TIMEOUT=1 exec '
                                           '"$1/replication_mode_recovery_2nd_stage" "$1" "$2" "$3" "$4" "$5" 1 "$7"\n')
    result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'execution of command failed at "2nd stage"' in result.stderr
    assert "the copy did not reach" in result.stderr
    assert not nodes[1].is_running()
    # The standby's temporary slot went with its connection.
    wait_for(lambda: rows(nodes[0].conninfo(), "SELECT slot_name FROM pg_replication_slots") == [], 10,
             "no slot on node 0")
    _recover_native_again(server, nodes)


def test_native_clients_that_stay_fail_the_recovery_and_leave_no_slot(pg_cluster_factory: ClusterFactory,
                                                                      pgpool_factory: PgpoolFactory) -> None:
    nodes, server, marker = _native_setup(pg_cluster_factory, pgpool_factory,
                                          'exec "$1/replication_mode_recovery_2nd_stage" "$@"',
                                          client_idle_limit_in_recovery=0, recovery_timeout=2)
    with server.connect(autocommit=True) as staying:
        staying.execute("SELECT 1")
        result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "node recovery failed, waiting connection closed in the other pgpools timeout" in result.stderr
    assert not os.path.exists(marker)  # the 2nd stage never ran
    assert permanent_slots(nodes[0]) == []
    _recover_native_again(server, nodes)


def test_dropped_pcp_connection_still_finishes_recovery(pg_cluster_factory: ClusterFactory,
                                                        pgpool_factory: PgpoolFactory) -> None:
    nodes, server, marker = _native_setup(pg_cluster_factory, pgpool_factory,
                                          'sleep 2\nexec "$1/replication_mode_recovery_2nd_stage" "$@"')
    recovery = start_pcp_tool(server, "pcp_recovery_node", "-n", "1")
    try:
        wait_for(lambda: os.path.exists(marker), 60, "the 2nd stage")
    finally:
        recovery.kill()
        recovery.wait()
    # The worker finishes the recovery alone; then InRecovery is 0 again.
    wait_for(lambda: nodes[1].is_running(), 60, "the recovered node to start")
    with server.connect(connect_timeout=60) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    wait_for(lambda: pool_nodes(server)[1]["status"] in ("up", "waiting"), 30, "node 1 attached")
    assert_serves_new_clients(server)


# ---------------------------------------------------------------------- failure paths (streaming)


@pytest.fixture(scope="module")
def failure_cluster() -> Iterator[list[PgNode]]:
    """Primary + standby; node 0 has the functions, a no-op pgpool_remote_start and test scripts."""
    with _clusters() as build:
        nodes = build(num_nodes=2, mode="streaming")
        install_functions(nodes[0])
        put_script(nodes[0], "pgpool_remote_start", "#!/bin/sh\nexit 0\n")
        put_script(nodes[0], "ok_1st_stage", "#!/bin/sh\nexit 0\n")
        put_script(nodes[0], "failing_1st_stage", "#!/bin/sh\necho 'target disk is full' >&2\nexit 3\n")
        yield nodes


def _recover_and_fail(failure_cluster: list[PgNode], pgpool_factory: PgpoolFactory, *, detach_first: bool = True,
                      **extra: str | int | bool) -> tuple[PgpoolServer, str]:
    server = start_pgpool(pgpool_factory, failure_cluster, "streaming", **extra)
    if detach_first:
        detach(server, 1)
    result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert_serves_new_clients(server)
    return server, result.stderr


def test_recovering_a_live_node_is_refused(failure_cluster: list[PgNode], pgpool_factory: PgpoolFactory) -> None:
    server, err = _recover_and_fail(failure_cluster, pgpool_factory, detach_first=False,
                                    recovery_1st_stage_command="ok_1st_stage")
    assert err.startswith("ERROR:  node recovery failed, node id: 1 is alive\nDETAIL:  node 1 is ")
    assert 'HINT:  detach it with "pcp_detach_node -n 1"' in err
    assert pool_nodes(server)[1]["status"] in ("up", "waiting")


def test_missing_script(failure_cluster: list[PgNode], pgpool_factory: PgpoolFactory) -> None:
    server, err = _recover_and_fail(failure_cluster, pgpool_factory, recovery_1st_stage_command="no_such_script")
    assert 'execution of command failed at "1st stage"' in err
    assert f'script "{failure_cluster[0].datadir}/no_such_script" does not exist' in err
    assert pool_nodes(server)[1]["status"] == "down"


def test_failing_script(failure_cluster: list[PgNode], pgpool_factory: PgpoolFactory) -> None:
    server, err = _recover_and_fail(failure_cluster, pgpool_factory, recovery_1st_stage_command="failing_1st_stage")
    assert 'script "failing_1st_stage" exited with status 3: target disk is full' in err
    assert pool_nodes(server)[1]["status"] == "down"


def test_missing_recovery_functions(failure_cluster: list[PgNode], pgpool_factory: PgpoolFactory) -> None:
    # The functions are in "postgres" only.
    _server, err = _recover_and_fail(failure_cluster, pgpool_factory, recovery_1st_stage_command="ok_1st_stage",
                                     recovery_database="template1")
    assert 'the recovery functions are not installed in database "template1" of node 0' in err
    assert "python -m pgpool_py.recovery install" in err


def test_recovery_database_not_set_looks_in_postgres_then_template1(pg_cluster_factory: ClusterFactory,
                                                                    pgpool_factory: PgpoolFactory) -> None:
    # pgpool-II 4.3 has no recovery_database and runs the functions in template1; its
    # pgpool.conf must work as it is.
    nodes = pg_cluster_factory(num_nodes=2, mode="streaming")
    put_script(nodes[0], "pgpool_remote_start", "#!/bin/sh\nexit 0\n")
    put_script(nodes[0], "ok_1st_stage", "#!/bin/sh\nexit 0\n")
    server = start_pgpool(pgpool_factory, nodes, "streaming", recovery_1st_stage_command="ok_1st_stage")
    detach(server, 1)

    failed = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert 'execution of command failed at "1st stage"' in failed.stderr
    assert 'the recovery functions are not installed in database "postgres" or "template1" of node 0' \
        in failed.stderr

    install_functions(nodes[0], "template1")
    result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: pool_nodes(server)[1]["status"] in ("up", "waiting"), 30, "node 1 attached")
    assert "SELECT pgpool_recovery('ok_1st_stage'" in server.log_text()
    assert 'recovery_database is not set: the recovery functions of node 0 are in database "template1"' \
        in server.log_text()


def test_postmaster_not_up_within_recovery_timeout(failure_cluster: list[PgNode],
                                                   pgpool_factory: PgpoolFactory) -> None:
    standby = failure_cluster[1]
    standby.stop()
    try:
        started = time.monotonic()
        server, err = _recover_and_fail(failure_cluster, pgpool_factory, recovery_1st_stage_command="ok_1st_stage",
                                        recovery_timeout=2)
        # pgpool-II's wait: 4 tries 3 s apart, then recovery_timeout / 3 (here 0) more.
        assert 12 <= time.monotonic() - started < 30
        assert err.startswith("ERROR:  recovery is checking if postmaster is started\n")
        assert "failed to start in 12 second (recovery_timeout 2)" in err
        assert pool_nodes(server)[1]["status"] == "down"
    finally:
        standby.start()


def test_postmaster_gets_as_long_to_start_as_with_pgpool_II(failure_cluster: list[PgNode],
                                                            pgpool_factory: PgpoolFactory) -> None:
    # pgpool-II tries the recovered node 4 times 3 s apart, then recovery_timeout / 3 + 1 times
    # more: with recovery_timeout = 3 a node that takes 6 s to start is recovered.
    primary, standby = failure_cluster
    standby.stop()
    start = f"sleep 6; exec {standby.bin_dir}/pg_ctl -D {standby.datadir} -l {standby.log_path} -w start"
    put_script(primary, "pgpool_remote_start", f"#!/bin/sh\nnohup sh -c '{start}' >/dev/null 2>&1 &\n")
    try:
        server = start_pgpool(pgpool_factory, failure_cluster, "streaming",
                              recovery_1st_stage_command="ok_1st_stage", recovery_timeout=3)
        detach(server, 1)
        started = time.monotonic()
        result = pcp_tool(server, "pcp_recovery_node", "-n", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert 6 <= time.monotonic() - started < 15
        wait_for(lambda: pool_nodes(server)[1]["status"] in ("up", "waiting"), 30, "node 1 attached")
    finally:
        put_script(primary, "pgpool_remote_start", "#!/bin/sh\nexit 0\n")
        wait_for(standby.is_running, 30, "the standby to run again")


def _process_with_title(title: str) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if title.encode() in f.read():
                        return int(entry)
            except OSError:
                continue
    return None


def test_killed_recovery_worker_does_not_block_later_recoveries(failure_cluster: list[PgNode],
                                                                pgpool_factory: PgpoolFactory) -> None:
    marker = os.path.join(failure_cluster[0].datadir, "slow_stage_done")
    # Slow the first time only (the script runs in the data directory).
    put_script(failure_cluster[0], "slow_once_1st_stage",
               "#!/bin/sh\nif [ ! -e slow_stage_done ]; then touch slow_stage_done; sleep 15; fi\nexit 0\n")
    try:
        server = start_pgpool(pgpool_factory, failure_cluster, "streaming",
                              recovery_1st_stage_command="slow_once_1st_stage")
        detach(server, 1)
        first = start_pcp_tool(server, "pcp_recovery_node", "-n", "1")
        try:
            wait_for(lambda: os.path.exists(marker), 30, "the 1st stage to start")
            worker = _process_with_title("PCP: processing recovery request")
            assert worker is not None
            os.kill(worker, signal.SIGKILL)
        finally:
            first.wait(30)
        wait_for(lambda: "died during online recovery" in server.log_text(), 10, "the PCP server to clean up")
        second = pcp_tool(server, "pcp_recovery_node", "-n", "1")
        assert second.returncode == 0, second.stderr
        wait_for(lambda: pool_nodes(server)[1]["status"] in ("up", "waiting"), 30, "node 1 attached")
        assert_serves_new_clients(server)
    finally:
        failure_cluster[0].psql("SELECT 1")  # the node still serves
        if os.path.exists(marker):
            os.unlink(marker)


# ---------------------------------------------------------------------- pgpool-II's own messages


needs_pgpool_II = pytest.mark.skipif(not os.path.exists(PGPOOL_II), reason="pgpool-II 4.3 (package pgpool2)")


def pcp_connection(server: PgpoolServer) -> PcpConnection:
    return PcpConnection(HOST, server.pcp_port, SERVER_USER, PCP_PASSWORD, connect_timeout=5, timeout=PCP_TIMEOUT)


def recovery_error(server: PgpoolServer) -> PcpError:
    with pcp_connection(server) as conn:
        with pytest.raises(PcpError) as info:
            conn.recovery_node(1)
    return info.value


def side_by_side(pgpool_factory: PgpoolFactory, nodes: list[PgNode], mode: str,
                 cause: Callable[[PgpoolServer], PcpError] = recovery_error,
                 **extra: str | int | bool) -> tuple[PcpError, PcpError]:
    """The error of a failed recovery of node 1 from pgpool-II, then from pgpool-py, set up alike."""
    errors = []
    for program in ([PGPOOL_II], None):
        server = start_pgpool(pgpool_factory, nodes, mode, program=program, **extra)
        errors.append(cause(server))
        server.stop("fast")
    return errors[0], errors[1]


def detached(then: Callable[[PgpoolServer], PcpError] = recovery_error) -> Callable[[PgpoolServer], PcpError]:
    def cause(server: PgpoolServer) -> PcpError:
        detach(server, 1)
        return then(server)
    return cause


def while_another_runs(server: PgpoolServer) -> PcpError:
    """The error of a recovery asked for while a slow one runs (which then ends as it may)."""
    detach(server, 1)
    # After a failover pgpool-II restarts its PCP process, which accepts nothing more until its
    # workers end: let that happen first.
    time.sleep(3)
    first = start_pcp_tool(server, "pcp_recovery_node", "-n", "1")
    try:
        time.sleep(1.5)  # the 1st stage sleeps 4 s
        return recovery_error(server)
    finally:
        first.wait(PCP_TIMEOUT)


def with_a_client_that_stays(server: PgpoolServer) -> PcpError:
    detach(server, 1)
    with server.connect(autocommit=True) as staying:
        staying.execute("SELECT 1")
        return recovery_error(server)


@pytest.fixture(scope="module")
def message_cluster() -> Iterator[list[PgNode]]:
    """Primary + running standby; the functions in template1 (where pgpool-II 4.3 calls them), test
    scripts in node 0, and no pgpool_remote_start."""
    with _clusters() as build:
        nodes = build(num_nodes=2, mode="streaming")
        install_functions(nodes[0], "template1")
        put_script(nodes[0], "ok_1st_stage", "#!/bin/sh\nexit 0\n")
        put_script(nodes[0], "slow_1st_stage", "#!/bin/sh\nsleep 4\n")
        put_script(nodes[0], "failing_1st_stage", "#!/bin/sh\necho 'target disk is full' >&2\nexit 3\n")
        yield nodes


@needs_pgpool_II
@pytest.mark.parametrize(("cause", "extra", "same_detail"), [
    (recovery_error, {}, False),  # node 1 is up
    (recovery_error, {"backend_clustering_mode": "raw"}, True),
    (detached(), {"recovery_user": "no_such_user"}, False),
    (detached(), {"recovery_1st_stage_command": "failing_1st_stage"}, False),
    (detached(), {"recovery_1st_stage_command": "ok_1st_stage"}, False),  # no pgpool_remote_start
    (while_another_runs, {"recovery_1st_stage_command": "slow_1st_stage"}, True),
], ids=["alive", "raw-mode", "cannot-connect", "1st-stage", "remote-start", "another-recovery"])
def test_errors_are_pgpool_IIs(message_cluster: list[PgNode], pgpool_factory: PgpoolFactory,
                               cause: Callable[[PgpoolServer], PcpError], extra: dict[str, str | int | bool],
                               same_detail: bool) -> None:
    # Ours add a detail where pgpool-II has none, and a hint; where its detail says what failed,
    # it is the same too.
    theirs, ours = side_by_side(pgpool_factory, message_cluster, "streaming", cause, **extra)
    assert (ours.severity, ours.message) == (theirs.severity, theirs.message)
    if same_detail:
        assert ours.detail == theirs.detail


@needs_pgpool_II
def test_native_errors_are_pgpool_IIs(pg_cluster_factory: ClusterFactory, pgpool_factory: PgpoolFactory) -> None:
    nodes = pg_cluster_factory(num_nodes=2, mode="native")
    install_functions(nodes[0], "template1")
    put_script(nodes[0], "ok_1st_stage", "#!/bin/sh\nexit 0\n")
    nodes[0].psql("CREATE ROLE plain LOGIN")
    native = {"recovery_1st_stage_command": "ok_1st_stage", "recovery_timeout": 3}
    # CHECKPOINT needs a superuser (or pg_checkpoint).
    theirs, ours = side_by_side(pgpool_factory, nodes, "native", detached(), recovery_user="plain", **native)
    assert (ours.severity, ours.message) == (theirs.severity, theirs.message)
    assert ours.message == "executing recovery, execute CHECKPOINT failed"
    theirs, ours = side_by_side(pgpool_factory, nodes, "native", with_a_client_that_stays, **native)
    assert (ours.severity, ours.message) == (theirs.severity, theirs.message)
    assert ours.message == "node recovery failed, waiting connection closed in the other pgpools timeout"
