"""
The pgpool_factory machinery, exercised with pgpool-II itself (the pgpool2 package):
the configuration written by write_pgpool_conf must be one that pgpool-II accepts, and
start, readiness, shutdown and cleanup must work on a real pgpool server.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from pgpool_py.cluster import PgNode
from tests.fix_pgpool import PgpoolFactory, _group_members

# pgpool-II's own binaries (the venv's pcp_* scripts are pgpool-py's and may shadow them on PATH).
PGPOOL_II = ["/usr/sbin/pgpool"]


def test_pgpool_ii_serves_the_written_config(pgpool_factory: PgpoolFactory, pg_cluster: list[PgNode]) -> None:
    server = pgpool_factory(program=PGPOOL_II)
    rows = server.psql("SHOW pool_nodes").splitlines()
    assert [r.split("|")[:3] for r in rows] == [["0", "127.0.0.1", str(pg_cluster[0].port)],
                                               ["1", "127.0.0.1", str(pg_cluster[1].port)]]
    assert [r.split("|")[6] for r in rows] == ["primary", "standby"]
    pcp = subprocess.run(
        ["/usr/sbin/pcp_node_info", "-h", "127.0.0.1", "-p", str(server.pcp_port), "-U", "postgres", "-w", "1"],
        capture_output=True, text=True, env=dict(os.environ, PCPPASSFILE=str(server.pcppass_path)),
    )
    assert pcp.stdout.split()[:2] == ["127.0.0.1", str(pg_cluster[1].port)], pcp.stderr
    with server.connect(autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("test",)
    assert server.stop("fast") == 0
    assert _group_members(server.pid) == []
    assert "successfully started" in server.log_text()


def test_pgpool_ii_native_mode(pgpool_factory: PgpoolFactory) -> None:
    server = pgpool_factory(mode="native", program=PGPOOL_II, extra={"load_balance_mode": False})
    assert server.psql("PGPOOL SHOW backend_clustering_mode") == "native_replication"
    assert server.psql("PGPOOL SHOW load_balance_mode") == "off"


def test_server_that_exits_at_boot_fails_with_its_log(pgpool_factory: PgpoolFactory) -> None:
    with pytest.raises(pytest.fail.Exception, match="exited with status") as failure:
        pgpool_factory(program=PGPOOL_II, extra={"num_init_children": "many"})
    assert "num_init_children" in str(failure.value)
