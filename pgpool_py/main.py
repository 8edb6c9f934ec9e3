"""
The main process: owns the listen sockets, the shared memory and the children; never serves a
client.  One loop: wait on the signal doorbell, dispatch each recorded signal to a
``handle_<name>`` method, respawn what died.

Main is the only writer of cluster-wide state (backend status, primary/main node); other
processes ask through the request queue in shared memory and SIGUSR1.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Callable

from pgpool_py import failover, pidfile
from pgpool_py import log as pglog
from pgpool_py.child.child import AuthFiles, Child, RuntimePaths, load_auth_files, reload_everything
from pgpool_py.child.pending import Handoff
from pgpool_py.config import BackendConfig, Config
from pgpool_py.errors import ConfigError, ServerHalt
from pgpool_py.listen import close_listeners, open_listeners
from pgpool_py.health.check import run_health_check
from pgpool_py.health.primary import SearchStopped, find_primary_node_repeatedly
from pgpool_py.health.probe import Waker
from pgpool_py.health.sr_check import run_sr_check
from pgpool_py.process import HANDLED_SIGNALS, STRAY_SIGNALS, ExitCode, ProcessKind, reap, spawn
from pgpool_py.shmem.layout import BackendStatus, ChildStatus, Role, SharedState
from pgpool_py.signals import SignalQueue, send, signal_name

log = logging.getLogger(__name__)

STATUS_FILE = "pgpool_status"
# A child that dies this soon after its start, this many times in a row, means something is
# broken at boot (bad config, missing module): stop instead of forking forever.
QUICK_DEATH_SECONDS = 1.0
QUICK_DEATH_LIMIT = 10
MIN_BACKLOG = 128
STOP_MODES = {signal.SIGTERM: "smart", signal.SIGINT: "fast", signal.SIGQUIT: "immediate"}


@dataclass
class ChildSlot:
    pid: int = 0
    started: float = 0.0


@dataclass
class AuxProcess:
    """A process other than the pre-forked children: PCP, health checks, sr_check worker."""

    name: str
    kind: ProcessKind
    slot: int
    title: str
    target: Callable[[], int | None]
    pid: int = 0
    started: float = 0.0


def create_listeners(cfg: Config) -> list[socket.socket]:
    """TCP sockets on listen_addresses:port and the Unix socket in each socket directory."""
    # pgpool-II's backlog, but never tiny: connections held back by TCP_DEFER_ACCEPT count
    # against it, and a full queue drops the SYNs of well-behaved clients.
    backlog = max(cfg.listen_backlog_multiplier * cfg.num_init_children, MIN_BACKLOG)
    return open_listeners(
        "client", cfg.listen_addresses, cfg.port, cfg.unix_socket_directories, backlog,
        unix_mode=cfg.unix_socket_permissions, defer_accept=max(cfg.authentication_timeout, 1),
    )


def create_pcp_listeners(cfg: Config) -> list[socket.socket]:
    """The PCP Unix socket (mode 0777, as pgpool-II) and TCP on pcp_listen_addresses."""
    backlog = cfg.num_init_children * cfg.listen_backlog_multiplier
    return open_listeners("PCP", cfg.pcp_listen_addresses, cfg.pcp_port, [cfg.pcp_socket_dir], backlog)


class Main:
    def __init__(self, cfg: Config, paths: RuntimePaths, discard_status: bool = False) -> None:
        self.cfg = cfg
        self.paths = paths
        self.discard_status = discard_status
        self.children: list[ChildSlot] = []
        self.pid_to_child: dict[int, int] = {}
        self.stopping: signal.Signals | None = None
        self.quick_deaths = 0
        self.listeners: list[socket.socket] = []
        self.pcp_listeners: list[socket.socket] = []
        self.aux: dict[str, AuxProcess] = {}

    # ------------------------------------------------------------------ start

    def run(self) -> int:
        cfg = self.cfg
        self.pid_path = cfg.config_path(cfg.pid_file_name)
        pidfile.create(self.pid_path)
        try:
            # First, so a broken pool_hba.conf, pool_passwd or SSL file stops the start with its
            # one-line reason before anything is bound or searched.
            try:
                self.auth_files: AuthFiles = load_auth_files(cfg, self.paths)
            except (ConfigError, OSError) as exc:
                raise ServerHalt(str(exc)) from None
            # Before the primary search, which may last search_primary_node_timeout: a stop
            # signal must end it cleanly, not kill us (SIGTERM) or raise KeyboardInterrupt.
            self.sigq = SignalQueue(HANDLED_SIGNALS + STRAY_SIGNALS)
            self.listeners = create_listeners(cfg)
            self.pcp_listeners = create_pcp_listeners(cfg)
            self.handoff = Handoff()  # children pass clients still on their way in (child/pending.py)
            self.shm = SharedState(cfg.num_init_children, cfg.max_pool)
            self._init_backends()
            stop = self._pending_stop()
            if stop is not None:
                log.info("received %s shutdown request", STOP_MODES[stop])
                return 0
            self.children = [ChildSlot() for _ in range(cfg.num_init_children)]
            # Children share the parent's pages as long as nothing writes to them: keep the
            # collector from touching every object's header after the fork.
            gc.freeze()
            # Helpers first: once a client is served, PCP and the checks are there too.
            for aux in self._aux_processes():
                self.aux[aux.name] = aux
                self._spawn_aux(aux)
            for index in range(cfg.num_init_children):
                self._spawn_child(index)
            # As pgpool-II: the file says the nodes' states from the start (after -D too).
            self.write_status_file()
            log.info("pgpool-py successfully started. listening on port %d", cfg.port)
            return self._loop()
        finally:
            self._close_listeners()
            pidfile.remove(self.pid_path)

    def _init_backends(self) -> None:
        """Copy backend_* into shared memory and apply the pgpool_status file."""
        shm, cfg = self.shm, self.cfg
        saved = [] if self.discard_status else self._read_status_file()
        if self.discard_status:
            try:
                os.unlink(self._status_path())
                log.info("Backend status file %s discarded", self._status_path())
            except FileNotFoundError:
                pass
        for b in cfg.backends:
            self._publish_backend(b, BackendStatus.CONNECT_WAIT if b.port else BackendStatus.UNUSED)
        shm.req.num_backends = len(cfg.backends)
        if saved and "up" in saved:
            for node, word in enumerate(saved[: len(cfg.backends)]):
                if shm.backends[node].status == BackendStatus.UNUSED:
                    continue
                shm.backends[node].status = BackendStatus.DOWN if word == "down" else BackendStatus.CONNECT_WAIT
        if cfg.clustering_mode == "streaming_replication":
            # pgpool-II searches at startup too: no primary yet delays it up to search_primary_node_timeout.
            shm.req.primary_node_id = self.search_primary()
        self._update_main_and_primary()

    def search_primary(self) -> int:
        """
        The primary node (-1: none), searched for up to search_primary_node_timeout, at start
        and in a failover.  A stop signal ends the search at once, -1 then: the signal is left
        pending for whoever stops the server.
        """
        try:
            return find_primary_node_repeatedly(
                self.cfg, self.shm, sleep=self._sleep_unless_stopping,
                waker=Waker(self.sigq.wakeup_fd, self._raise_if_stopping),
            )
        except SearchStopped:
            log.info("find_primary_node_repeatedly: stopped by a shutdown request")
            return -1

    def _publish_backend(self, b: BackendConfig, status: BackendStatus) -> None:
        """A node's settings and first status, into shared memory (at start, or added by reload)."""
        info = self.shm.backends[b.node_id]
        info.hostname = b.hostname.encode()[:255]
        info.port = b.port
        info.weight = b.weight
        info.data_directory = b.data_directory.encode()[:255]
        info.application_name = b.application_name.encode()[:63]
        info.flag = b.flag
        info.pg_role = -1
        info.status = status
        info.status_changed_time = time.time()

    def _pending_stop(self) -> signal.Signals | None:
        """A shutdown request that arrived during start-up (the loop has not run yet)."""
        self.sigq.drain()
        return next((signal.Signals(s) for s in self.sigq.pending if s in STOP_MODES), None)

    def _raise_if_stopping(self) -> None:
        if self._pending_stop() is not None:
            raise SearchStopped()

    def _sleep_unless_stopping(self, seconds: float) -> None:
        # Other signals (SIGCHLD in a failover) stay pending for the loop and do not end the
        # sleep: sigq.wait() would return at once while they are pending.
        deadline = time.monotonic() + seconds
        while True:
            self._raise_if_stopping()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            select.select([self.sigq.wakeup_fd], [], [], left)

    def _update_main_and_primary(self) -> None:
        """The main node, the primary and each node's role from the nodes' status; a node whose
        role changes gets a new last_status_change, as its status change does (pgpool-II docs)."""
        shm = self.shm
        valid = shm.valid_nodes()
        shm.req.main_node_id = main = valid[0] if valid else -1
        # primary_node_id comes from find_primary_node (startup, failover); a node that is no
        # longer valid is no primary: -1 until the next search.
        streaming = self.cfg.clustering_mode == "streaming_replication"
        if streaming:
            primary = shm.req.primary_node_id
            if primary >= 0 and not shm.node_valid(primary):
                shm.req.primary_node_id = -1
        for node in range(shm.req.num_backends):
            if streaming:
                role = Role.PRIMARY if node == shm.req.primary_node_id else Role.STANDBY
            else:
                role = Role.MAIN if node == main else Role.REPLICA
            b = shm.backends[node]
            if b.role != role:
                b.role = int(role)
                b.status_changed_time = time.time()

    # ------------------------------------------------------------------ status file

    def _status_path(self) -> str:
        return os.path.join(self.cfg.work_dir, STATUS_FILE)

    def _read_status_file(self) -> list[str]:
        try:
            with open(self._status_path()) as f:
                return [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning('could not read status file "%s": %s; ignoring it', self._status_path(), exc.strerror)
            return []
        except UnicodeDecodeError:
            # As pgpool-II with an unreadable file: start as if there were none.
            log.warning('could not read status file "%s": it is not text; ignoring it', self._status_path())
            return []

    def write_status_file(self) -> None:
        shm = self.shm
        words = []
        for node in range(shm.req.num_backends):
            st = shm.backends[node].status
            words.append("down" if st == BackendStatus.DOWN else "unused" if st == BackendStatus.UNUSED else "up")
        if "up" not in words:
            return  # pgpool-II keeps the last file when every node is down
        path = self._status_path()
        try:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write("\n".join(words) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning('could not write status file "%s": %s', path, exc.strerror)

    # ------------------------------------------------------------------ children

    def _spawn_child(self, index: int) -> None:
        listeners = self.listeners
        child = Child(index, self.cfg, self.shm, listeners, os.getpid(), self.paths, self.auth_files, self.handoff)
        pid = spawn(
            ProcessKind.CHILD,
            child.run,
            title="wait for connection request",
            slot=index,
            before_run=lambda: self._after_fork(keep=listeners, child=True),
        )
        self.children[index] = ChildSlot(pid, time.monotonic())
        self.pid_to_child[pid] = index
        self.shm.procs[index].pid = pid

    def _aux_processes(self) -> list[AuxProcess]:
        """The helper processes this configuration needs, made afresh on each respawn."""
        from pgpool_py.pcp_server.server import run_pcp_server

        main_pid = os.getpid()
        out = [
            AuxProcess(
                "pcp", ProcessKind.PCP, -1, "PCP: wait for connection request",
                lambda: run_pcp_server(self.cfg, self.shm, self.paths, main_pid, self.pcp_listeners),
            )
        ]
        # The targets read self.cfg when the process starts, so a respawn gets the reloaded one.
        def health_check(node: int) -> Callable[[], int]:
            return lambda: run_health_check(self.cfg, self.shm, node, main_pid)

        for b in self.cfg.backends:
            if b.in_use and self.cfg.health_check(b.node_id).period > 0:
                out.append(AuxProcess(
                    f"health_check{b.node_id}", ProcessKind.HEALTH_CHECK, b.node_id,
                    f"health check process({b.node_id})", health_check(b.node_id),
                ))
        if self.cfg.clustering_mode == "streaming_replication" and self.cfg.sr_check_period > 0:
            out.append(AuxProcess(
                "sr_check", ProcessKind.WORKER, -1, "worker process",
                lambda: run_sr_check(self.cfg, self.shm, main_pid),
            ))
        return out

    def _spawn_aux(self, aux: AuxProcess) -> None:
        keep = self.pcp_listeners if aux.kind == ProcessKind.PCP else []
        aux.pid = spawn(aux.kind, aux.target, title=aux.title, slot=aux.slot,
                        before_run=lambda: self._after_fork(keep=keep))
        aux.started = time.monotonic()

    def _after_fork(self, keep: list[socket.socket], child: bool = False) -> None:
        """In a new process: drop main's doorbell and the sockets it does not serve."""
        self.sigq.close()
        for sock in self.listeners + self.pcp_listeners:
            if sock not in keep:
                sock.close()
        if not child:
            self.handoff.close()

    def _aux_by_pid(self, pid: int) -> AuxProcess | None:
        return next((a for a in self.aux.values() if a.pid == pid), None)

    def signal_aux(self, name: str, sig: signal.Signals) -> None:
        aux = self.aux.get(name)
        if aux is not None and aux.pid:
            send(aux.pid, sig)

    def _child_pids(self) -> list[int]:
        return [c.pid for c in self.children if c.pid] + [a.pid for a in self.aux.values() if a.pid]

    def _signal_children(self, sig: signal.Signals) -> None:
        for pid in self._child_pids():
            send(pid, sig)

    # ------------------------------------------------------------------ loop

    def _loop(self) -> int:
        while True:
            self.sigq.wait((), None if self.stopping is None else 1.0)
            for signum in self.sigq.pop_all():
                handler = getattr(self, f"handle_{signal_name(signum).lower()}", None)
                if handler is not None:
                    handler()
                else:
                    log.warning("received signal %s; pgpool-py does not use it, ignoring it", signal_name(signum))
            if self.stopping is not None and not self._child_pids():
                log.info("all children exited; pgpool-py is shut down")
                return 0

    def handle_sigchld(self) -> None:
        """SIGCHLD: reap every exited process; respawn children by their exit code."""
        for pid, code, sig in reap():
            index = self.pid_to_child.pop(pid, None)
            if index is None:
                aux = self._aux_by_pid(pid)
                if aux is not None:
                    self._reap_aux(aux, code, sig)
                continue
            slot = self.children[index]
            lived = time.monotonic() - slot.started
            self.children[index] = ChildSlot()
            self.shm.procs[index].pid = 0
            if self.shm.procs[index].status != ChildStatus.WAIT_FOR_CONNECT:
                # Killed mid-session (e.g. SIGKILL): count its client out, or the connection
                # counter leaks and reserved_connections ends up refusing every client.
                self.shm.procs[index].status = ChildStatus.WAIT_FOR_CONNECT
                self.shm.conn_counter_down()
            if sig is not None:
                how = f"was terminated by signal {signal_name(sig)}"
                if sig == signal.SIGKILL:
                    how += " (perhaps out of memory?)"
            else:
                how = f"exited with status {code}"
            if self.stopping is not None:
                log.debug("child process %d %s", pid, how)
                continue
            if code == ExitCode.FATAL:
                raise ServerHalt(f"child process {pid} exited with a fatal error; shutting down")
            if code == ExitCode.NO_RESTART and sig is None:
                # A stop signal sent to this child alone: main runs on, so its slot must not stay empty.
                log.info("child process %d %s on a stop request; restarting it", pid, how)
            elif sig is not None:
                log.warning("child process with pid: %d %s", pid, how)
            self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS and sig is None else 0
            if self.quick_deaths >= QUICK_DEATH_LIMIT:
                raise ServerHalt(
                    f"child processes keep exiting right after they start ({self.quick_deaths} in a row); "
                    "shutting down instead of forking forever"
                )
            self._spawn_child(index)
            log.debug("fork a new child process with pid: %d", self.children[index].pid)

    def _reap_aux(self, aux: AuxProcess, code: int | None, sig: int | None) -> None:
        pid, aux.pid = aux.pid, 0
        if self.stopping is not None:
            return
        if code == ExitCode.FATAL:
            raise ServerHalt(f"{aux.name} process exited with a fatal error; shutting down")
        if code == ExitCode.NO_RESTART and sig is None:
            # Stopped by a signal of its own, or no longer wanted (health_check_period or
            # sr_check_period set to 0 by a reload): only the configuration can tell.
            if aux.name not in {wanted.name for wanted in self._aux_processes()}:
                log.debug("%s process %d exited; the configuration no longer asks for it", aux.name, pid)
                return
            log.info("%s process %d exited on a stop request; restarting it", aux.name, pid)
        elif sig is not None or code:
            log.warning("%s process %d %s; restarting it", aux.name, pid,
                        f"was terminated by signal {signal_name(sig)}" if sig is not None
                        else f"exited with status {code}")
        if time.monotonic() - aux.started < QUICK_DEATH_SECONDS:
            # Do not spin: a helper that dies at once is retried on the next loop tick.
            self.sigq.sleep(QUICK_DEATH_SECONDS)
        self._spawn_aux(aux)

    def handle_sighup(self) -> None:
        """SIGHUP: reload pgpool.conf; children re-read it when idle."""
        log.info("reload config files.")
        try:
            new_cfg, warnings, auth = reload_everything(self.cfg, self.paths)
        except (ConfigError, OSError) as exc:
            log.error("reload rejected; the running configuration stays", extra={"detail": str(exc)})
            return
        for text in warnings:
            log.warning("%s", text)
        old_weights = {b.node_id: b.weight for b in self.cfg.backends if b.in_use}
        for b in new_cfg.backends:
            if b.node_id in old_weights and b.in_use and b.weight != old_weights[b.node_id]:
                log.info("initializing pool configuration: backend weight for backend:%d changed from %f to %f",
                         b.node_id, old_weights[b.node_id], b.weight,
                         extra={"detail": "This change will be effective from next client session"})
        self.cfg = new_cfg
        self.auth_files = auth
        pglog.configure(new_cfg)
        pglog.reopen()
        for b in new_cfg.backends:
            info = self.shm.backends[b.node_id]
            if b.in_use and (b.node_id >= self.shm.req.num_backends or info.status == BackendStatus.UNUSED):
                # As in pgpool-II, a node added by reload starts down: pcp_attach_node (or
                # pcp_recovery_node) brings it in once it is ready.
                self._publish_backend(b, BackendStatus.DOWN)
                log.info("backend node %d (%s:%d) added; it is down until attached with pcp_attach_node",
                         b.node_id, b.hostname, b.port)
                continue
            info.weight = b.weight
            info.data_directory = b.data_directory.encode()[:255]
            info.flag = b.flag
        self.shm.req.num_backends = max(self.shm.req.num_backends, len(new_cfg.backends))
        self.write_status_file()
        self.shm.req.config_generation += 1
        self._signal_children(signal.SIGHUP)
        # Running helpers re-read the file themselves; start those newly enabled.
        failover.start_missing_aux(self)

    def handle_sigusr1(self) -> None:
        """SIGUSR1: process the node requests queued in shared memory (failover.py)."""
        failover.process_requests(self)

    def handle_sigusr2(self) -> None:
        """SIGUSR2: wake every child out of its pause()."""
        self._signal_children(signal.SIGUSR2)

    def handle_sigterm(self) -> None:
        self._stop(signal.SIGTERM)

    def handle_sigint(self) -> None:
        self._stop(signal.SIGINT)

    def handle_sigquit(self) -> None:
        self._stop(signal.SIGQUIT)

    def _stop(self, sig: signal.Signals) -> None:
        if self.stopping is not None and sig == self.stopping:
            return
        log.info("received %s shutdown request", STOP_MODES[sig])
        self.stopping = sig
        self._close_listeners()
        self._signal_children(sig)

    def _close_listeners(self) -> None:
        close_listeners(self.listeners + self.pcp_listeners, unlink=True)
        self.listeners, self.pcp_listeners = [], []
