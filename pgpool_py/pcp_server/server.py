"""
The PCP server process (pgpool-II's pcp_child, logged as ``pcp_main``).

It listens on ``pcp_listen_addresses``:``pcp_port`` and on the Unix socket
``<pcp_socket_dir>/.s.PGSQL.<pcp_port>``, and forks one worker per accepted connection
(``worker.py``), so a slow command (an online recovery) never holds up another client.
Signals: SIGHUP reloads pgpool.conf and pcp.conf for the next connections, SIGUSR2 (main's
"failover finished") is passed on to the workers, SIGUSR1 asks for a restart, and
SIGTERM/SIGINT/SIGQUIT are passed on to the workers before this process waits for them and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import TYPE_CHECKING

from pgpool_py.process import die_with_parent
from pgpool_py.config import reload_config
from pgpool_py.errors import ConfigError
from pgpool_py.listen import close_listeners
from pgpool_py.pcp_server.pcp_conf import load_pcp_conf
from pgpool_py.pcp_server.worker import PcpWorker
from pgpool_py.process import HANDLED_SIGNALS, ExitCode, ProcessKind, reap, spawn
from pgpool_py.shmem.layout import LockId
from pgpool_py.signals import SignalQueue, send, signal_name

if TYPE_CHECKING:
    from pgpool_py.child.child import RuntimePaths
    from pgpool_py.config import Config
    from pgpool_py.shmem.layout import SharedState

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class PcpServer:
    def __init__(
        self, cfg: Config, shm: SharedState, paths: RuntimePaths, main_pid: int, listeners: list[socket.socket]
    ) -> None:
        self.cfg = cfg
        self.shm = shm
        self.paths = paths
        self.main_pid = main_pid
        self.workers: set[int] = set()
        self.listeners = listeners  # made by main before forking
        self.users: dict[str, str] = {}
        # Why logins fail while pcp.conf cannot be used (told to the client, without the path).
        self.users_error: str | None = None

    def run(self) -> int:
        # Main's death ends us like a smart shutdown: SIGTERM, passed on to the workers.
        die_with_parent(signal.SIGTERM)
        if os.getppid() != self.main_pid:
            return ExitCode.NO_RESTART
        self.sigq = SignalQueue(HANDLED_SIGNALS)
        self._load_users()
        try:
            return self._loop()
        finally:
            close_listeners(self.listeners, unlink=False)

    def _load_users(self) -> None:
        try:
            self.users, skipped = load_pcp_conf(self.paths.pcp_file)
            self.users_error = None
            for why in skipped:
                log.warning("pcp.conf line skipped", extra={"detail": why})
        except ConfigError as exc:
            log.error("PCP logins are refused until pcp.conf is fixed and reloaded", extra={"detail": str(exc)})
            self.users_error = "the PCP password file (pcp.conf) could not be loaded"

    def _loop(self) -> int:
        by_fd = {sock.fileno(): sock for sock in self.listeners}
        while True:
            for fd in self.sigq.wait(by_fd, None):
                self._accept(by_fd[fd])
            for signum in self.sigq.pop_all():
                if signum == signal.SIGCHLD:
                    self._reap()
                elif signum == signal.SIGHUP:
                    self._reload()
                elif signum == signal.SIGUSR2:
                    self._signal_workers(signal.SIGUSR2)
                elif signum == signal.SIGUSR1:
                    log.info("PCP server restart requested")
                    return ExitCode.RESTART
                elif signum in _STOP_SIGNALS:
                    self._stop(signal.Signals(signum))
                    return ExitCode.NO_RESTART

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another wakeup took it, or the client went away
        except OSError as exc:
            log.warning("could not accept PCP connection: %s", exc.strerror)
            return
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        worker = PcpWorker(conn, self.cfg, self.shm, self.main_pid, self.users, self.users_error, self.paths)
        try:
            pid = spawn(ProcessKind.PCP_WORKER, worker.run, title="PCP: new connection", before_run=self._in_worker)
        except OSError as exc:
            log.error("could not fork a PCP worker: %s", exc.strerror)
            return
        finally:
            conn.close()
        self.workers.add(pid)
        log.log(self._worker_log_level(), "PCP process with pid: %d started", pid)

    def _in_worker(self) -> None:
        """A worker serves its one connection: drop this process's sockets and doorbell."""
        self.sigq.close()
        for sock in self.listeners:
            sock.close()

    def _worker_log_level(self) -> int:
        return logging.INFO if self.cfg.log_pcp_processes else logging.DEBUG

    def _reap(self) -> None:
        for pid, code, sig in reap():
            self.workers.discard(pid)
            self._recovery_worker_gone(pid)
            if sig is not None:
                log.warning("PCP process with pid: %d was terminated by signal %s", pid, signal_name(sig))
            elif code:
                log.warning("PCP process with pid: %d exited with status %d", pid, code)
            else:
                log.log(self._worker_log_level(), "PCP process with pid: %d exits with status 0", pid)

    def _recovery_worker_gone(self, pid: int) -> None:
        """
        A worker killed in the middle of an online recovery could not run finish_recovery():
        do it for it, or every later recovery would be refused and children left paused.
        """
        req = self.shm.req
        with self.shm.lock(LockId.PCP_REQUEST):
            if not req.pcp_recovery_in_progress or req.pcp_recovery_pid != pid:
                return
            req.pcp_recovery_in_progress = False
            req.pcp_recovery_pid = 0
        log.warning("PCP process %d died during online recovery; recovery state cleared", pid,
                    extra={"hint": "check the recovered node, then run pcp_recovery_node again if needed"})
        if req.in_recovery:
            req.in_recovery = 0
            send(self.main_pid, signal.SIGUSR2)  # main wakes the children paused for the recovery

    def _reload(self) -> None:
        """SIGHUP: main already reloaded and reported; take the same settings for new workers."""
        try:
            self.cfg, _warnings = reload_config(self.cfg, self.paths.config_file)
        except (ConfigError, OSError) as exc:
            log.debug("PCP server keeps its configuration: %s", exc)
        self._load_users()

    def _signal_workers(self, sig: signal.Signals) -> None:
        for pid in list(self.workers):
            if not send(pid, sig):
                self.workers.discard(pid)

    def _stop(self, sig: signal.Signals) -> None:
        """Pass the shutdown on to the workers and wait for them (smart: after their current command)."""
        close_listeners(self.listeners, unlink=False)
        self.listeners = []
        self._signal_workers(sig)
        self._reap()
        while self.workers:
            self.sigq.wait((), None)
            for signum in self.sigq.pop_all():
                if signum == signal.SIGCHLD:
                    self._reap()
                elif signum in _STOP_SIGNALS and signum != sig:
                    # A faster mode asked for while we wait is passed on as well.
                    sig = signal.Signals(signum)
                    self._signal_workers(sig)


def run_pcp_server(
    cfg: Config, shm: SharedState, paths: RuntimePaths, main_pid: int, listeners: list[socket.socket]
) -> int:
    return PcpServer(cfg, shm, paths, main_pid, listeners).run()
