"""Our pcp tools and library against the real pgpool-II 4.3.5, side by side with its own pcp_* tools.

pgpool-II runs in streaming mode in front of the session's PostgreSQL cluster (primary + standby),
with health checks and streaming checks off so that nothing changes between two calls. Every
comparison runs the real tool and ours against the same server and wants the same bytes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pcp import PcpAuthError, PcpConnection, PcpConnectionError, PcpError
from pgpool_py.cluster import HOST, PgNode, free_port, write_pcp_conf, write_pgpool_conf

PGPOOL = "/usr/sbin/pgpool"
PCP_BIN = "/usr/sbin"
# write_pcp_conf's account.
PCP_USER = PCP_PASSWORD = "postgres"
REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 15.0
FAILOVER_TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(not os.path.exists(PGPOOL), reason="pgpool-II 4.3 (package pgpool2) is not installed")


@dataclass
class RealPgpool:
    base: str
    pcp_port: int
    run_dir: str
    env: dict[str, str]

    def tool(self, real: bool, name: str, *args: str, host: str = HOST, input: str | None = None,
             no_password: bool = True) -> subprocess.CompletedProcess[str]:
        """Run pgpool-II's tool (real=True) or ours, in a new session (no terminal to prompt on)."""
        program = [os.path.join(PCP_BIN, name)] if real else [sys.executable, "-m", "pcp", name]
        options = ["-h", host, "-p", str(self.pcp_port), "-U", PCP_USER] + (["-w"] if no_password else [])
        return subprocess.run(program + options + list(args), env=self.env, input=input, capture_output=True,
                              text=True, timeout=30, start_new_session=True)

    def connect(self, password: str = PCP_PASSWORD) -> PcpConnection:
        return PcpConnection(HOST, self.pcp_port, PCP_USER, password, connect_timeout=5, timeout=10)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pgpool2(pg_cluster: list[PgNode]) -> Iterator[RealPgpool]:
    base = tempfile.mkdtemp(prefix="pcp-interop-", dir="/tmp")
    conf, pcp_conf = os.path.join(base, "pgpool.conf"), os.path.join(base, "pcp.conf")
    pcp_port = free_port()
    write_pgpool_conf(conf, pg_cluster, port=free_port(), pcp_port=pcp_port, mode="streaming",
                      extra={"num_init_children": 2, "max_pool": 1, "sr_check_period": 0,
                             "health_check_period": 0})
    write_pcp_conf(pcp_conf)
    passfile = os.path.join(base, "pcppass")
    with open(passfile, "w") as f:
        f.write(f"*:*:{PCP_USER}:{PCP_PASSWORD}\n")
    os.chmod(passfile, 0o600)
    env = dict(os.environ, PCPPASSFILE=passfile, PYTHONPATH=str(REPO))
    server = RealPgpool(base, pcp_port, os.path.join(base, "run"), env)
    with open(os.path.join(base, "pgpool.log"), "w") as log:
        proc = subprocess.Popen([PGPOOL, "-n", "-f", conf, "-F", pcp_conf], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def answers() -> bool:
            assert proc.poll() is None, f"pgpool exited with {proc.returncode}, see {base}/pgpool.log"
            try:
                with server.connect() as conn:
                    return conn.node_count() == len(pg_cluster)
            except (PcpConnectionError, PcpError):
                return False

        _wait_for(answers, STARTUP_TIMEOUT, "pgpool-II's PCP port")
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        shutil.rmtree(base, ignore_errors=True)


def assert_same(server: RealPgpool, name: str, *args: str, host: str = HOST, input: str | None = None,
                no_password: bool = True) -> subprocess.CompletedProcess[str]:
    real = server.tool(True, name, *args, host=host, input=input, no_password=no_password)
    ours = server.tool(False, name, *args, host=host, input=input, no_password=no_password)
    assert (ours.stdout, ours.stderr, ours.returncode) == (real.stdout, real.stderr, real.returncode)
    return ours


@pytest.mark.parametrize(
    "command",
    [
        "pcp_node_count",
        "pcp_node_count -v",
        "pcp_node_info",
        "pcp_node_info -v",
        "pcp_node_info 1",
        "pcp_node_info -a -v -n 0",
        "pcp_proc_count",
        "pcp_proc_count -v",
        "pcp_proc_info",
        "pcp_proc_info -a",
        "pcp_proc_info -a -v",
        "pcp_pool_status",
        "pcp_pool_status -v",
        "pcp_health_check_stats 0",
        "pcp_health_check_stats -v 1",
    ],
)
def test_same_output(pgpool2: RealPgpool, command: str) -> None:
    name, *args = command.split()
    result = assert_same(pgpool2, name, *args)
    assert result.returncode == 0 and result.stdout


def test_same_output_over_unix_socket(pgpool2: RealPgpool) -> None:
    assert assert_same(pgpool2, "pcp_node_count", host=pgpool2.run_dir).stdout == "2\n"


def test_one_process(pgpool2: RealPgpool) -> None:
    with pgpool2.connect() as conn:
        pid = conn.proc_count()[0]
    result = assert_same(pgpool2, "pcp_proc_info", "-a", str(pid))
    assert result.stdout.count(f" {pid} ") == 2  # one row per backend


def test_library(pgpool2: RealPgpool, pg_cluster: list[PgNode]) -> None:
    with pgpool2.connect() as conn:
        assert conn.node_count() == 2
        nodes = conn.node_info()
        assert [(n.backend_hostname, n.backend_port) for n in nodes] == [(HOST, n.port) for n in pg_cluster]
        assert [n.role_name for n in nodes] == ["primary", "standby"]
        assert [n.backend_weight for n in nodes] == [0.5, 0.5]
        assert conn.node_info(1) == nodes[1:]
        pids = conn.proc_count()
        assert len(pids) == 2  # num_init_children
        rows = conn.proc_info()
        assert len(rows) == 2 * 1 * 2  # children x max_pool x backends
        assert {r.pool_pid for r in rows} == set(pids)
        status = {item.name: item.value for item in conn.pool_status()}
        assert status["pcp_port"] == str(pgpool2.pcp_port)
        stats = conn.health_check_stats(1)
        assert (stats.node_id, stats.port, stats.total_count) == (1, pg_cluster[1].port, 0)


def test_server_errors(pgpool2: RealPgpool) -> None:
    # Same words as pgpool-II's tools; the exit status tells the error apart (theirs is 0).
    for command in (["pcp_node_info", "7"], ["pcp_health_check_stats", "2"], ["pcp_watchdog_info"]):
        real, ours = pgpool2.tool(True, *command), pgpool2.tool(False, *command)
        assert ours.stderr == real.stderr and ours.stderr.startswith("ERROR:  ")
        assert (real.returncode, ours.returncode) == (0, 2)
    with pgpool2.connect() as conn:
        with pytest.raises(PcpError, match="informing node info failed"):
            conn.node_info(7)
        assert conn.node_count() == 2  # an ERROR leaves the connection usable
        with pytest.raises(PcpError) as info:
            conn.watchdog_info()
        assert info.value.detail == "watchdog is not enabled"


def test_log_rotate_is_unknown_to_4_3(pgpool2: RealPgpool) -> None:
    ours = pgpool2.tool(False, "pcp_log_rotate")
    assert ours.returncode == 2
    assert ours.stderr == 'FATAL:  PCP processing request\nDETAIL:  unknown PCP packet type "V"\n\n'


def test_wrong_password(pgpool2: RealPgpool, tmp_path: Path) -> None:
    passfile = tmp_path / "pcppass"
    passfile.write_text(f"*:*:{PCP_USER}:wrong\n")
    passfile.chmod(0o600)
    pgpool2.env["PCPPASSFILE"], saved = str(passfile), pgpool2.env["PCPPASSFILE"]
    try:
        result = assert_same(pgpool2, "pcp_node_count")
    finally:
        pgpool2.env["PCPPASSFILE"] = saved
    assert result.returncode == 1
    assert result.stderr == (
        f'FATAL:  authentication failed for user "{PCP_USER}"\nDETAIL:  username and/or password does not match\n\n'
    )
    with pytest.raises(PcpAuthError):
        pgpool2.connect("wrong")


def test_password_prompt(pgpool2: RealPgpool) -> None:
    # Without -w both prompt; with no terminal the prompt goes to stderr and stdin is read.
    result = assert_same(pgpool2, "pcp_node_count", input=f"{PCP_PASSWORD}\n", no_password=False)
    assert (result.stdout, result.stderr) == ("2\n", "Password: \n")


def test_detach_and_attach(pgpool2: RealPgpool) -> None:
    def status_of_node1() -> int:
        try:
            with pgpool2.connect() as conn:
                return conn.node_info(1)[0].backend_status
        except (PcpConnectionError, PcpError):
            return -1  # pgpool restarts its PCP child after a failover

    result = pgpool2.tool(False, "pcp_detach_node", "1")
    assert (result.returncode, result.stdout) == (0, "pcp_detach_node -- Command Successful\n")
    _wait_for(lambda: status_of_node1() == 3, FAILOVER_TIMEOUT, "node 1 to be down")
    assert " down " in assert_same(pgpool2, "pcp_node_info", "1").stdout

    result = pgpool2.tool(False, "pcp_attach_node", "-n", "1")
    assert (result.returncode, result.stdout) == (0, "pcp_attach_node -- Command Successful\n")
    _wait_for(lambda: status_of_node1() in (1, 2), FAILOVER_TIMEOUT, "node 1 to be attached again")
    assert_same(pgpool2, "pcp_node_info")
