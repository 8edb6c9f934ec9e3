"""pgpool_py.cluster pieces that need no PostgreSQL: configuration writing, binary lookup, CLI checks."""

from __future__ import annotations

import glob
import socket
from pathlib import Path

import pytest

from pgpool_py import cluster
from pgpool_py.cluster import ClusterError, PgNode, find_pg_bin, free_port, write_pgpool_conf


def _nodes(tmp_path: Path) -> list[PgNode]:
    return [
        PgNode(node_id=i, datadir=str(tmp_path / f"data{i}"), port=7000 + i, bin_dir="/nonexistent",
               log_path=str(tmp_path / f"log{i}"))
        for i in range(2)
    ]


def _read_conf(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return dict(line.split(" = ", 1) for line in lines)


def test_pgpool_conf_has_pgpool_ii_43_names_per_node(tmp_path: Path) -> None:
    conf = tmp_path / "pgpool.conf"
    write_pgpool_conf(str(conf), _nodes(tmp_path), port=9999, pcp_port=9898, mode="native")
    params = _read_conf(conf)
    assert params["backend_clustering_mode"] == "'native_replication'"
    assert params["port"] == "9999"
    assert params["pcp_port"] == "9898"
    assert params["socket_dir"] == params["pcp_socket_dir"] == f"'{tmp_path}/run'"
    assert params["logdir"] == f"'{tmp_path}/log'"
    assert (tmp_path / "run").is_dir() and (tmp_path / "log").is_dir()
    assert params["backend_port1"] == "7001"
    assert params["backend_data_directory1"] == f"'{tmp_path}/data1'"
    assert params["backend_application_name1"] == "'server1'"
    assert params["backend_flag0"] == "'ALLOW_TO_FAILOVER'"
    assert "backend_port2" not in params


def test_pgpool_conf_extra_wins_and_is_quoted_by_type(tmp_path: Path) -> None:
    conf = tmp_path / "pgpool.conf"
    extra: dict[str, str | int | bool] = {
        "num_init_children": 2,
        "load_balance_mode": False,
        "write_function_list": "f1,public.f2",
        "reset_query_list": "SELECT 'it''s'",
    }
    write_pgpool_conf(str(conf), _nodes(tmp_path), port=1, pcp_port=2, mode="streaming", extra=extra)
    params = _read_conf(conf)
    assert params["num_init_children"] == "2"
    assert params["load_balance_mode"] == "off"
    assert params["write_function_list"] == "'f1,public.f2'"
    assert params["reset_query_list"] == "'SELECT ''it''''s'''"
    assert list(params).count("num_init_children") == 1


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="unknown mode 'raw'"):
        write_pgpool_conf(str(tmp_path / "pgpool.conf"), [], port=1, pcp_port=2, mode="raw")


def test_find_pg_bin_honours_and_checks_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setenv("PGPOOL_TEST_PGBIN", str(tmp_path))
    with pytest.raises(ClusterError, match="has no initdb"):
        find_pg_bin()
    (tmp_path / "initdb").touch()
    assert find_pg_bin() == str(tmp_path)


def test_find_pg_bin_names_the_package_when_nothing_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPOOL_TEST_PGBIN", raising=False)
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    with pytest.raises(ClusterError, match="install the postgresql-15 package"):
        find_pg_bin()


def test_find_pg_bin_prefers_the_newest_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPOOL_TEST_PGBIN", raising=False)
    monkeypatch.delenv("PG_BIN", raising=False)
    dirs = []
    for version in ("9.6", "15", "13"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "initdb").touch()
        dirs.append(str(bin_dir))
    monkeypatch.setattr(glob, "glob", lambda pattern: dirs)
    assert find_pg_bin() == str(tmp_path / "15" / "bin")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_setup_refuses_a_non_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "something").touch()
    assert cluster.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"pgpool-py-setup: {tmp_path} is not empty\n"
