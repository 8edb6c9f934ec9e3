"""
pgpool-py as a real server process for tests.

``pgpool_factory(nodes=None, *, mode="streaming", extra=None, program=None, wait_ready=True,
hba_text=None, args=None)`` writes pgpool.conf / pcp.conf / pool_hba.conf into a directory of the test's tmp_path
and starts ``python -m pgpool_py -n -f ... -F ... -a ...`` in its own session, its
stdout and stderr going to a log file.  ``program`` runs another pgpool-compatible
binary with the same options instead (``["/usr/sbin/pgpool"]`` for pgpool-II); ``args`` are
added to the command line.
Without ``nodes`` it uses the session's ``pg_cluster`` (``pg_native_cluster`` for
``mode="native"``).

Ready means a client can connect as postgres to database ``test`` and run SELECT 1.
On a failing test the tail of each server's log is added to the report.  At teardown
every server's whole process group is killed, so no child outlives its test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgpool_py
from pgpool_py.cluster import (
    HOST,
    SERVER_USER,
    PgNode,
    free_port,
    run_psql,
    write_pcp_conf,
    write_pcppass,
    write_pgpool_conf,
    write_pool_hba_conf,
)
from pgpool_py.protocol import messages as m

PGPOOL_PY = [sys.executable, "-m", "pgpool_py"]
READY_TIMEOUT = 15.0
# After a fast shutdown request at teardown; then the process group is killed.
TEARDOWN_GRACE = 5.0
LOG_TAIL_LINES = 200
# pgpool's shutdown modes, as `pgpool -m MODE stop` sends them.
SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_CLUSTER_FIXTURES = {"streaming": "pg_cluster", "native": "pg_native_cluster"}

PgpoolFactory = Callable[..., "PgpoolServer"]
_SERVERS = pytest.StashKey[list["PgpoolServer"]]()


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry))
    return members


class PgpoolServer:
    """A running pgpool server started by ``pgpool_factory``."""

    def __init__(self, proc: subprocess.Popen[bytes], *, port: int, pcp_port: int, conf_path: Path,
                 log_path: Path, pcppass_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.pcp_port = pcp_port
        self.conf_path = conf_path
        self.log_path = log_path
        # PCPPASSFILE for the pcp_* tools: `-U postgres -w` then needs no prompt.
        self.pcppass_path = pcppass_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def conninfo(self, dbname: str = "test") -> str:
        return f"host={HOST} port={self.port} user={SERVER_USER} dbname={dbname}"

    def connect(self, **kw: Any) -> psycopg.Connection[Any]:
        """A psycopg connection through pgpool; keyword arguments override the defaults."""
        params: dict[str, Any] = {"host": HOST, "port": self.port, "user": SERVER_USER, "dbname": "test",
                                  "connect_timeout": 5}
        params.update(kw)
        return psycopg.connect(**params)

    def raw_session(self, timeout: float = 5.0, **params: str) -> socket.socket:
        """A socket logged in as postgres to ``test`` (trust), for speaking the protocol by hand;
        ``params`` go into the startup packet too."""
        sock = socket.create_connection((HOST, self.port), timeout=timeout)
        sock.sendall(m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test", **params}))
        reply = read_until(sock)
        assert b"SFATAL\0" not in reply and b"SERROR\0" not in reply, f"login failed: {reply!r}"
        return sock

    def psql(self, sql: str, dbname: str = "test") -> str:
        return run_psql(self.conninfo(dbname), sql)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self, mode: str = "smart", timeout: float = 10) -> int:
        """Shut down in ``mode`` and return the exit status; fail if it hangs or leaves processes."""
        self.signal(SHUTDOWN_SIGNALS[mode])
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"pgpool (pid {self.pid}) did not stop within {timeout}s of a {mode} shutdown\n"
                        + self.log_tail())
        # The main process waits for its children, so nothing of the group may remain.
        leftovers = _group_members(self.pid)
        if leftovers:
            self.kill()
            pytest.fail(f"pgpool left processes {leftovers} behind after a {mode} shutdown\n" + self.log_tail())
        return status

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the main process."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.proc.poll()
            if status is not None:
                pytest.fail(f"pgpool exited with status {status} before accepting connections\n" + self.log_tail())
            try:
                with self.connect(connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as e:
                error = e
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"pgpool not ready within {timeout}s: {error}\n" + self.log_tail())
            time.sleep(0.1)

    def teardown(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGINT)
            try:
                self.proc.wait(TEARDOWN_GRACE)
            except subprocess.TimeoutExpired:
                pass
        # Also catches children whose main process already exited.
        self.kill()


def read_until(sock: socket.socket, until: bytes = b"Z", count: int = 1) -> bytes:
    """Backend messages up to and including the ``count``-th of type ``until`` (ReadyForQuery);
    a socket timeout says they never came."""
    buf = b""
    while True:
        data = sock.recv(65536)
        assert data, f"the connection closed before {count} {until!r}: {buf!r}"
        buf += data
        msgs, _ = m.split_messages(buf)
        if sum(1 for typ, _s, _e in msgs if typ == until[0]) >= count:
            return buf


@pytest.fixture
def pgpool_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PgpoolFactory]:
    servers = request.node.stash.setdefault(_SERVERS, [])

    def start(
        nodes: list[PgNode] | None = None,
        *,
        mode: str = "streaming",
        extra: Mapping[str, str | int | bool] | None = None,
        program: list[str] | None = None,
        wait_ready: bool = True,
        hba_text: str | None = None,
        args: list[str] | None = None,
    ) -> PgpoolServer:
        if nodes is None:
            nodes = request.getfixturevalue(_CLUSTER_FIXTURES[mode])
        directory = tmp_path / f"pgpool{len(servers)}"
        directory.mkdir()
        conf, pcp_conf, hba_conf = directory / "pgpool.conf", directory / "pcp.conf", directory / "pool_hba.conf"
        port, pcp_port = free_port(), free_port()
        write_pgpool_conf(str(conf), nodes, port=port, pcp_port=pcp_port, mode=mode, extra=extra)
        write_pcp_conf(str(pcp_conf))
        if hba_text is None:
            write_pool_hba_conf(str(hba_conf))
        else:
            hba_conf.write_text(hba_text)
        pcppass = directory / "pcppass"
        write_pcppass(str(pcppass))
        log_path = directory / "pgpool.log"
        # Run the same pgpool_py that the tests import, installed or not.
        env = dict(os.environ)
        source_root = os.path.dirname(os.path.dirname(os.path.abspath(pgpool_py.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                (program or PGPOOL_PY) + ["-n", "-f", str(conf), "-F", str(pcp_conf), "-a", str(hba_conf)] + (args or []),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=directory, start_new_session=True,
            )
        server = PgpoolServer(proc, port=port, pcp_port=pcp_port, conf_path=conf, log_path=log_path,
                              pcppass_path=pcppass)
        servers.append(server)
        if wait_ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.teardown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when in ("setup", "call") and report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"pgpool log {server.log_path} (last {LOG_TAIL_LINES} lines)", server.log_tail()))
