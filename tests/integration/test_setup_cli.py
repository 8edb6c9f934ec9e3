"""pgpool-py-setup (``python -m pgpool_py.cluster``): what it builds works with pgpool-II's own tools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgpool_py.cluster import free_port
from tests.fix_pgpool import _group_members

PCP_TIMEOUT = 15.0


@pytest.fixture
def setup_dir() -> Iterator[Path]:
    # Under /tmp, not tmp_path: the PostgreSQL servers may run as the postgres user.
    parent = Path(tempfile.mkdtemp(prefix="pgpool-py-setup-", dir="/tmp"))
    parent.chmod(0o755)
    directory = parent / "cluster"
    yield directory
    if (directory / "shutdownall").exists():
        subprocess.run([str(directory / "shutdownall")], capture_output=True, check=True)
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

    subprocess.run([str(setup_dir / "shutdownall")], capture_output=True, check=True)
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
