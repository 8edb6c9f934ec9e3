"""
One PCP connection (pgpool-II's pcp_worker, logged as ``pcp_child``).

The client authenticates first (``M`` -> a fresh random salt, ``R`` -> md5 check against
pcp.conf), then sends commands until ``X`` or the end of the connection.  Each command has a
handler that returns the whole reply; the reply shapes live in ``pcp.protocol``.  A handler
raises PgError: severity ERROR is sent as an ``E`` packet and the connection stays usable,
FATAL is sent and ends the connection, as in pgpool-II.  Bytes that are not PCP (length 0 or
>= 260, unknown kind, a payload that is not strings) get a FATAL and close this connection only.

Cluster changes (attach, detach, promote) are asked of main through the request queue
(``pgpool_py.requests``); stop and reload send main the very signals of ``pgpool-py stop`` and
``pgpool-py reload``.  Main answers a finished failover with SIGUSR2, which the PCP server passes
on to its workers.
"""

from __future__ import annotations

import hmac
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pcp import protocol as proto
from pcp.errors import PcpProtocolError
from pcp.types import HealthCheckStats, NodeInfo, PoolStatusItem, ProcessInfo, backend_status_name
from pgpool_py import log as pglog, proctitle
from pgpool_py.config import render
from pgpool_py.config.params import BackendFlag
from pgpool_py.child.child import reload_everything
from pgpool_py.errors import ConfigError, PgError
from pgpool_py.health.check import health_check_stats_rows, pg_role, pg_status
from pgpool_py.process import ExitCode
from pgpool_py.requests import register_node_operation_request
from pgpool_py.shmem.layout import (
    MAX_BACKENDS,
    BackendStatus,
    LockId,
    RequestDetail,
    RequestKind,
    Role,
    show_time,
)
from pgpool_py.signals import SignalQueue, send

if TYPE_CHECKING:
    from pgpool_py.child.child import RuntimePaths
    from pgpool_py.config import Config
    from pgpool_py.shmem.layout import SharedState

log = logging.getLogger(__name__)

WORKER_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
_RECV_SIZE = 8192
# A client that stops reading its reply must not hold a worker forever.
SEND_TIMEOUT = 60.0
# Main wakes a waiting worker with SIGUSR2 when a failover ends; this re-check only covers a
# failover that ends without one (e.g. the request was dropped as invalid).
FAILOVER_RECHECK_SECONDS = 0.5
# pgpool-II's shutdown mode letters -> the signal `pgpool -m MODE stop` sends to main.
SHUTDOWN_SIGNALS = {"s": signal.SIGTERM, "f": signal.SIGINT, "i": signal.SIGQUIT}
# pgpool-II's process_set_configuration_parameter accepts these for client_min_messages.
_CLIENT_MIN_MESSAGES = (
    "debug5", "debug4", "debug3", "debug2", "debug1", "log", "commerror", "info", "notice", "warning", "error",
)
# Req_info->request kind at the head of the queue -> what pgpool-II says is in progress.
_IN_PROGRESS = {
    RequestKind.NODE_UP: "failback is in progress",
    RequestKind.NODE_DOWN: "failover is in progress",
    RequestKind.PROMOTE_NODE: "promote node operation is in progress",
}
_NODE_LIST_HINT = "pcp_node_info lists the nodes and their status"


class _Disconnect(Exception):
    """The connection is over: X, end of file, a FATAL sent, or a fast/immediate shutdown."""




Handler = Callable[[bytes], bytes]


class PcpWorker:
    def __init__(
        self,
        conn: socket.socket,
        cfg: Config,
        shm: SharedState,
        main_pid: int,
        users: dict[str, str],
        users_error: str | None,
        paths: RuntimePaths,
    ) -> None:
        self.conn = conn
        self.cfg = cfg
        self.paths = paths
        self.shm = shm
        self.main_pid = main_pid
        self.users = users
        self.users_error = users_error
        self.buf = bytearray()
        self.salt: bytes | None = None
        self.authenticated = False
        self.stopping = False  # SIGTERM: finish the current command, then exit
        # kind -> (what the process title says, handler), pgpool-II's pcp_process_command switch.
        self.commands: dict[str, tuple[str, Handler]] = {
            "L": ("node count", self.node_count),
            "I": ("node info", self.node_info),
            "H": ("health check stats", self.health_check_stats),
            "N": ("process count", self.process_count),
            "P": ("process info", self.process_info),
            "B": ("status request", self.pool_status),
            "C": ("attach node", self.attach_node),
            "D": ("detach node", self.detach_node),
            "d": ("detach node", self.detach_node_gracefully),
            "J": ("promote node", self.promote_node),
            "j": ("promote node", self.promote_node_gracefully),
            "O": ("recovery", self.recovery_node),
            "T": ("shutdown", self.stop_pgpool),
            "t": ("shutdown", self.stop_pgpool),
            "Z": ("reload config", self.reload_config),
            "V": ("log rotate", self.log_rotate),
            "G": ("invalidate query cache", self.invalidate_query_cache),
            "W": ("watchdog info", self.watchdog_info),
            "A": ("set configuration parameter", self.set_parameter),
        }

    # ------------------------------------------------------------------ connection

    def run(self) -> int:
        self.sigq = SignalQueue(WORKER_SIGNALS)
        self.conn.settimeout(SEND_TIMEOUT)
        # %h/%r in log_line_prefix name the PCP client, as they name a SQL client: a failed
        # login can be traced to where it came from.
        if self.conn.family == socket.AF_UNIX:
            pglog.session.host = "[local]"
        else:
            peer = self.conn.getpeername()
            pglog.session.host, pglog.session.port = str(peer[0]), str(peer[1])
        try:
            self._serve()
        except _Disconnect:
            pass
        except OSError as exc:
            log.debug("PCP connection lost: %s", exc)
        finally:
            self.conn.close()
        return ExitCode.NO_RESTART

    def _serve(self) -> None:
        while True:
            try:
                reply = self._dispatch(self._next_packet())
            except PcpProtocolError as exc:
                # Bytes that are not PCP: nothing after them can be trusted.
                self._fail(PgError(exc.message, detail=exc.detail, severity="FATAL"))
            except PgError as exc:
                self._fail(exc)
            else:
                self._send(reply)

    def _fail(self, exc: PgError) -> None:
        """Send ``exc`` as an E packet; anything worse than ERROR ends the connection."""
        level = logging.ERROR if exc.severity == "ERROR" else logging.CRITICAL  # CRITICAL prints as FATAL
        log.log(level, "%s", exc.message, extra={"detail": exc.detail, "hint": exc.hint})
        self._send(proto.error_response(exc.message, exc.detail, exc.hint, severity=exc.severity))
        if exc.severity != "ERROR":
            raise _Disconnect

    def _send(self, data: bytes) -> None:
        if data:
            self.conn.sendall(data)

    def _next_packet(self) -> proto.Packet:
        """The next request; waits for it, watching the signals."""
        # pgpool-II has no limit here; a connection that never logs in should not hold a worker.
        timeout = self.cfg.authentication_timeout
        deadline = time.monotonic() + timeout if timeout > 0 and not self.authenticated else None
        while (packet := self._take_packet()) is None:
            if self.stopping:
                raise _Disconnect
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                log.info("PCP client did not authenticate within authentication_timeout (%ds)", timeout)
                raise _Disconnect
            ready = self.sigq.wait((self.conn.fileno(),), remaining)
            self._handle_signals()
            if ready:
                data = self.conn.recv(_RECV_SIZE)
                if not data:
                    raise _Disconnect
                self.buf += data
        return packet

    def _take_packet(self) -> proto.Packet | None:
        """The first whole request of the buffer, if there is one; raises PcpProtocolError.

        One at a time, as pgpool-II reads them: requests that came before bad bytes are answered.
        """
        if len(self.buf) < proto.HEADER_SIZE:
            return None
        proto.decode_packets(self.buf[: proto.HEADER_SIZE], requests=True)  # checks the kind and length
        end = 1 + int.from_bytes(self.buf[1 : proto.HEADER_SIZE], "big", signed=True)
        packets, used = proto.decode_packets(self.buf[:end], requests=True)
        del self.buf[:used]
        return packets[0] if packets else None

    def _handle_signals(self) -> None:
        for signum in self.sigq.pop_all():
            if signum in (signal.SIGINT, signal.SIGQUIT):
                raise _Disconnect
            if signum == signal.SIGTERM:
                self.stopping = True
            # SIGUSR2 only ends a wait; SIGHUP and SIGUSR1 mean nothing to a worker (pgpool-II ignores them).

    def _dispatch(self, packet: proto.Packet) -> bytes:
        kind = packet.kind
        if kind == "X":
            raise _Disconnect
        if kind in ("M", "R"):
            proctitle.set_title("PCP: processing authentication")
            try:
                return self._salt() if kind == "M" else self._authenticate(packet.payload)
            except PcpProtocolError as exc:
                raise PgError(exc.message, detail=exc.detail, severity="FATAL") from exc
        if not self.authenticated:
            raise PgError(
                "authentication failed for new PCP connection", detail="connection not authorized", severity="FATAL"
            )
        if kind == "F":
            return b""  # pgpool-II's legacy "stop online recovery": no reply at all
        what, handler = self.commands[kind]
        proctitle.set_title(f"PCP: processing {what} request")
        try:
            return handler(packet.payload)
        except PcpProtocolError as exc:
            # The kind is known but its payload is not what it needs (e.g. no NUL terminator).
            raise PgError("invalid PCP packet", detail=exc.detail or exc.message, severity="FATAL") from exc

    # ------------------------------------------------------------------ authentication

    def _salt(self) -> bytes:
        self.salt = os.urandom(proto.SALT_LENGTH)
        return proto.salt_reply(self.salt)

    def _authenticate(self, payload: bytes) -> bytes:
        salt, self.salt = self.salt, None  # a salt serves one attempt
        if salt is None:
            raise PgError("authentication failed", detail="username and/or password does not match", severity="FATAL")
        user, given = proto.decode_auth_request(payload)
        if self.users_error is not None:
            raise PgError(
                "failed to authenticate PCP user", detail=self.users_error,
                hint="the pgpool-py log names the problem; fix pcp.conf, then reload", severity="FATAL",
            )
        stored = self.users.get(user)
        expected = proto.auth_hash(stored, user, salt) if stored is not None else ""
        if stored is None or len(user) > proto.MAX_USER_PASSWD_LEN or not hmac.compare_digest(expected, given):
            raise PgError(
                f'authentication failed for user "{user}"', detail="username and/or password does not match",
                severity="FATAL",
            )
        self.authenticated = True
        return proto.auth_ok_reply()

    # ------------------------------------------------------------------ arguments

    def _num_backends(self) -> int:
        return int(self.shm.req.num_backends)

    def _node_id(self, text: str, message: str, detail: str) -> int:
        """A node id in [0, NUM_BACKENDS); ``detail`` may use {id}."""
        try:
            node = int(text)
        except ValueError:
            node = -1
        count = self._num_backends()
        if not 0 <= node < count:
            hint = f"node ids go from 0 to {count - 1}; {_NODE_LIST_HINT}" if count else "no backend is configured"
            raise PgError(message, detail=detail.format(id=text.strip()), hint=hint)
        return node

    @staticmethod
    def _first_string(payload: bytes) -> str:
        return proto.request_strings(payload)[0]

    @staticmethod
    def _option(payload: bytes) -> str:
        """The one-letter argument of T/t, Z, V."""
        return payload[:1].decode("latin-1")

    # ------------------------------------------------------------------ information

    def node_count(self, payload: bytes) -> bytes:
        return proto.node_count_reply(self._num_backends())

    def node_info(self, payload: bytes) -> bytes:
        text = self._first_string(payload)
        if text.strip() == "-1":
            return proto.node_info_response([self._node_record(n) for n in range(self._num_backends())])
        node = self._node_id(text, "informing node info failed", "invalid node ID : {id}")
        return proto.node_info_response([self._node_record(node)])

    def _role(self, node: int) -> Role:
        # As SHOW POOL_NODES: pgpool-II's role comes from the primary/main node ids.
        req = self.shm.req
        if self.cfg.clustering_mode == "streaming_replication":
            return Role.PRIMARY if node == req.primary_node_id else Role.STANDBY
        return Role.MAIN if node == req.main_node_id else Role.REPLICA

    def _node_record(self, node: int) -> NodeInfo:
        shm = self.shm
        b = shm.backends[node]
        total_weight = sum(shm.backends[i].weight for i in range(self._num_backends())) or 1.0
        return NodeInfo(
            backend_hostname=b.hostname.decode(errors="replace"),
            backend_port=b.port,
            backend_status=b.status,
            quarantine=bool(b.quarantine),
            pg_backend_status=pg_status(self.cfg, shm, node),
            backend_weight=b.weight / total_weight,
            role=int(self._role(node)),
            pg_role=pg_role(self.cfg, shm, node),
            standby_delay=b.standby_delay,
            replication_state=b.replication_state.decode(errors="replace"),
            replication_sync_state=b.replication_sync_state.decode(errors="replace"),
            status_changed_time=int(b.status_changed_time),
        )

    def health_check_stats(self, payload: bytes) -> bytes:
        node = self._node_id(
            self._first_string(payload), "informing health check stats info failed", "invalid node ID {id}"
        )
        b = self.shm.backends[node]
        # The same numbers as SHOW POOL_HEALTH_CHECK_STATS; all zero while no check has run.
        (total, success, fail, skip, retry, avg_retry, max_retry, max_duration, min_duration, avg_duration,
         last, last_success, last_skip, last_fail) = health_check_stats_rows(self.shm)[node]
        return proto.health_check_stats_reply(
            HealthCheckStats(
                node_id=node,
                hostname=b.hostname.decode(errors="replace"),
                port=b.port,
                status=backend_status_name(b.status, bool(b.quarantine)),
                role=self._role(node).label,
                last_status_change=show_time(b.status_changed_time),
                total_count=int(total),
                success_count=int(success),
                fail_count=int(fail),
                skip_count=int(skip),
                retry_count=int(retry),
                average_retry_count=float(avg_retry),
                max_retry_count=int(max_retry),
                max_health_check_duration=int(max_duration),
                min_health_check_duration=int(min_duration),
                average_health_check_duration=float(avg_duration),
                last_health_check=last,
                last_successful_health_check=last_success,
                last_skip_health_check=last_skip,
                last_failed_health_check=last_fail,
            )
        )

    def _child_pids(self) -> list[tuple[int, int]]:
        """(child slot, pid) of every running child."""
        procs = self.shm.procs
        return [(i, int(procs[i].pid)) for i in range(self.shm.num_children) if procs[i].pid]

    def process_count(self, payload: bytes) -> bytes:
        return proto.process_count_reply([pid for _slot, pid in self._child_pids()])

    def process_info(self, payload: bytes) -> bytes:
        text = self._first_string(payload)
        try:
            wanted = int(text)
        except ValueError:
            wanted = -1
        children = [(slot, pid) for slot, pid in self._child_pids() if wanted in (0, pid)]
        if not children and wanted != 0:
            raise PgError(
                "informing process info failed", detail=f"invalid process ID : {text}",
                hint="pcp_proc_count lists the pids of the child processes",
            )
        rows = [row for slot, _pid in children for row in self._pool_rows(slot)]
        return proto.process_info_response(rows)

    def _pool_rows(self, slot: int) -> list[ProcessInfo]:
        """The rows of one child, the same as SHOW POOL_POOLS (SharedState.pool_rows)."""
        rows = []
        for r in self.shm.pool_rows(slot, self.cfg.child_life_time, self.cfg.client_idle_limit):
            rows.append(ProcessInfo(
                int(r[0]), r[1], int(r[2]), int(r[3]), int(r[4]), r[5], r[6], r[7], r[8], r[9], r[10],
                int(r[11]), int(r[12]), int(r[13]), int(r[14]), int(r[15]), r[16],
            ))
        return rows

    def pool_status(self, payload: bytes) -> bytes:
        return proto.pool_status_response([PoolStatusItem(*row) for row in render.show_rows(self.cfg)])

    def watchdog_info(self, payload: bytes) -> bytes:
        raise PgError(
            "PCP: informing watchdog info failed", detail="watchdog is not enabled",
            hint="pgpool-py has no watchdog; pcp_node_info and pcp_proc_info describe this server",
        )

    def invalidate_query_cache(self, payload: bytes) -> bytes:
        raise PgError("query cache is not enabled", hint="pgpool-py has no query cache (memory_cache_enabled)")

    def set_parameter(self, payload: bytes) -> bytes:
        values = proto.request_strings(payload)
        name, value = values[0], values[1] if len(values) > 1 else ""
        if name.lower() != "client_min_messages":
            raise PgError("PCP: set configuration parameter failed", detail=f'invalid parameter "{name}"',
                          hint="only client_min_messages can be set")
        if value.lower() not in _CLIENT_MIN_MESSAGES:
            raise PgError("PCP: set configuration parameter failed",
                          detail=f'invalid value "{value}" for parameter "{name}"',
                          hint="valid values: " + ", ".join(_CLIENT_MIN_MESSAGES))
        # Accepted for compatibility: this worker sends no notices at any level.
        return proto.command_complete("a")

    # ------------------------------------------------------------------ node operations

    def _request(self, kind: RequestKind, node: int, details: RequestDetail) -> None:
        if not register_node_operation_request(self.shm, self.main_pid, kind, (node,), details):
            raise PgError(
                "failed to register the node request", detail="the request queue is full or main is gone",
                hint="retry when the current failover has finished",
            )

    def _wait_for_failover(self) -> None:
        """Until main has processed every queued request (``-g``), bounded by recovery_timeout."""
        timeout = max(self.cfg.recovery_timeout, 1)
        deadline = time.monotonic() + timeout
        while self.shm.req.switching or not self.shm.queue_empty():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PgError(
                    "the node request was queued but the failover did not finish in time",
                    detail=f"still in progress after recovery_timeout ({timeout}s)",
                    hint=f"check the pgpool-py log; {_NODE_LIST_HINT}",
                )
            self.sigq.wait((), min(remaining, FAILOVER_RECHECK_SECONDS))
            self._handle_signals()

    def attach_node(self, payload: bytes) -> bytes:
        node = self._node_id(self._first_string(payload), "could not process attach node request",
                             "node id {id} is not valid")
        if self.shm.backends[node].status == BackendStatus.UNUSED:
            raise PgError("could not process attach node request", detail=f"node {node} is not in use",
                          hint=f"set backend_hostname{node} and backend_port{node}, then reload")
        # An up node still gets CommandComplete, as in pgpool-II: main ignores the request.
        self._request(RequestKind.NODE_UP, node, RequestDetail.CONFIRMED)
        return proto.command_complete("c")

    def _detach_target(self, text: str) -> int:
        """The node a detach request names, with pgpool-II's degenerate_backend_set_ex checks
        and messages (what to do about it in DETAIL and HINT)."""
        try:
            node = int(text)
        except ValueError:
            node = -1
        count = self._num_backends()
        range_hint = f"node ids go from 0 to {count - 1}; {_NODE_LIST_HINT}" if count else "no backend is configured"
        if not 0 <= node < MAX_BACKENDS:
            raise PgError(
                f"invalid degenerate backend request, node id: {text.strip()} is out of range. "
                f"node id must be between [0 and {MAX_BACKENDS}]",
                hint=range_hint,
            )
        b = self.shm.backends[node]
        status = BackendStatus(b.status)
        message = (
            f"invalid degenerate backend request, node id : {node} status: [{int(status)}] is not valid for failover"
        )
        if node >= count:
            raise PgError(message, detail=f"node {node} is not configured", hint=range_hint)
        if status == BackendStatus.DOWN:
            raise PgError(message, detail=f"node {node} is already down",
                          hint=f"pcp_attach_node -n {node} brings it back")
        if status == BackendStatus.UNUSED:
            raise PgError(message, detail=f"node {node} is not in use", hint=_NODE_LIST_HINT)
        if b.flag & BackendFlag.DISALLOW_TO_FAILOVER:
            raise PgError(f"degenerate backend request for node_id: {node} from pid [{os.getpid()}] is canceled "
                          "because failover is disallowed on the node",
                          hint=f"backend_flag{node} is DISALLOW_TO_FAILOVER")
        return node

    def _detach(self, payload: bytes, gracefully: bool) -> bytes:
        node = self._detach_target(self._first_string(payload))
        self._request(RequestKind.NODE_DOWN, node, RequestDetail.SWITCHOVER | RequestDetail.CONFIRMED)
        if gracefully:
            self._wait_for_failover()
        return proto.command_complete("d")

    def detach_node(self, payload: bytes) -> bytes:
        return self._detach(payload, gracefully=False)

    def detach_node_gracefully(self, payload: bytes) -> bytes:
        return self._detach(payload, gracefully=True)

    def _promote(self, payload: bytes, gracefully: bool) -> bytes:
        text, switchover = proto.decode_promote_request(payload)
        message = "could not process promote request"
        node = self._node_id(text, message, "node id {id} is not valid")
        if self.cfg.clustering_mode != "streaming_replication":
            # FATAL in pgpool-II; an ERROR here keeps the connection, as for every other refusal.
            raise PgError("invalid pgpool mode for process promote request",
                          detail=f"not in streaming replication mode, can't promote node id {node}",
                          hint="promotion needs backend_clustering_mode = streaming_replication")
        if node == self.shm.req.primary_node_id:
            raise PgError("invalid promote request",
                          detail=f"specified node is already primary node, can't promote node id {node}",
                          severity="FATAL")
        if not self.shm.node_valid(node):
            # pgpool-II answers CommandComplete and only logs; say it instead.
            raise PgError(message, detail=f"node {node} is not up",
                          hint=f"attach it first with pcp_attach_node -n {node}")
        # Switchover (-s): failover detaches the current primary and failover_command promotes
        # this node; without it pgpool-py takes the node for the primary and marks the others
        # down, PostgreSQL is left alone.
        details = RequestDetail.CONFIRMED | (RequestDetail.PROMOTE if switchover else RequestDetail.NONE)
        self._request(RequestKind.PROMOTE_NODE, node, details)
        if gracefully:
            self._wait_for_failover()
        return proto.command_complete("d")

    def promote_node(self, payload: bytes) -> bytes:
        return self._promote(payload, gracefully=False)

    def promote_node_gracefully(self, payload: bytes) -> bytes:
        return self._promote(payload, gracefully=True)

    def _refuse_while_switching(self) -> None:
        """Facts §2.1 item 3: no recovery or shutdown while main works through queued requests."""
        req = self.shm.req
        if req.switching and not self.shm.queue_empty():
            head = req.request[(req.request_queue_head + 1) % len(req.request)]
            detail = _IN_PROGRESS.get(head.kind, "operation is in progress")
            raise PgError("failed to process PCP request at the moment", detail=detail,
                          hint="retry when the failover has finished")

    def recovery_node(self, payload: bytes) -> bytes:
        self._refuse_while_switching()
        node = self._node_id(self._first_string(payload), "process recovery request failed",
                             "node id {id} is not valid")
        with self.shm.lock(LockId.PCP_REQUEST):
            busy = bool(self.shm.req.pcp_recovery_in_progress)
            if not busy:
                self.shm.req.pcp_recovery_in_progress = True
                self.shm.req.pcp_recovery_pid = os.getpid()
        if busy:
            raise PgError(
                "process recovery request failed",
                detail="pgpool-II is already processing another recovery request.",  # pgpool-II's text
                hint="pgpool-py runs one recovery at a time: wait for it to finish "
                     "(pcp_node_info shows the recovered node up), then retry",
                severity="FATAL",
            )
        try:
            from pgpool_py.recovery import process_recovery_request

            process_recovery_request(self.cfg, self.shm, node, self.main_pid, self.sigq)
        finally:
            with self.shm.lock(LockId.PCP_REQUEST):
                self.shm.req.pcp_recovery_in_progress = False
                self.shm.req.pcp_recovery_pid = 0
        return proto.command_complete("c")

    # ------------------------------------------------------------------ server control

    def stop_pgpool(self, payload: bytes) -> bytes:
        mode = self._option(payload)
        sig = SHUTDOWN_SIGNALS.get(mode)
        if sig is None:
            raise PgError("PCP: error while processing shutdown request", detail=f'invalid shutdown mode "{mode}"',
                          hint="modes: s (smart), f (fast), i (immediate)")
        self._refuse_while_switching()
        # Reply first: main's shutdown ends this worker. "-s cluster" is local: there is no watchdog.
        self._send(proto.command_complete("t"))
        log.info("PCP: stop request, sending %s to pgpool-py main process %d", sig.name, self.main_pid)
        send(self.main_pid, sig)
        return b""

    def reload_config(self, payload: bytes) -> bytes:
        # Checked here first, as `pgpool-py reload` checks: main would reject a bad file only in
        # its log, after the tool had printed "Command Successful".
        try:
            reload_everything(self.cfg, self.paths)
        except (ConfigError, OSError) as exc:
            raise PgError("reload rejected; the running configuration stays", detail=str(exc)) from None
        # The signal `pgpool-py reload` sends; "-s cluster" is local: there is no watchdog.
        if not send(self.main_pid, signal.SIGHUP):
            raise PgError("process reload config request failed",
                          detail="failed to signal pgpool-py main process")
        return proto.command_complete("z")

    def log_rotate(self, payload: bytes) -> bytes:
        if not self.cfg.logging_collector:
            raise PgError(
                "log rotation needs logging_collector = on",
                hint="with logging_collector = off pgpool-py logs to stderr; rotate that where it is collected "
                "(journald, or logrotate with copytruncate)",
            )
        pglog.rotate()  # the other processes follow the new file by themselves
        return proto.command_complete("v")
