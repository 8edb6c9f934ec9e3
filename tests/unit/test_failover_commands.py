"""failover_command placeholders, LSN arithmetic, host matching, one health check round."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import cast

import pytest

from pgpool_py.config import Config
from pgpool_py.config.loader import HealthCheckConfig
from pgpool_py.config.params import BackendFlag
from pgpool_py.failover import command_values, expand_command
from pgpool_py.health.check import HealthCheck, check_timeout, health_check_stats_rows
from pgpool_py.health.primary import hosts_match
from pgpool_py.health.sr_check import parse_lsn
from pgpool_py.shmem.layout import (
    BackendInfo,
    BackendStatus,
    HealthCheckStats,
    RequestDetail,
    RequestKind,
    ServerStatus,
    SharedState,
)


@pytest.fixture
def shm() -> SharedState:
    # command_values reads only the backend table; a real SharedState would also open a lock file.
    backends = (BackendInfo * 3)()
    for node, (host, port) in enumerate([("host0", 5432), ("host1", 5433), ("/tmp", 5434)]):
        b = backends[node]
        b.hostname, b.port, b.data_directory = host.encode(), port, f"/data{node}".encode()
    return cast(SharedState, SimpleNamespace(backends=backends, req=SimpleNamespace(num_backends=3)))


PGPOOL_SETUP_FAILOVER = "failover.sh %d %h %p %D %m %H %M %P %r %R %N %S"


def test_every_placeholder(shm: SharedState) -> None:
    # node 0 (the primary, also the old main) failed; node 1 is the new main.
    values = command_values(shm, 0, new_main=1, old_main=0, old_primary=0)
    assert expand_command(PGPOOL_SETUP_FAILOVER, values) == (
        "failover.sh 0 host0 5432 /data0 1 host1 0 0 5433 /data1 host0 5432"
    )


def test_missing_new_main_and_old_primary_are_quoted_empty_strings(shm: SharedState) -> None:
    # pgpool-II writes "" for them, so the shell still passes 12 arguments.
    values = command_values(shm, 2, new_main=-1, old_main=2, old_primary=-1)
    assert expand_command(PGPOOL_SETUP_FAILOVER, values) == 'failover.sh 2 /tmp 5434 /data2 -1 "" 2 -1 "" "" "" ""'
    values = command_values(shm, 2, new_main=3, old_main=2, old_primary=7)  # beyond the configured nodes
    assert expand_command("%H %r %R %N %S", values) == '"" "" "" "" ""'


def test_percent_and_unknown_letters(shm: SharedState) -> None:
    values = command_values(shm, 1, new_main=0, old_main=0, old_primary=0)
    assert expand_command("100%% %d%x%h %", values) == "100% 1host1 "


def test_no_placeholder_is_left_unexpanded(shm: SharedState) -> None:
    values = command_values(shm, 1, new_main=0, old_main=0, old_primary=0)
    assert "%" not in expand_command(" ".join(f"%{c}" for c in "dhpDmHMPrRNS"), values)


def test_parse_lsn() -> None:
    assert parse_lsn("0/3000060") == 0x3000060
    assert parse_lsn("16/B374D848") - parse_lsn("16/B374D000") == 0x848  # type: ignore[operator]
    assert parse_lsn("1/0") == 1 << 32
    assert parse_lsn(None) is None


def test_hosts_match() -> None:
    assert hosts_match("127.0.0.1", "127.0.0.1")
    assert not hosts_match("127.0.0.1", "localhost")
    assert hosts_match("/tmp", "")
    assert hosts_match("/tmp", "localhost")
    assert not hosts_match("/tmp", "10.0.0.1")


def test_check_timeout_is_the_tighter_bound() -> None:
    def hc(timeout: int, connect_timeout: int) -> HealthCheckConfig:
        return HealthCheckConfig(period=1, timeout=timeout, user="", password="", database="",
                                 max_retries=0, retry_delay=1, connect_timeout=connect_timeout)

    assert check_timeout(hc(20, 10000)) == 10.0
    assert check_timeout(hc(3, 10000)) == 3.0
    assert check_timeout(hc(0, 2500)) == 2.5
    assert check_timeout(hc(5, 0)) == 5.0


class _RecordingShm:
    """What a health check touches in shared memory; the request queue records instead of queueing."""

    def __init__(self, port: int) -> None:
        self.backends = (BackendInfo * 1)()
        self.backends[0].hostname, self.backends[0].port = b"127.0.0.1", port
        self.backends[0].status = BackendStatus.UP
        self.health_stats = (HealthCheckStats * 1)()
        self.req = SimpleNamespace(num_backends=1)
        self.requests: list[tuple[RequestKind, tuple[int, ...], RequestDetail]] = []

    def enqueue_request(self, kind: RequestKind, node_ids: tuple[int, ...], details: RequestDetail) -> bool:
        self.requests.append((kind, node_ids, details))
        return False  # "queue full": register_node_operation_request then signals nobody


def _health_check(shm: _RecordingShm, flag: int = 0) -> HealthCheck:
    shm.backends[0].flag = flag
    cfg = SimpleNamespace(auto_failback=False, ssl=False)
    hc = HealthCheck(cast(Config, cfg), cast(SharedState, shm), 0, main_pid=0)
    hc.waker = None  # no signal doorbell outside a health check process
    return hc


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connections are refused


HC_SETTINGS = HealthCheckConfig(period=1, timeout=2, user="postgres", password="", database="postgres",
                                max_retries=2, retry_delay=0, connect_timeout=1000)


def test_health_check_retries_then_requests_failover() -> None:
    shm = _RecordingShm(_refused_port())
    _health_check(shm).check_once(HC_SETTINGS)
    # A refused connection (not a timeout) allows the partial restart: SWITCHOVER.
    assert shm.requests == [(RequestKind.NODE_DOWN, (0,), RequestDetail.SWITCHOVER)]
    s = shm.health_stats[0]
    assert (s.total_count, s.success_count, s.fail_count, s.skip_count) == (1, 0, 1, 0)
    assert (s.retry_count, s.max_retry_count) == (2, 2)
    assert s.last_failed_health_check > 0 and s.last_successful_health_check == 0


def test_health_check_skips_down_nodes_and_respects_disallow_to_failover() -> None:
    shm = _RecordingShm(_refused_port())
    _health_check(shm, flag=BackendFlag.DISALLOW_TO_FAILOVER).check_once(HC_SETTINGS)
    assert shm.requests == []
    assert shm.health_stats[0].fail_count == 1
    # A down node is tried once (its pg_status), counted as skipped as in pgpool-II, and its
    # failure asks for nothing.
    shm.backends[0].status = BackendStatus.DOWN
    _health_check(shm).check_once(HC_SETTINGS)
    assert shm.requests == []
    s = shm.health_stats[0]
    assert (s.total_count, s.success_count, s.fail_count, s.skip_count, s.retry_count) == (2, 0, 1, 1, 2)
    assert s.last_health_check == s.last_skip_health_check > s.last_failed_health_check
    assert s.server_status == ServerStatus.DOWN


def test_health_check_of_a_node_detached_meanwhile_requests_nothing() -> None:
    shm = _RecordingShm(_refused_port())
    hc = _health_check(shm)
    # The node is detached while the check retries: its failure is logged, nothing is requested.
    hc._sleep = lambda seconds: setattr(shm.backends[0], "status", BackendStatus.DOWN)  # type: ignore[method-assign]
    hc.check_once(HC_SETTINGS)
    assert shm.requests == []
    assert shm.health_stats[0].fail_count == 1


def test_health_check_stats_rows() -> None:
    shm = _RecordingShm(_refused_port())
    _health_check(shm).check_once(HC_SETTINGS)
    (row,) = health_check_stats_rows(cast(SharedState, shm))
    # total success fail skip retry average_retry max_retry max_duration min_duration average_duration
    assert row[:7] == ["1", "0", "1", "0", "2", "2.000000", "2"]
    assert int(row[7]) >= int(row[8]) >= 0
    assert row[10] != "" and row[11] == "" and row[12] == "" and row[13] != ""  # last check / failed
