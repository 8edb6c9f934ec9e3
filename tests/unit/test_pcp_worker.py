"""The PCP worker's request handling, on a real SharedState without a socket or a fork.

What needs a running main (stop, reload, failover) is covered by tests/integration/test_pcp_server.py;
here: authentication and the guards that refuse a request from the state in shared memory.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pcp import protocol as proto
from pcp.protocol import Packet
from pgpool_py.child.child import RuntimePaths
from pgpool_py.config import load_config
from pgpool_py.errors import PgError
from pgpool_py.pcp_server.worker import PcpWorker
from pgpool_py.shmem.layout import BackendStatus, RequestDetail, RequestKind, SharedState

USER, PASSWORD = "admin", "secret"
# Never signalled: every test here is refused before the worker would signal main.
NO_MAIN_PID = 2**22 + 1
CONFIG = {"backend_hostname0": "localhost", "backend_port0": "5432",
          "backend_hostname1": "localhost", "backend_port1": "5433"}


@pytest.fixture
def worker() -> Iterator[PcpWorker]:
    shm = SharedState(2, 1)
    shm.req.num_backends = 2
    shm.req.primary_node_id = 0
    for node in (0, 1):
        shm.backends[node].status = BackendStatus.UP
        shm.backends[node].port = 5432 + node
    a, b = socket.socketpair()
    with a, b, shm._lockfile:  # SharedState lives as long as main and has no close()
        paths = RuntimePaths("/nonexistent/pgpool.conf", "/nonexistent/pcp.conf", "/nonexistent/pool_hba.conf")
        yield PcpWorker(a, load_config(None, CONFIG), shm, NO_MAIN_PID, {USER: proto.md5_hex(PASSWORD)}, None, paths)


def _login(worker: PcpWorker, password: str = PASSWORD) -> bytes:
    reply = worker._dispatch(Packet("M", b""))
    (salt_packet,), _ = proto.decode_packets(reply)
    salt = proto.decode_salt(salt_packet.payload)
    request = proto.auth_request(USER, proto.auth_hash(proto.md5_hex(password), USER, salt))
    (packet,), _ = proto.decode_packets(request, requests=True)
    return worker._dispatch(packet)


def test_login_with_a_fresh_salt_each_time(worker: PcpWorker) -> None:
    salts = {worker._dispatch(Packet("M", b"")) for _ in range(5)}
    assert len(salts) == 5
    assert _login(worker) == proto.auth_ok_reply()
    assert worker.authenticated


def test_wrong_password_is_fatal(worker: PcpWorker) -> None:
    with pytest.raises(PgError) as info:
        _login(worker, "wrong")
    assert (info.value.severity, info.value.message, info.value.detail) == (
        "FATAL", f'authentication failed for user "{USER}"', "username and/or password does not match")
    assert not worker.authenticated


def test_a_salt_serves_one_attempt(worker: PcpWorker) -> None:
    _login(worker)
    replay = proto.auth_request(USER, "0" * 32)
    (packet,), _ = proto.decode_packets(replay, requests=True)
    with pytest.raises(PgError) as info:
        worker._dispatch(packet)  # R without a new M
    assert (info.value.severity, info.value.message) == ("FATAL", "authentication failed")


def test_commands_need_a_login(worker: PcpWorker) -> None:
    with pytest.raises(PgError) as info:
        worker._dispatch(Packet("L", b""))
    assert (info.value.severity, info.value.detail) == ("FATAL", "connection not authorized")


def test_only_one_recovery_at_a_time(worker: PcpWorker) -> None:
    _login(worker)
    worker.shm.req.pcp_recovery_in_progress = True
    with pytest.raises(PgError) as info:
        worker._dispatch(Packet("O", b"1\0"))
    assert info.value.severity == "FATAL"
    assert info.value.detail == "pgpool-II is already processing another recovery request."  # pgpool-II's text
    assert info.value.hint and "then retry" in info.value.hint
    assert worker.shm.req.pcp_recovery_in_progress  # the other recovery still owns the guard


@pytest.mark.parametrize(
    ("kind", "detail"),
    [(RequestKind.NODE_DOWN, "failover is in progress"), (RequestKind.NODE_UP, "failback is in progress"),
     (RequestKind.PROMOTE_NODE, "promote node operation is in progress"),
     (RequestKind.CLOSE_IDLE, "operation is in progress")],
)
@pytest.mark.parametrize("request_packet", [Packet("O", b"1\0"), Packet("T", b"f")], ids=["recovery", "stop"])
def test_recovery_and_stop_wait_for_a_failover(
    worker: PcpWorker, kind: RequestKind, detail: str, request_packet: Packet
) -> None:
    _login(worker)
    worker.shm.req.switching = True
    assert worker.shm.enqueue_request(kind, (1,), RequestDetail.NONE)
    with pytest.raises(PgError) as info:
        worker._dispatch(request_packet)
    assert (info.value.severity, info.value.message, info.value.detail) == (
        "ERROR", "failed to process PCP request at the moment", detail)
    assert not worker.shm.req.pcp_recovery_in_progress


def test_invalid_shutdown_mode(worker: PcpWorker) -> None:
    _login(worker)
    with pytest.raises(PgError) as info:
        worker._dispatch(Packet("T", b"x"))
    assert info.value.detail == 'invalid shutdown mode "x"'


@pytest.mark.parametrize("text", ["2", "-1", "abc", ""])
def test_invalid_node_ids(worker: PcpWorker, text: str) -> None:
    _login(worker)
    for kind in "CDdOH":
        with pytest.raises(PgError) as info:
            worker._dispatch(Packet(kind, text.encode() + b"\0"))
        assert info.value.severity == "ERROR"
        assert info.value.hint == "node ids go from 0 to 1; pcp_node_info lists the nodes and their status"
