"""
A pre-forked child: accept one client at a time on the shared listen sockets and serve it
(pgpool-II's ``do_child``).

Signals (pgpool-II's contract): SIGTERM smart — finish the current session, then exit;
SIGINT fast and SIGQUIT immediate — drop the session and exit now; SIGHUP reload when idle;
SIGUSR1 close idle pooled connections; SIGUSR2 wake up (end a pause()).
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from pgpool_py import log as pglog
from pgpool_py import proctitle
from pgpool_py.child.backend import open_socket
from pgpool_py.child.commands import PoolCommands
from pgpool_py.child.hba import load_hba
from pgpool_py.child.passwd import load_pool_passwd
from pgpool_py.child.pool import ConnectionPool
from pgpool_py.child.session import FastExit, Session
from pgpool_py.config import reload_config
from pgpool_py.errors import ConfigError, PgError
from pgpool_py.process import ExitCode
from pgpool_py.protocol import messages as m
from pgpool_py.shmem.layout import BackendStatus, ChildStatus, SharedState
from pgpool_py.signals import SignalQueue

if TYPE_CHECKING:
    from pgpool_py.config import Config

log = logging.getLogger(__name__)

AuthFiles = tuple[list[Any], dict[str, Any]]  # (pool_hba.conf rules, pool_passwd entries)

CHILD_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
PR_SET_PDEATHSIG = 1
SWITCHING_POLL = 1.0  # seconds between checks while main runs a failover
SWITCHING_MAX_WAIT = 30.0  # pgpool-II gives up (and exits) after 30 s


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to signal us when main dies, so no orphan keeps the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the getppid() check still catches it
        pass


@dataclass(frozen=True)
class RuntimePaths:
    """Files named on the command line (-f, -F, -a) rather than in pgpool.conf."""

    config_file: str
    pcp_file: str
    hba_file: str


def pool_passwd_path(cfg: Config) -> str:
    return os.path.join(cfg.config_dir, cfg.pool_passwd) if cfg.pool_passwd else ""


def load_auth_files(cfg: Config, paths: RuntimePaths) -> AuthFiles:
    rules = load_hba(paths.hba_file) if cfg.enable_pool_hba else []
    path = pool_passwd_path(cfg)
    return rules, (load_pool_passwd(path) if path else {})


class Child:
    def __init__(
        self,
        index: int,
        cfg: Config,
        shm: SharedState,
        listeners: Sequence[socket.socket],
        main_pid: int,
        paths: RuntimePaths,
        auth_files: AuthFiles,
    ) -> None:
        self.paths = paths
        self.index = index
        self.cfg = cfg
        self.shm = shm
        self.listeners = list(listeners)
        self.listen_fds = [s.fileno() for s in self.listeners]
        self.main_pid = main_pid
        self.hba_rules, self.pool_passwd = auth_files
        self.pool = ConnectionPool(shm, index, cfg.max_pool)
        self.commands = PoolCommands(self)
        self.stop_requested = False
        self.reload_requested = False
        self.close_idle_requested = False
        self.in_session = False
        self.proc = shm.procs[index]

    # ------------------------------------------------------------------ signals

    def on_interrupt(self) -> None:
        """Act on recorded signals; raises FastExit for SIGINT/SIGQUIT during a session."""
        for signum in self.sigq.pop_all():
            if signum in (signal.SIGINT, signal.SIGQUIT):
                raise FastExit()
            if signum == signal.SIGTERM:
                self.stop_requested = True
                self._close_listeners()
            elif signum == signal.SIGHUP:
                self.reload_requested = True
            elif signum == signal.SIGUSR1:
                self.close_idle_requested = True
            # SIGUSR2 only wakes us: the caller re-checks whatever it waits for.

    def _close_listeners(self) -> None:
        for s in self.listeners:
            s.close()
        self.listeners, self.listen_fds = [], []

    # ------------------------------------------------------------------ state shown to others

    def set_status(self, status: ChildStatus) -> None:
        self.proc.status = status

    def set_title(self, title: str) -> None:
        proctitle.set_title(title)

    def main_node(self) -> int:
        """Lowest node id that is up or waiting (pgpool-II's REAL_MAIN_NODE_ID)."""
        backends = self.shm.backends
        for node in range(self.shm.req.num_backends):
            if backends[node].status in (BackendStatus.UP, BackendStatus.CONNECT_WAIT):
                return node
        return -1

    def backend_connected(self, node: int) -> None:
        # pgpool-II: the first child that reaches a "waiting" node marks it up.
        b = self.shm.backends[node]
        if b.status == BackendStatus.CONNECT_WAIT:
            self.shm.set_backend_status(node, BackendStatus.UP)

    def backend_failed(self, node: int, exc: PgError | None) -> None:
        log.warning(
            "backend node %d is not reachable", node, extra={"detail": exc.detail if exc else None}
        )

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        die_with_parent()
        self.sigq = SignalQueue(CHILD_SIGNALS)
        if os.getppid() != self.main_pid:
            return ExitCode.NO_RESTART
        proc = self.proc
        proc.pid = os.getpid()
        proc.start_time = time.time()
        proc.connected = False
        proc.client_connection_count = 0
        proc.need_to_restart = False
        proc.current_pool = -1
        proc.status = ChildStatus.WAIT_FOR_CONNECT
        idle_since = time.monotonic()
        try:
            while True:
                try:
                    self.on_interrupt()
                except FastExit:
                    return ExitCode.NO_RESTART
                if self.stop_requested or os.getppid() != self.main_pid:
                    return ExitCode.NO_RESTART
                if proc.need_to_restart:
                    return ExitCode.RESTART
                if self.reload_requested:
                    self._reload()
                if self.close_idle_requested:
                    self.close_idle_requested = False
                    self.pool.close_idle()
                cfg = self.cfg
                timeout = self.pool.expire(cfg.connection_life_time)
                if cfg.child_life_time > 0 and proc.connected:
                    left = idle_since + cfg.child_life_time - time.monotonic()
                    if left <= 0:
                        log.debug("child life %d seconds expired", cfg.child_life_time)
                        return ExitCode.RESTART
                    timeout = left if timeout is None else min(timeout, left)
                self.set_title("wait for connection request")
                ready = self.sigq.wait(self.listen_fds, timeout)
                if not ready:
                    continue
                if not self._wait_while_paused():
                    continue
                for fd in ready:
                    sock = self._accept(fd)
                    if sock is not None:
                        code = self._serve(*sock)
                        idle_since = time.monotonic()
                        if code is not None:
                            return code
                        break
        finally:
            self.pool.discard_all()
            proc.status = ChildStatus.WAIT_FOR_CONNECT

    def _wait_while_paused(self) -> bool:
        """
        The seed's pause(): while online recovery (2nd stage) or a failover is in progress,
        leave the client in the listen backlog and sleep until main's SIGUSR2.
        Returns False when a stop request ended the wait.
        """
        req = self.shm.req
        waited = 0.0
        while req.in_recovery or req.switching:
            try:
                self.on_interrupt()
            except FastExit:
                self.stop_requested = True
            if self.stop_requested:
                return False
            if req.switching and not req.in_recovery:
                if waited >= SWITCHING_MAX_WAIT:
                    log.warning("failover did not finish within %d seconds", int(SWITCHING_MAX_WAIT))
                    break
                waited += SWITCHING_POLL
                self.sigq.wait((), SWITCHING_POLL)
            else:
                self.sigq.wait((), None)  # woken by SIGUSR2 from main after finish_recovery
        return True

    def _accept(self, fd: int) -> tuple[socket.socket, str, str, str] | None:
        listener = next((s for s in self.listeners if s.fileno() == fd), None)
        if listener is None:
            return None
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None  # another child won the race
        sock.setblocking(True)
        if sock.family == socket.AF_UNIX:
            return sock, "", "", "local"
        # TCP_DEFER_ACCEPT hands us a connection when its first bytes arrive, or when the
        # kernel gives up waiting: one with nothing to read has been silent all along.
        if not select.select([sock], [], [], 0)[0]:
            sock.close()
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock, str(addr[0]), str(addr[1]), "host"

    def _serve(self, sock: socket.socket, host: str, port: str, conn_type: str) -> int | None:
        """Serve one client; return an exit code when the child must exit afterwards."""
        shm, proc, cfg = self.shm, self.proc, self.cfg
        count = shm.conn_counter_up()
        proc.client_host = host.encode()[:63]
        proc.client_port = port.encode()[:7]
        pglog.session.host, pglog.session.port = (host or "[local]"), port
        exit_code: int | None = None
        try:
            if cfg.reserved_connections > 0 and count > cfg.num_init_children - cfg.reserved_connections:
                sock.sendall(m.error_response("Sorry, too many clients already", "53300", severity="FATAL"))
                return None
            self.in_session = True
            Session(self, sock, host, port, conn_type).run()
        except FastExit:
            exit_code = ExitCode.NO_RESTART
        except OSError as exc:
            log.debug("client connection error: %s", exc)
        finally:
            self.in_session = False
            try:
                sock.close()
            finally:
                shm.conn_counter_down()
                pglog.clear_session()
                proc.client_host = b""
                proc.client_port = b""
                proc.connected = True
                proc.client_connection_count += 1
                proc.status = ChildStatus.WAIT_FOR_CONNECT
        if exit_code is not None:
            return exit_code
        if cfg.child_max_connections > 0 and proc.client_connection_count >= cfg.child_max_connections:
            log.info("child exiting, %d connections reached", cfg.child_max_connections)
            return ExitCode.RESTART
        return None

    def _reload(self) -> None:
        self.reload_requested = False
        try:
            new_cfg, _warnings = reload_config(self.cfg, self.paths.config_file)
            auth = load_auth_files(new_cfg, self.paths)
        except (ConfigError, OSError) as exc:
            log.debug("child keeps the running configuration: %s", exc)
            return
        self.cfg = new_cfg
        self.hba_rules, self.pool_passwd = auth

    # ------------------------------------------------------------------ cancel

    def forward_cancel(self, packet: m.CancelRequest) -> None:
        """Find the session that owns (pid, key) in shared memory and cancel it on each node."""
        shm = self.shm
        key = int.from_bytes(packet.key[:4], "big")
        for child in range(shm.num_children):
            for pool in range(shm.max_pool):
                main = None
                for node in range(shm.req.num_backends):
                    info = shm.conn(child, pool, node)
                    if info.in_use and info.pid == packet.pid and info.key == key:
                        main = node
                        break
                if main is None:
                    continue
                for node in range(shm.req.num_backends):
                    info = shm.conn(child, pool, node)
                    if not info.in_use:
                        continue
                    b = shm.backends[node]
                    log.info("forwarding cancel request to backend %d", node)
                    self._send_cancel(b.hostname.decode(), b.port, info.pid, info.key.to_bytes(4, "big"))
                return
        log.info("invalid cancel key: pid %d", packet.pid)

    def _send_cancel(self, host: str, port: int, pid: int, key: bytes) -> None:
        try:
            with open_socket(host, port, 5.0) as s:
                s.sendall(m.cancel_request(pid, key))
                s.settimeout(5.0)
                s.recv(1)  # the backend closes once it has the request
        except OSError as exc:
            log.warning("could not forward cancel request to %s:%d: %s", host, port, exc)
