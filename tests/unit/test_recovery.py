"""Online recovery's decisions and waits, without PostgreSQL: shared memory and signals are real."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgpool_py import recovery
from pgpool_py.config import Config, load_config
from pgpool_py.errors import PgError
from pgpool_py.recovery import Waiter
from pgpool_py.shmem.layout import BackendStatus, Recovery, SharedState
from pgpool_py.signals import SignalQueue

TWO_NODES = (
    "backend_hostname0 = '127.0.0.1'\nbackend_port0 = 5432\nbackend_data_directory0 = '/data0'\n"
    "backend_hostname1 = '127.0.0.1'\nbackend_port1 = 5433\nbackend_data_directory1 = '/data1'\n"
    "recovery_user = 'postgres'\n"
)


def config(tmp_path: Path, text: str = "") -> Config:
    path = tmp_path / "pgpool.conf"
    path.write_text(TWO_NODES + text)
    return load_config(str(path))


@pytest.fixture
def shm() -> Iterator[SharedState]:
    state = SharedState(num_children=2, max_pool=1)
    state.req.num_backends = 2
    state.req.main_node_id = state.req.primary_node_id = 0
    state.backends[0].status = BackendStatus.UP
    state.backends[1].status = BackendStatus.DOWN
    with state._lockfile:  # SharedState lives as long as main and has no close()
        yield state


@pytest.fixture
def sigq() -> Iterator[SignalQueue]:
    queue = SignalQueue((signal.SIGUSR2, signal.SIGTERM, signal.SIGINT))
    yield queue
    queue.close()
    for sig in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


# ---------------------------------------------------------------------- small rules


@pytest.mark.parametrize(("limit", "timeout", "suspect"), [
    (-1, 90, True),   # idle clients are ended at once: any count left is a miscount
    (0, 90, False),   # no limit: the clients may well be real
    (5, 90, True),
    (90, 90, True),
    (91, 90, False),  # the limit had no time to act
])
def test_conn_counter_is_suspect(limit: int, timeout: int, suspect: bool) -> None:
    assert recovery.conn_counter_is_suspect(limit, timeout) is suspect


@pytest.mark.parametrize(("recovery_timeout", "wait"), [
    (90, 102),  # pgpool-II: 4 tries 3 s apart, then 31 more; the last at 12 + 90 s
    (3, 15),
    (5, 15),  # recovery_timeout / 3 in integers
    (2, 12),  # no second round of pauses
    (0, 12),
])
def test_postmaster_wait_is_pgpool_IIs(recovery_timeout: int, wait: int) -> None:
    assert recovery.postmaster_wait(recovery_timeout) == wait


@pytest.mark.parametrize(("hostname", "passed"), [("", "localhost"), ("/var/run/postgresql", "localhost"),
                                                  ("db1.example", "db1.example"), ("127.0.0.1", "127.0.0.1")])
def test_script_host(hostname: str, passed: str) -> None:
    assert recovery.script_host(hostname) == passed


@pytest.mark.parametrize(("line", "databases"), [
    ("", ("postgres", "template1")),  # a pgpool-II 4.3 pgpool.conf: 4.7's default, then 4.3's
    ("recovery_database = ''\n", ("postgres", "template1")),
    ("recovery_database = 'postgres'\n", ("postgres",)),  # set: used alone
    ("recovery_database = 'template1'\n", ("template1",)),
])
def test_recovery_databases(tmp_path: Path, line: str, databases: tuple[str, ...]) -> None:
    assert recovery.recovery_databases(config(tmp_path, line)) == databases


def test_recovery_password_forms(tmp_path: Path) -> None:
    assert recovery.recovery_password(config(tmp_path, "recovery_password = 'secret'\n")) == "secret"
    assert recovery.recovery_password(config(tmp_path, "recovery_password = 'TEXTsecret'\n")) == "secret"
    with pytest.raises(PgError, match="the password of recovery_user postgres is invalid format"):
        recovery.recovery_password(config(tmp_path, "recovery_password = 'md5" + "0" * 32 + "'\n"))


def test_recovery_password_from_pool_passwd(tmp_path: Path) -> None:
    (tmp_path / "pool_passwd").write_text("other:TEXTnope\npostgres:TEXTfrom-file\n")
    assert recovery.recovery_password(config(tmp_path, "pool_passwd = 'pool_passwd'\n")) == "from-file"
    (tmp_path / "pool_passwd").write_text("other:TEXTnope\n")
    assert recovery.recovery_password(config(tmp_path, "pool_passwd = 'pool_passwd'\n")) is None


# ---------------------------------------------------------------------- waits


def test_wait_connection_closed_returns_when_clients_leave(tmp_path: Path, shm: SharedState,
                                                           sigq: SignalQueue) -> None:
    cfg = config(tmp_path, "recovery_timeout = 10\n")
    shm.req.conn_counter = 2
    def both_leave() -> None:
        shm.conn_counter_down()
        shm.conn_counter_down()

    timer = later(0.2, both_leave)
    started = time.monotonic()
    recovery.wait_connection_closed(cfg, shm, Waiter(sigq))
    timer.join()
    assert shm.req.conn_counter == 0
    assert time.monotonic() - started < 2


def test_wait_connection_closed_fails_after_recovery_timeout(tmp_path: Path, shm: SharedState,
                                                             sigq: SignalQueue) -> None:
    cfg = config(tmp_path, "recovery_timeout = 1\nclient_idle_limit_in_recovery = 0\n")
    shm.req.conn_counter = 1
    started = time.monotonic()
    with pytest.raises(PgError) as info:
        recovery.wait_connection_closed(cfg, shm, Waiter(sigq))
    assert 1 <= time.monotonic() - started < 3
    assert info.value.message == "node recovery failed, waiting connection closed in the other pgpools timeout"
    assert info.value.detail == ("existing connections did not close within recovery_timeout (1 seconds): "
                                 "1 client connection(s) still open")
    assert shm.req.conn_counter == 1


def test_wait_connection_closed_resets_a_malformed_counter(tmp_path: Path, shm: SharedState, sigq: SignalQueue,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, "recovery_timeout = 0\nclient_idle_limit_in_recovery = -1\n")
    shm.req.conn_counter = 3
    with caplog.at_level(logging.INFO, logger="pgpool_py.recovery"):
        recovery.wait_connection_closed(cfg, shm, Waiter(sigq))
    assert shm.req.conn_counter == 0
    assert "wait_connection_closed: malformed conn_counter (3) detected. reset it to 0" in caplog.text  # pgpool-II's


def test_wait_for_failback_ends_on_main_sigusr2(shm: SharedState, sigq: SignalQueue) -> None:
    def failback_done() -> None:
        shm.req.pcp_wakeup_request = 1
        os.kill(os.getpid(), signal.SIGUSR2)

    timer = later(0.2, failback_done)
    started = time.monotonic()
    recovery.wait_for_failback(shm, Waiter(sigq))
    timer.join()
    assert time.monotonic() - started < 1.5
    assert shm.req.pcp_wakeup_request == 0


def test_wait_for_failback_gives_up_and_carries_on(shm: SharedState, sigq: SignalQueue,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(recovery, "FAILBACK_WAIT_MAX", 0.2)
    with caplog.at_level(logging.INFO, logger="pgpool_py.recovery"):
        recovery.wait_for_failback(shm, Waiter(sigq))
    # pgpool-II's message and detail.
    assert [(r.getMessage(), getattr(r, "detail", None)) for r in caplog.records] == [
        ("node recovery", "waiting for wake up request is timeout(0 seconds)")]


def test_waiter_keeps_other_signals_for_the_worker(sigq: SignalQueue) -> None:
    waiter = Waiter(sigq)
    os.kill(os.getpid(), signal.SIGTERM)
    waiter.sleep(1)
    started = time.monotonic()
    waiter.sleep(0.3)  # a held signal does not end later waits
    assert time.monotonic() - started >= 0.25
    waiter.give_back()
    assert list(sigq.pending) == [signal.SIGTERM]


def test_waiter_ends_the_recovery_on_shutdown(sigq: SignalQueue) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(PgError, match="node recovery failed"):
        Waiter(sigq).sleep(1)


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("node", "mode", "message"), [
    (2, "streaming_replication", "process recovery request failed"),
    (0, "streaming_replication", "process recovery request failed"),
    (1, "raw", "process recovery request failed"),  # pgpool-II's detail says why
])
def test_requests_refused_before_recovery_starts(tmp_path: Path, shm: SharedState, sigq: SignalQueue,
                                                 node: int, mode: str, message: str) -> None:
    cfg = config(tmp_path, f"backend_clustering_mode = '{mode}'\n")
    with pytest.raises(PgError) as info:
        recovery.process_recovery_request(cfg, shm, node, os.getpid(), sigq)
    assert info.value.message == message
    assert signal.SIGUSR2 not in sigq.pop_all()


def test_live_node_is_refused_and_recovery_is_finished(tmp_path: Path, shm: SharedState,
                                                       sigq: SignalQueue) -> None:
    cfg = config(tmp_path, "backend_clustering_mode = 'native_replication'\n")
    shm.backends[1].status = BackendStatus.CONNECT_WAIT
    shm.req.in_recovery = Recovery.ONLINE
    with pytest.raises(PgError) as info:
        recovery.process_recovery_request(cfg, shm, 1, os.getpid(), sigq)
    assert info.value.message == "node recovery failed, node id: 1 is alive"  # pgpool-II's text
    assert info.value.detail == "node 1 is waiting: only a detached (down) node can be recovered"
    assert info.value.hint is not None and "pcp_detach_node -n 1" in info.value.hint
    # finish_recovery: InRecovery cleared, main (here: ourselves) told to wake the children.
    assert shm.req.in_recovery == Recovery.INIT
    sigq.wait((), 1)
    assert signal.SIGUSR2 in sigq.pop_all()


def test_node_without_data_directory_is_refused(tmp_path: Path, shm: SharedState, sigq: SignalQueue) -> None:
    # pgpool.conf may set a recovery command without every node's data directory (pgpool-II
    # takes it); recovering such a node fails before any script runs, naming what is missing.
    cfg = config(tmp_path, "backend_clustering_mode = 'streaming_replication'\n")
    assert shm.backends[1].data_directory == b""
    with pytest.raises(PgError) as info:
        recovery.process_recovery_request(cfg, shm, 1, os.getpid(), sigq)
    assert info.value.message == "node recovery failed, backend_data_directory1 is not set"
    assert shm.req.in_recovery == Recovery.INIT
