"""
PostgreSQL clusters for tests (the pgpool_setup analogue), built with pgpool_py.cluster.

- ``pg_cluster``: one streaming-replication cluster (primary + 1 standby) for the session.
  Tests must leave it as they found it: both nodes up, node 0 primary.
- ``pg_native_cluster``: two independent nodes for the session, built on first use.
- ``pg_cluster_factory``: a private cluster for one test, for tests that stop, promote or
  recover nodes: ``pg_cluster_factory(num_nodes=2, mode="streaming", synchronous=False)``.

Binaries come from PGPOOL_TEST_PGBIN / PG_BIN or the newest /usr/lib/postgresql/*/bin;
without them the fixtures error out naming the package to install (never a silent skip).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pgpool_py.cluster import PgNode, create_cluster, destroy_cluster

ClusterFactory = Callable[..., list[PgNode]]


@contextmanager
def _clusters() -> Iterator[ClusterFactory]:
    """A cluster builder; every cluster it built is destroyed on exit."""
    built: list[tuple[str, list[PgNode]]] = []

    def build(num_nodes: int = 2, mode: str = "streaming", synchronous: bool = False) -> list[PgNode]:
        # Not pytest's tmp_path: its parents are private to root, and the servers may run
        # as the postgres user.  /tmp also keeps unix socket paths short.
        base = tempfile.mkdtemp(prefix="pgpool-py-pg-", dir="/tmp")
        nodes = create_cluster(base, num_nodes=num_nodes, mode=mode, synchronous=synchronous)
        built.append((base, nodes))
        return nodes

    try:
        yield build
    finally:
        for base, nodes in built:
            destroy_cluster(nodes)
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def _pg_session_clusters() -> Iterator[ClusterFactory]:
    with _clusters() as build:
        yield build


@pytest.fixture(scope="session")
def pg_cluster(_pg_session_clusters: ClusterFactory) -> list[PgNode]:
    """Primary (node 0) + one streaming standby (node 1, application_name server1), database ``test``."""
    return _pg_session_clusters(num_nodes=2, mode="streaming")


@pytest.fixture(scope="session")
def pg_native_cluster(_pg_session_clusters: ClusterFactory) -> list[PgNode]:
    """Two independent nodes, each with a database ``test``."""
    return _pg_session_clusters(num_nodes=2, mode="native")


@pytest.fixture
def pg_cluster_factory() -> Iterator[ClusterFactory]:
    """Builds clusters that are destroyed at the end of the test."""
    with _clusters() as build:
        yield build
