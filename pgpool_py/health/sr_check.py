"""
The streaming-replication check worker (pgpool-II's ``do_worker_child``).

Every ``sr_check_period`` seconds, unless a failover or follow_primary_command is running: ask
each valid node for its role and WAL position as ``sr_check_user``, record the live role
(``pg_role``), the replication delay of each standby in bytes (``standby_delay``: the primary's
``pg_current_wal_lsn()`` minus the standby's ``pg_last_wal_replay_lsn()``; 0 for the primary)
and each node's ``pg_stat_replication`` state (cleared on each round, as pgpool-II does, so a
node that is no longer listed, or the new primary, shows none); with ``detach_false_primary``
request a false primary down.
Last, the role of each down node whose server the health check finds up, for its pg_role
(SHOW POOL_NODES shows what a detached server really is, as pgpool-II does).

Signals: SIGTERM/SIGINT/SIGQUIT exit, SIGHUP re-reads pgpool.conf, SIGUSR1 (main, after each
failover) checks again at once, SIGUSR2 only wakes it.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from pgpool_py.process import die_with_parent
from pgpool_py.config import Config, reload_config
from pgpool_py.errors import ConfigError, PgError
from pgpool_py.health.check import pg_status
from pgpool_py.health.primary import false_primaries, probe_timeout, sr_target
from pgpool_py.health.probe import Waker, query
from pgpool_py.process import ExitCode
from pgpool_py.requests import register_node_operation_request
from pgpool_py.shmem.layout import BackendStatus, RequestDetail, RequestKind, Role, SharedState
from pgpool_py.signals import SignalQueue

log = logging.getLogger(__name__)

WORKER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
ROLE_AND_LSN = ("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
                " ELSE pg_current_wal_lsn() END")
REPLICATION_STATE = "SELECT application_name, state, sync_state FROM pg_stat_replication"
ROLE = "SELECT pg_is_in_recovery()"


class Stop(BaseException):
    """A shutdown signal arrived."""


def parse_lsn(text: str | None) -> int | None:
    """'16/B374D848' -> byte position; None stays None (a standby that has replayed nothing)."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class SrCheckWorker:
    def __init__(self, cfg: Config, shm: SharedState, main_pid: int) -> None:
        self.cfg = cfg
        self.shm = shm
        self.main_pid = main_pid
        self.check_now = False
        self.waker: Waker | None = None  # the signal doorbell, once running in our own process

    def _take_signals(self) -> None:
        for signum in self.sigq.pop_all():
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                raise Stop()
            if signum == signal.SIGHUP:
                try:
                    self.cfg, _warnings = reload_config(self.cfg)
                except (ConfigError, OSError) as exc:
                    log.warning("sr_check worker kept its configuration: %s", exc)
            elif signum == signal.SIGUSR1:
                self.check_now = True

    def run(self) -> int:
        die_with_parent()
        self.sigq = SignalQueue(WORKER_SIGNALS)
        self.waker = Waker(self.sigq.wakeup_fd, self._take_signals)
        try:
            while True:
                self._take_signals()
                period = self.cfg.sr_check_period
                if period <= 0 or os.getppid() != self.main_pid:
                    return ExitCode.NO_RESTART
                req = self.shm.req
                if not req.switching and not req.follow_primary_ongoing:
                    self.check_once()
                deadline = time.monotonic() + period
                self.check_now = False
                while not self.check_now and (left := deadline - time.monotonic()) > 0:
                    self.sigq.wait((), left)
                    self._take_signals()
        except Stop:
            return ExitCode.NO_RESTART

    def check_once(self) -> None:
        cfg, shm = self.cfg, self.shm
        roles: dict[int, Role] = {}
        lsns: dict[int, int | None] = {}
        for node in shm.valid_nodes():
            try:
                rows = query(sr_target(cfg, shm, node), ROLE_AND_LSN, probe_timeout(cfg), self.waker)
            except PgError as exc:
                log.debug("sr_check: node %d: %s", node, exc.message)
                shm.backends[node].pg_role = -1
                continue
            role = Role.STANDBY if rows[0][0] == "t" else Role.PRIMARY
            roles[node], lsns[node] = role, parse_lsn(rows[0][1])
            shm.backends[node].pg_role = int(role)
        primary = int(shm.req.primary_node_id)
        if primary in roles:
            shm.backends[primary].standby_delay = 0  # a standby that became the primary
            if roles[primary] == Role.PRIMARY:
                self._record_delays(primary, roles, lsns)
        self._record_replication_state(primary if primary in roles else -1)
        if cfg.detach_false_primary:
            for node in false_primaries(cfg, shm, roles, self.waker):
                log.warning("sr_check: node %d is a false primary; detaching it", node)
                register_node_operation_request(shm, self.main_pid, RequestKind.NODE_DOWN, (node,),
                                                RequestDetail.SWITCHOVER | RequestDetail.CONFIRMED)
        for node in range(shm.req.num_backends):
            if shm.backends[node].status == BackendStatus.DOWN and pg_status(cfg, shm, node) == "up":
                self._record_down_node_role(node)

    def _record_down_node_role(self, node: int) -> None:
        """What a detached server is now: its pg_role only, nothing else looks at it."""
        try:
            rows = query(sr_target(self.cfg, self.shm, node), ROLE, probe_timeout(self.cfg), self.waker)
        except PgError as exc:
            log.debug("sr_check: down node %d: %s", node, exc.message)
            self.shm.backends[node].pg_role = -1
            return
        self.shm.backends[node].pg_role = int(Role.STANDBY if rows and rows[0][0] == "t" else Role.PRIMARY)

    def _record_delays(self, primary: int, roles: dict[int, Role], lsns: dict[int, int | None]) -> None:
        cfg, shm = self.cfg, self.shm
        primary_lsn = lsns[primary]
        if primary_lsn is None:
            return
        for node, role in roles.items():
            if role != Role.STANDBY:
                continue
            standby_lsn = lsns[node]
            delay = max(0, primary_lsn - standby_lsn) if standby_lsn is not None else 0
            shm.backends[node].standby_delay = delay
            over = cfg.delay_threshold > 0 and delay > cfg.delay_threshold
            if cfg.log_standby_delay == "always" or (cfg.log_standby_delay == "if_over_threshold" and over):
                log.info("Replication of node: %d is behind %d bytes from the primary server (node: %d)",
                         node, delay, primary)

    def _record_replication_state(self, primary: int) -> None:
        """Each node's state and sync_state in the primary's pg_stat_replication; empty for the
        primary, for a node not listed there, and for every node when the primary (-1: none,
        or it did not answer) cannot tell, as pgpool-II clears them on each round."""
        cfg, shm = self.cfg, self.shm
        by_name: dict[str, tuple[str, str]] = {}
        if primary >= 0:
            try:
                rows = query(sr_target(cfg, shm, primary), REPLICATION_STATE, probe_timeout(cfg), self.waker)
            except PgError as exc:
                log.debug("sr_check: pg_stat_replication on node %d: %s", primary, exc.message)
            else:
                by_name = {r[0]: (r[1] or "", r[2] or "") for r in rows if r[0]}
        for node in range(shm.req.num_backends):
            b = shm.backends[node]
            state, sync_state = by_name.get(b.application_name.decode(), ("", "")) if node != primary else ("", "")
            b.replication_state = state.encode()[:63]
            b.replication_sync_state = sync_state.encode()[:63]


def run_sr_check(cfg: Config, shm: SharedState, main_pid: int) -> int:
    """Target of the sr_check worker process."""
    return SrCheckWorker(cfg, shm, main_pid).run()
