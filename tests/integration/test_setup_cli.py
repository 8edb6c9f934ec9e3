"""pgpool-py-setup (``python -m pgpool_py.cluster``): what it builds works with pgpool-II's own tools,
and its recovery and failover scripts are wired to the cluster it builds."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgpool_py.cluster import SERVER_USER, find_pg_bin, free_port, run_as_server_user, run_psql
from tests.fix_pgpool import _group_members

REPO = Path(__file__).resolve().parents[2]
# startall and shutdownall `cd /`: pgpool_py must be importable from there without an install.
ENV = dict(os.environ, PYTHONPATH=str(REPO))
PCP_TIMEOUT = 15.0


@pytest.fixture
def setup_dir() -> Iterator[Path]:
    # Under /tmp, not tmp_path: the PostgreSQL servers may run as the postgres user.
    parent = Path(tempfile.mkdtemp(prefix="pgpool-py-setup-", dir="/tmp"))
    parent.chmod(0o755)
    directory = parent / "cluster"
    yield directory
    if (directory / "shutdownall").exists():
        subprocess.run([str(directory / "shutdownall")], capture_output=True, check=True, env=ENV)
    subprocess.run(["rm", "-rf", str(parent)], check=True)


def _conf(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return {k: v.strip("'") for k, v in (line.split(" = ", 1) for line in lines)}


def _pcp_node_info(port: str, node_id: int, pcppass: Path) -> list[str]:
    cmd = ["/usr/sbin/pcp_node_info", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-w", str(node_id)]
    env = dict(os.environ, PCPPASSFILE=str(pcppass))
    deadline = time.monotonic() + PCP_TIMEOUT
    while (info := subprocess.run(cmd, capture_output=True, text=True, env=env)).returncode != 0:
        assert time.monotonic() < deadline, info.stderr
        time.sleep(0.2)
    return info.stdout.split()


def test_setup_builds_a_cluster_that_pgpool_ii_serves(setup_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pgpool_py.cluster", "-n", "2", str(setup_dir)],
                         capture_output=True, text=True, check=True).stdout
    conf = _conf(setup_dir / "pgpool.conf")
    assert f"psql -h 127.0.0.1 -p {conf['port']} -U postgres test" in out
    assert (setup_dir / "README.port").read_text() == out
    # pcp.conf holds what pgpool-II's pg_md5 makes of the password.
    md5 = subprocess.run(["/usr/sbin/pg_md5", "postgres"], capture_output=True, text=True, check=True).stdout.strip()
    assert (setup_dir / "pcp.conf").read_text() == f"postgres:{md5}\n"

    pcppass = setup_dir / "pcppass"
    assert f"PCPPASSFILE={pcppass} pcp_node_info -h 127.0.0.1 -p {conf['pcp_port']} -U postgres -w 0" in out
    pgpool = subprocess.Popen(
        ["/usr/sbin/pgpool", "-n", "-f", str(setup_dir / "pgpool.conf"), "-F", str(setup_dir / "pcp.conf"),
         "-a", str(setup_dir / "pool_hba.conf")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        fields = _pcp_node_info(conf["pcp_port"], 1, pcppass)
        assert fields[:2] == ["127.0.0.1", conf["backend_port1"]]
        assert fields[6] == "standby"
        pgpool.send_signal(signal.SIGINT)
        pgpool.wait(10)
    finally:
        if _group_members(pgpool.pid):
            os.killpg(pgpool.pid, signal.SIGKILL)
        pgpool.wait()

    subprocess.run([str(setup_dir / "shutdownall")], capture_output=True, check=True, env=ENV)
    assert not (setup_dir / "data0" / "postmaster.pid").exists()
    assert not (setup_dir / "data1" / "postmaster.pid").exists()


def test_setup_native_mode_with_base_port(setup_dir: Path) -> None:
    # Ports as pgpool_setup lays them out: pgpool, PCP, then one per node.
    base = free_port()
    subprocess.run([sys.executable, "-m", "pgpool_py.cluster", "-m", "n", "-n", "1", "-p", str(base),
                    str(setup_dir)], capture_output=True, check=True)
    conf = _conf(setup_dir / "pgpool.conf")
    assert conf["backend_clustering_mode"] == "native_replication"
    assert (conf["port"], conf["pcp_port"], conf["backend_port0"]) == (str(base), str(base + 1), str(base + 2))
    assert "backend_port1" not in conf
    # Online recovery is wired to the node: scripts in its data directory, functions in its database.
    assert (conf["recovery_user"], conf["recovery_database"]) == ("postgres", "postgres")
    assert conf["recovery_1st_stage_command"] == "replication_mode_recovery_1st_stage"
    assert conf["recovery_2nd_stage_command"] == "replication_mode_recovery_2nd_stage"
    assert "failover_command" not in conf  # etc/failover.sh promotes a standby: streaming only
    for name in ("replication_mode_recovery_1st_stage", "replication_mode_recovery_2nd_stage", "pgpool_remote_start"):
        script = setup_dir / "data0" / name
        assert script.read_text() == (REPO / "etc" / name).read_text()
        assert os.access(script, os.X_OK) and script.owner() == SERVER_USER
    functions = run_psql(f"host=127.0.0.1 port={base + 2} user=postgres dbname=postgres",
                         "SELECT string_agg(DISTINCT proname, ',' ORDER BY proname) FROM pg_proc"
                         " WHERE proname IN ('pgpool_recovery', 'pgpool_remote_start')")
    assert functions == "pgpool_recovery,pgpool_remote_start"


# ---------------------------------------------------------------------- a lost standby, recovered


def _wait_for(what: str, condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` holds; a refused or reset connection counts as not yet."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except psycopg.OperationalError:
            pass
        assert time.monotonic() - started < timeout, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.1)


def _connect(port: str, dbname: str = "test") -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=port, user=SERVER_USER, dbname=dbname, connect_timeout=5,
                           autocommit=True)


def _pool_nodes(port: str) -> dict[int, dict[str, str]]:
    with _connect(port) as conn:
        cur = conn.execute("SHOW POOL_NODES")
        names = [d.name for d in cur.description or []]
        return {int(row[0]): dict(zip(names, map(str, row))) for row in cur.fetchall()}


def _processes_naming(text: str) -> list[str]:
    """Command lines (process titles) that contain ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry}: {cmdline}")
    return found


@contextlib.contextmanager
def _startall(setup_dir: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``startall -n`` (pgpool-py in the foreground, its log in ``log_path``); killed on the way out."""
    with log_path.open("wb") as log:
        pgpool = subprocess.Popen([str(setup_dir / "startall"), "-n"], stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        yield pgpool
    finally:
        if _group_members(pgpool.pid):
            os.killpg(pgpool.pid, signal.SIGKILL)
        pgpool.wait()


def test_setup_cluster_recovers_a_lost_standby(setup_dir: Path) -> None:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pgpool_py.cluster", "-n", "2", str(setup_dir)],
                   capture_output=True, check=True)
    timings = {"pgpool-py-setup": time.monotonic() - started}
    assert timings["pgpool-py-setup"] < 60  # issue 6: a working 2-node cluster from nothing in under a minute
    conf = _conf(setup_dir / "pgpool.conf")
    port, data1 = conf["port"], setup_dir / "data1"
    assert conf["failover_command"].endswith(f"{setup_dir}/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S")
    assert "follow_primary_command" not in conf  # 2 nodes: no standby is left to follow

    log_path = setup_dir.parent / "pgpool.log"
    with _startall(setup_dir, log_path) as pgpool:
        timings["startall"] = _wait_for("pgpool-py", lambda: _pool_nodes(port)[1]["status"] in ("up", "waiting"),
                                        30)
        with _connect(port) as conn:
            conn.execute("CREATE TABLE t (i int)")
            conn.execute("INSERT INTO t VALUES (1)")

        # Lose the standby: pgpool-py marks it down (health check or a session) and runs failover_command.
        pg_ctl = os.path.join(find_pg_bin(), "pg_ctl")
        run_as_server_user([pg_ctl, "-D", str(data1), "-m", "immediate", "-w", "stop"], check=True,
                           capture_output=True)
        shutil.rmtree(data1)
        timings["detected down"] = _wait_for("node 1 down", lambda: _pool_nodes(port)[1]["status"] == "down",
                                            int(conf["health_check_period"]) + 10)
        _wait_for("failover.sh", lambda: "failover.sh: a standby failed" in log_path.read_text(), 10)

        started = time.monotonic()
        recovery = subprocess.run(
            [sys.executable, "-m", "pcp", "pcp_recovery_node", "-h", "127.0.0.1", "-p", conf["pcp_port"],
             "-U", "postgres", "-w", "-n", "1"],
            check=False, capture_output=True, text=True, timeout=60,
            env=dict(ENV, PCPPASSFILE=str(setup_dir / "pcppass")))
        timings["pcp_recovery_node"] = time.monotonic() - started
        assert recovery.returncode == 0, recovery.stdout + recovery.stderr + log_path.read_text()
        assert "pcp_recovery_node -- Command Successful" in recovery.stdout

        node = _pool_nodes(port)[1]
        assert (node["status"], node["role"]) in (("up", "standby"), ("waiting", "standby"))
        with _connect(port) as conn:
            conn.execute("INSERT INTO t VALUES (2)")

        def replicated() -> bool:
            with _connect(conf["backend_port1"]) as conn:
                rows = conn.execute("SELECT i FROM t ORDER BY i").fetchall()
                return conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,) and rows == [(1,), (2,)]

        timings["replicated"] = _wait_for("node 1 to replicate", replicated, 15)
        with _connect(conf["backend_port0"], "postgres") as conn:
            assert conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall() == [
                ("server1", "streaming")]

        subprocess.run([str(setup_dir / "shutdownall")], capture_output=True, check=True, env=ENV)
        assert pgpool.wait(15) == 0
        assert _group_members(pgpool.pid) == []
        assert _processes_naming(str(setup_dir)) == []
    print("\n" + ", ".join(f"{what} {seconds:.2f} s" for what, seconds in timings.items()))


def test_setup_cluster_follows_a_new_primary(setup_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "pgpool_py.cluster", "-n", "3", str(setup_dir)],
                   capture_output=True, check=True)
    conf = _conf(setup_dir / "pgpool.conf")
    port = conf["port"]
    attach = conf["follow_primary_command"].split("PCP_ATTACH_NODE=", 1)[1].split()[0]
    if shutil.which(attach) is None:
        pytest.skip("no pcp_attach_node for follow_primary.sh: install pgpool-py (pip install -e .) or pgpool2")
    log_path = setup_dir.parent / "pgpool.log"
    with _startall(setup_dir, log_path):
        _wait_for("pgpool-py", lambda: _pool_nodes(port)[2]["status"] in ("up", "waiting"), 30)
        pg_ctl = os.path.join(find_pg_bin(), "pg_ctl")
        run_as_server_user([pg_ctl, "-D", str(setup_dir / "data0"), "-m", "immediate", "-w", "stop"], check=True,
                           capture_output=True)
        # failover.sh promotes node 1; follow_primary.sh rebuilds node 2 on it and attaches it again.
        took = _wait_for("node 2 attached to the new primary", lambda: [
            (n["status"], n["role"]) for n in _pool_nodes(port).values()
        ] == [("down", "standby"), ("up", "primary"), ("up", "standby")], 30)
        with _connect(conf["backend_port1"], "postgres") as conn:
            assert conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall() == [
                ("server2", "streaming")]
        assert "follow_primary.sh: node 2 is a standby of node 1 again" in log_path.read_text()
    print(f"\nprimary stopped -> node 2 follows node 1 and is up after {took:.2f} s")
