"""
Client authentication through pgpool-py end to end: pool_hba.conf methods with passwords from
pool_passwd, and the relayed (passthrough) backend authentication when pool_hba is off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgpool_py.child.passwd import pg_md5
from pgpool_py.cluster import PgNode
from tests.fix_pg import _clusters

PASSWORD = "s3cret pass"
RAW = {"backend_clustering_mode": "raw"}
# The fixture's readiness probe logs in as postgres to database test.
READY_LINE = "host test postgres 127.0.0.1/32 trust\n"

PG_HBA = """\
local all all trust
host all scramuser 127.0.0.1/32 scram-sha-256
host all md5user 127.0.0.1/32 md5
host all all 127.0.0.1/32 trust
"""


@pytest.fixture(scope="module")
def node() -> Iterator[PgNode]:
    with _clusters() as build:
        (pg,) = build(num_nodes=1, mode="native")
        pg.psql(
            "SET password_encryption = 'scram-sha-256';"
            f"CREATE ROLE scramuser LOGIN PASSWORD '{PASSWORD}';"
            "SET password_encryption = 'md5';"
            f"CREATE ROLE md5user LOGIN PASSWORD '{PASSWORD}';"
        )
        pg.psql("CREATE DATABASE authdb")
        with open(os.path.join(pg.datadir, "pg_hba.conf"), "w") as f:
            f.write(PG_HBA)
        pg.psql("SELECT pg_reload_conf()")
        yield pg


def _connect(server: Any, user: str, password: str | None = None, **kw: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=server.port, user=user, dbname="authdb", password=password,
                           connect_timeout=5, autocommit=True, **kw)


@pytest.mark.parametrize("method", ["scram-sha-256", "md5", "password"])
def test_pool_hba_methods_with_pool_passwd(pgpool_factory: Any, node: PgNode, tmp_path: Any, method: str) -> None:
    passwd = tmp_path / "pool_passwd"
    passwd.write_text(f"scramuser:TEXT{PASSWORD}\nmd5user:{pg_md5(PASSWORD, 'md5user')}\n")
    hba = f"{READY_LINE}host all all 127.0.0.1/32 {method}\n"
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True, "pool_passwd": str(passwd)}, hba_text=hba)
    with _connect(server, "scramuser", PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "scramuser"'):
        _connect(server, "scramuser", "wrong")
    if method != "scram-sha-256":
        # An md5 hash in pool_passwd answers the backend's md5 challenge.
        with _connect(server, "md5user", PASSWORD) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("md5user",)


def test_no_pool_hba_entry(pgpool_factory: Any, node: PgNode, tmp_path: Any) -> None:
    hba = f"{READY_LINE}host authdb scramuser 127.0.0.1/32 trust\n"
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True}, hba_text=hba)
    with pytest.raises(psycopg.OperationalError, match='no pool_hba.conf entry for host "127.0.0.1", user "md5user"'):
        _connect(server, "md5user", PASSWORD)


def test_passthrough_relays_backend_scram_and_never_reuses_unverified(pgpool_factory: Any, node: PgNode) -> None:
    server = pgpool_factory([node], extra={**RAW, "num_init_children": 1, "max_pool": 1})
    with _connect(server, "scramuser", PASSWORD) as conn:
        first_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(server, "scramuser", "wrong")
    with _connect(server, "scramuser", PASSWORD) as conn:
        # The cached connection could not check this client's password itself: a new one.
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != first_pid
