"""
The health check process of one backend node (pgpool-II's ``do_health_check_child``).

Every ``health_check_period`` seconds: connect as ``health_check_user`` and run a trivial
query, the whole exchange bounded by ``health_check_timeout`` (and ``connect_timeout``) as a
deadline.  A failure is retried ``health_check_max_retries`` times, ``health_check_retry_delay``
apart; then the node is requested down through the request queue (main runs the failover).

A node that is already down is tried once per period too, only to know what its server is
(``pg_status``, and auto_failback): pgpool-II counts that round as a skipped check, and
whatever it finds asks nothing of main (but an auto_failback).
The process only writes its own node's statistics (SHOW POOL_HEALTH_CHECK_STATS).

Signals: SIGTERM/SIGINT/SIGQUIT exit at once (even mid-check), SIGHUP re-reads pgpool.conf,
SIGUSR1/SIGUSR2 only wake it.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from pgpool_py.process import die_with_parent
from pgpool_py.config import Config, reload_config
from pgpool_py.config.loader import HealthCheckConfig
from pgpool_py.errors import ConfigError, PgError
from pgpool_py.failover import failover_allowed
from pgpool_py.health.probe import ProbeFailed, Target, Waker, query
from pgpool_py.process import ExitCode
from pgpool_py.requests import register_node_operation_request
from pgpool_py.shmem.layout import (
    BackendStatus,
    HealthCheckStats,
    RequestDetail,
    RequestKind,
    Role,
    ServerStatus,
    SharedState,
    show_time,
)
from pgpool_py.signals import SignalQueue
from pgpool_py.tls import libpq_params

log = logging.getLogger(__name__)

HEALTH_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
HEALTH_QUERY = "SELECT 1"
NO_TIMEOUT = 3600.0  # health_check_timeout = 0 and connect_timeout = 0: pgpool waits "forever"


class Stop(BaseException):
    """A shutdown signal arrived: leave whatever we are doing."""


def check_timeout(hc: HealthCheckConfig) -> float:
    """The deadline of one attempt: the smaller of health_check_timeout and connect_timeout."""
    bounds = [float(hc.timeout)] if hc.timeout > 0 else []
    if hc.connect_timeout > 0:
        bounds.append(hc.connect_timeout / 1000.0)
    return min(bounds) if bounds else NO_TIMEOUT


class HealthCheck:
    def __init__(self, cfg: Config, shm: SharedState, node_id: int, main_pid: int) -> None:
        self.cfg = cfg
        self.shm = shm
        self.node_id = node_id
        self.main_pid = main_pid
        self.last_auto_failback = float("-inf")  # monotonic time of our last auto_failback request
        self.waker: Waker | None = None  # the signal doorbell, once running in our own process

    # ------------------------------------------------------------------ signals

    def _take_signals(self) -> None:
        for signum in self.sigq.pop_all():
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                raise Stop()
            if signum == signal.SIGHUP:
                self._reload()

    def _reload(self) -> None:
        try:
            self.cfg, _warnings = reload_config(self.cfg)  # main already logged the warnings
        except (ConfigError, OSError) as exc:
            log.warning("health check process kept its configuration: %s", exc)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sigq.wait((), left)
            self._take_signals()

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        die_with_parent()
        self.sigq = SignalQueue(HEALTH_SIGNALS)
        self.waker = Waker(self.sigq.wakeup_fd, self._take_signals)
        try:
            while True:
                self._take_signals()
                hc = self.cfg.health_check(self.node_id)
                if hc.period <= 0 or os.getppid() != self.main_pid:
                    return ExitCode.NO_RESTART
                self.check_once(hc)
                self._sleep(hc.period)
        except Stop:
            return ExitCode.NO_RESTART

    def check_once(self, hc: HealthCheckConfig) -> None:
        """One round: a skipped round for a down node (a probe only), or a check with retries."""
        node, b = self.node_id, self.shm.backends[self.node_id]
        stats = self.shm.health_stats[node]
        now = time.time()
        if b.status == BackendStatus.UNUSED or (b.status == BackendStatus.DOWN and not b.quarantine):
            # pgpool-II counts the round (total_count, last_health_check) as skipped.
            stats.total_count += 1
            stats.last_health_check = now
            stats.skip_count += 1
            stats.last_skip_health_check = now
            if b.status == BackendStatus.DOWN:
                self._probe_down_node(hc)
            return
        stats.total_count += 1
        stats.last_health_check = now
        started = time.monotonic()
        retries = 0
        while True:
            try:
                query(self._target(hc), HEALTH_QUERY, check_timeout(hc), self.waker)
                stats.server_status = ServerStatus.UP
                self._record(stats, started, retries, ok=True)
                if b.quarantine:
                    log.info("health check: quarantined node %d answers again; requesting failback", node)
                    self._request(RequestKind.NODE_UP, RequestDetail.UPDATE)
                return
            except PgError as exc:
                stats.server_status = ServerStatus.DOWN
                if retries < hc.max_retries:
                    retries += 1
                    stats.retry_count += 1
                    log.warning("health check retrying on DB node: %d (round:%d)", node, retries,
                                extra={"detail": exc.message})
                    self._sleep(hc.retry_delay)
                    continue
                self._record(stats, started, retries, ok=False)
                self._failed(hc, exc)
                return

    def _failed(self, hc: HealthCheckConfig, exc: PgError) -> None:
        node = self.node_id
        timed_out = isinstance(exc, ProbeFailed) and exc.timed_out
        what = f"timed out after {check_timeout(hc):g} s" if timed_out else exc.message
        log.error("health check failed on node %d (timeout:%d)", node, int(timed_out), extra={"detail": what})
        if self.shm.backends[node].status == BackendStatus.DOWN:
            # Detached (or quarantined) while we checked: there is nothing left to fail over.
            log.info("health check: node %d is already down; not degenerating it", node)
            return
        if not failover_allowed(self.shm, node):
            log.info("health check: node %d has DISALLOW_TO_FAILOVER; not degenerating it", node)
            return
        # pgpool-II: a timeout restarts every child, a refused connection allows the partial restart.
        self._request(RequestKind.NODE_DOWN, RequestDetail.NONE if timed_out else RequestDetail.SWITCHOVER)

    def _record(self, stats: HealthCheckStats, started: float, retries: int, ok: bool) -> None:
        ms = int((time.monotonic() - started) * 1000)
        now = time.time()
        if ok:
            stats.success_count += 1
            stats.last_successful_health_check = now
        else:
            stats.fail_count += 1
            stats.last_failed_health_check = now
        stats.max_retry_count = max(stats.max_retry_count, retries)
        stats.total_health_check_duration += ms
        stats.max_health_check_duration = max(stats.max_health_check_duration, ms)
        if stats.success_count + stats.fail_count == 1 or ms < stats.min_health_check_duration:
            stats.min_health_check_duration = ms

    # ------------------------------------------------------------------ auto_failback

    def _auto_failback_due(self) -> bool:
        """A down standby that streams again may come back (auto_failback), once per interval."""
        cfg, b = self.cfg, self.shm.backends[self.node_id]
        return bool(
            cfg.auto_failback
            and cfg.clustering_mode == "streaming_replication"
            and b.status == BackendStatus.DOWN
            and b.replication_state == b"streaming"
            and time.monotonic() - self.last_auto_failback >= cfg.auto_failback_interval
        )

    def _probe_down_node(self, hc: HealthCheckConfig) -> None:
        """One attempt at a down node: its pg_status, and an auto_failback when it is due.
        A failure is only recorded; the node is down already."""
        stats = self.shm.health_stats[self.node_id]
        try:
            query(self._target(hc), HEALTH_QUERY, check_timeout(hc), self.waker)
        except PgError as exc:
            stats.server_status = ServerStatus.DOWN
            log.debug("health check: down node %d does not answer: %s", self.node_id, exc.message)
            return
        stats.server_status = ServerStatus.UP
        if self._auto_failback_due():
            log.info("request auto failback, node id:%d", self.node_id)
            self.last_auto_failback = time.monotonic()
            self._request(RequestKind.NODE_UP, RequestDetail.NONE)

    # ------------------------------------------------------------------ helpers

    def _target(self, hc: HealthCheckConfig) -> Target:
        b = self.shm.backends[self.node_id]
        return Target(b.hostname.decode(), b.port, hc.user, hc.password, hc.database,
                      tuple(libpq_params(self.cfg).items()))

    def _request(self, kind: RequestKind, details: RequestDetail) -> None:
        register_node_operation_request(self.shm, self.main_pid, kind, (self.node_id,), details)


def run_health_check(cfg: Config, shm: SharedState, node_id: int, main_pid: int) -> int:
    """Target of the health check process of ``node_id``."""
    return HealthCheck(cfg, shm, node_id, main_pid).run()


def pg_status(cfg: Config, shm: SharedState, node: int) -> str:
    """
    The pg_status of SHOW POOL_NODES and pcp_node_info: what the health check last saw of the
    node's server, "up" or "down", whatever pgpool's status of the node; "unknown" without
    health checks (pgpool-II pings the node when asked; here it is at most a period old).
    """
    if cfg.health_check(node).period <= 0:
        return "unknown"
    return ServerStatus(shm.health_stats[node].server_status).label


def pg_role(cfg: Config, shm: SharedState, node: int) -> str:
    """
    The pg_role of SHOW POOL_NODES and pcp_node_info, as pgpool-II shows it: in streaming
    replication what the sr_check worker last saw the server be ("primary"/"standby"), down
    nodes included, and "unknown" unless pg_status is "up" and sr_check_period is set; in the
    other modes the node's role ("main"/"replica").
    """
    if cfg.clustering_mode != "streaming_replication":
        return "main" if node == shm.req.main_node_id else "replica"
    if cfg.sr_check_period <= 0 or pg_status(cfg, shm, node) != "up":
        return "unknown"
    role = shm.backends[node].pg_role
    return Role(role).label if role >= 0 else "unknown"


def health_check_stats_rows(shm: SharedState) -> list[list[str]]:
    """The statistics part of SHOW POOL_HEALTH_CHECK_STATS / pcp_health_check_stats, per node:
    total_count success_count fail_count skip_count retry_count average_retry_count
    max_retry_count max_duration min_duration average_duration last_health_check
    last_successful_health_check last_skip_health_check last_failed_health_check."""
    rows = []
    for node in range(shm.req.num_backends):
        s = shm.health_stats[node]
        checked = s.success_count + s.fail_count
        rows.append([
            str(s.total_count), str(s.success_count), str(s.fail_count), str(s.skip_count),
            str(s.retry_count), f"{s.retry_count / checked if checked else 0:f}", str(s.max_retry_count),
            str(s.max_health_check_duration), str(s.min_health_check_duration),
            f"{s.total_health_check_duration / checked if checked else 0:f}",
            show_time(s.last_health_check), show_time(s.last_successful_health_check),
            show_time(s.last_skip_health_check), show_time(s.last_failed_health_check),
        ])
    return rows


