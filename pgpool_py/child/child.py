"""
A pre-forked child: accept one client at a time on the shared listen sockets and serve it
(pgpool-II's ``do_child``).

Signals (pgpool-II's contract): SIGTERM smart — finish the current session, then exit;
SIGINT fast and SIGQUIT immediate — drop the session and exit now; SIGHUP reload when idle;
SIGUSR1 close idle pooled connections; SIGUSR2 wake up (end a pause()).
"""

from __future__ import annotations

import _socket
import logging
import math
import os
import select
import signal
import socket
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence

from pgpool_py import log as pglog
from pgpool_py import proctitle, tls
from pgpool_py.child.backend import BackendConnection, open_socket
from pgpool_py.child.commands import PoolCommands
from pgpool_py.child.hba import load_hba
from pgpool_py.child.passwd import load_pool_passwd, read_pool_key
from pgpool_py.child.pending import Handoff, PendingClient
from pgpool_py.child.pool import ConnectionPool
from pgpool_py.child.pool import PoolSlot
from pgpool_py.child.router import EPOLL_MAX_EVENTS, parse_redirect_list, weighted_choice
from pgpool_py.child.session import FastExit, Session, query_rows
from pgpool_py.routing import Classifier, RoutingSettings
from pgpool_py.routing.classify import VOLATILITY_UNKNOWN
from pgpool_py.routing.timestamp import ClockCache
from pgpool_py.config import reload_config
from pgpool_py.errors import ConfigError, PgError
from pgpool_py.failover import failover_allowed
from pgpool_py.process import ExitCode, die_with_parent
from pgpool_py.protocol import messages as m
from pgpool_py.requests import register_node_operation_request
from pgpool_py.shmem.layout import BackendStatus, ChildStatus, RequestDetail, RequestKind, SharedState
from pgpool_py.signals import SignalQueue
from pgpool_py.stdlib import AF_UNIX, EPOLLIN, SOCK_STREAM, getppid, monotonic, wall_time

if TYPE_CHECKING:
    from pgpool_py.config import Config

log = logging.getLogger(__name__)

# (pool_hba.conf rules, pool_passwd entries, TLS context for clients or None)
AuthFiles = tuple[list[Any], dict[str, Any], Any, Any]

CHILD_SIGNALS: Final = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
MAX_PENDING: Final = 256  # clients one child keeps while their first packet arrives; more are closed
SWITCHING_POLL: Final = 1.0  # seconds between checks while main runs a failover
SWITCHING_MAX_WAIT: Final = 30.0  # pgpool-II gives up (and exits) after 30 s
VOLATILITY_QUERY_TIMEOUT: Final = 10.0


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class RuntimePaths:
    """Files named on the command line (-f, -F, -a, -k) rather than in pgpool.conf."""

    config_file: str
    pcp_file: str
    hba_file: str
    key_file: str | None = None  # None: $PGPOOLKEYFILE, else ~/.pgpoolkey


def pool_passwd_path(cfg: Config) -> str:
    return os.path.join(cfg.config_dir, cfg.pool_passwd) if cfg.pool_passwd else ""


def load_auth_files(cfg: Config, paths: RuntimePaths) -> AuthFiles:
    """Everything a login needs from files; built at start and again on every reload."""
    rules = load_hba(paths.hba_file) if cfg.enable_pool_hba else []
    path = pool_passwd_path(cfg)
    # AES entries are decrypted with -k, else $PGPOOLKEYFILE, else ~/.pgpoolkey, as pgpool-II does.
    passwords = load_pool_passwd(path, read_pool_key(paths.key_file)) if path else {}
    return rules, passwords, tls.server_context(cfg), tls.backend_context(cfg)


def reload_everything(cfg: Config, paths: RuntimePaths) -> tuple[Config, list[str], AuthFiles]:
    """What a reload takes: pgpool.conf re-read over ``cfg`` (with its warnings) and the auth
    files it names.  ConfigError or OSError rejects the reload whole; main, each child and
    pcp_reload_config's check all decide through here."""
    new_cfg, warnings = reload_config(cfg, paths.config_file)
    return new_cfg, warnings, load_auth_files(new_cfg, paths)


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
        handoff: Handoff,
    ) -> None:
        self.paths = paths
        self.handoff = handoff
        # Clients accepted (or taken from the handoff) whose first packet is incomplete, by fd.
        self.pending: dict[int, PendingClient] = {}
        self._handoff_fd = -1  # registered in run()
        self.index = index
        self.cfg = cfg
        self.shm = shm
        self.listeners = list(listeners)
        self.listen_fds = [s.fileno() for s in self.listeners]
        self._listener_by_fd = {s.fileno(): s for s in self.listeners}
        self._family_by_fd = {s.fileno(): int(s.family) for s in self.listeners}
        self.main_pid = main_pid
        self.hba_rules, self.pool_passwd, self.tls_context, self.backend_tls = auth_files
        self.pool = ConnectionPool(shm, index, cfg.max_pool)
        self.commands = PoolCommands(self)
        self.stop_requested = False
        self.reload_requested = False
        self.close_idle_requested = False
        self.in_session = False
        self.proc = shm.procs[index]
        self._status: ChildStatus | None = None  # what set_status last wrote
        self._status_cells, self._status_index = shm.cell(self.proc, "status")
        self._classifier: Classifier | None = None
        self._volatility: dict[tuple[str, str], str | None] = {}
        self.table_clocks = ClockCache()  # native replication: tables' clock defaults (timestamp.py)
        self._rng = random.Random()
        # The relay's epoll (relay_poller), kept from session to session with the pooled
        # backends' sockets in it; by descriptor, the socket object registered.
        self._relay_poll: select.epoll | None = None
        self._relay_watched: dict[int, object] = {}
        # Set by the router for the session being served.
        self.session_temp_tables: set[str] = set()
        self.volatility_lookup: Callable[[str], str | None] | None = None

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
            # Other processes keep the same sockets open: epoll would go on reporting them.
            self._accept_poll.unregister(s.fileno())
            s.close()
        self.listeners, self.listen_fds, self._listener_by_fd = [], [], {}
        if self._handoff_fd >= 0:
            self._accept_poll.unregister(self._handoff_fd)
            self._handoff_fd = -1

    def _wait_for_client(self, timeout: float | None) -> list[int]:
        """
        Wait for a connection on the listen sockets, a signal, or the timeout.  EPOLLEXCLUSIVE
        wakes one idle child per connection instead of all of them (the thundering herd that
        cost every child a loop turn and a failed accept()).
        """
        events = self._accept_poll.poll(-1 if timeout is None else max(timeout, 0.0), EPOLL_MAX_EVENTS)
        ready = []
        for fd, _ev in events:
            if fd == self.sigq.wakeup_fd:
                self.sigq.drain()
            else:
                ready.append(fd)
        return ready

    # ------------------------------------------------------------------ state shown to others

    @property
    def status(self) -> ChildStatus:
        return self._status if self._status is not None else ChildStatus.WAIT_FOR_CONNECT

    def set_status(self, status: ChildStatus) -> None:
        # Twice per query: the last value is kept here, as reading shared memory is not free
        # either, and written through a memoryview, cheaper than the ctypes field.
        if self._status is not status:
            self._status_cells[self._status_index] = self._status = status

    def relay_poller(self) -> select.epoll:
        """
        The epoll the router waits on: one per child, not one per session (its creation, a
        registration per node and its closing were five system calls per connection).  It
        holds the signal doorbell, the session's client while the router runs, and each
        backend socket from its first session until it is closed (which removes it) or
        wakes a session of another pool slot (relay_forget).
        """
        poller = self._relay_poll
        if poller is None:
            poller = self._relay_poll = select.epoll()
            poller.register(self.sigq.wakeup_fd, EPOLLIN)
        return poller

    def relay_watch(self, fd: int, sock: object) -> None:
        """Have the relay's epoll report ``sock`` (a backend's), unless it does already."""
        if self._relay_watched.get(fd) is not sock:
            # A new socket, or a new one with a closed one's number: closing took that out.
            try:
                self.relay_poller().register(fd, EPOLLIN)
            except FileExistsError:
                pass  # the same open socket under another object: watched already
            self._relay_watched[fd] = sock

    def relay_forget(self, fd: int) -> None:
        """
        A backend socket the relay must no longer report: its node is lost, or it belongs to
        another pool slot and woke the session (level-triggered, it would go on doing so).
        """
        self._relay_watched.pop(fd, None)
        try:
            self.relay_poller().unregister(fd)
        except OSError:
            pass  # not in it (closed already)

    def set_title(self, title: str) -> None:
        proctitle.set_title(title)

    def main_node(self) -> int:
        """The node whose replies a session's client sees: the primary in streaming mode,
        else the lowest node id that is up or waiting (pgpool-II's MAIN_NODE_ID)."""
        if self.cfg.clustering_mode == "streaming_replication" and self.shm.node_valid(self.shm.req.primary_node_id):
            return int(self.shm.req.primary_node_id)
        valid = self.shm.valid_nodes()
        return valid[0] if valid else -1

    def session_nodes(self, main_node: int) -> list[int]:
        """The nodes a new session connects to: just the main node in raw mode, else every valid one."""
        if self.cfg.clustering_mode == "raw":
            return [main_node]
        return self.shm.valid_nodes()

    # ------------------------------------------------------------------ routing helpers

    def get_classifier(self) -> Classifier:
        if self._classifier is None:
            cfg = self.cfg
            settings = RoutingSettings(
                write_function_list=cfg.write_function_list,
                read_only_function_list=cfg.read_only_function_list,
                primary_routing_query_pattern_list=cfg.primary_routing_query_pattern_list,
                allow_sql_comments=cfg.allow_sql_comments,
                ignore_leading_white_space=cfg.ignore_leading_white_space,
            )
            self._classifier = Classifier(
                settings,
                function_volatility=lambda name: self.volatility_lookup(name) if self.volatility_lookup else "v",
                temp_tables=lambda: self.session_temp_tables,
            )
        return self._classifier

    def function_volatility(self, conn: BackendConnection | None, database: str, name: str) -> str | None:
        """
        pg_proc.provolatile, asked on the session's primary connection and kept per database;
        VOLATILITY_UNKNOWN when it is not known yet and ``conn`` is None (busy).
        """
        key = (database, name)
        if key in self._volatility:
            return self._volatility[key]
        if conn is None:
            return VOLATILITY_UNKNOWN
        schema, _, func = name.rpartition(".")
        where = "p.proname = " + _literal(func)
        if schema:
            where += " AND n.nspname = " + _literal(schema)
        sql = ("SELECT p.provolatile FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
               f"ON n.oid = p.pronamespace WHERE {where}")
        try:
            rows = query_rows(conn, sql, monotonic() + VOLATILITY_QUERY_TIMEOUT)
        except PgError:
            return "v"
        kinds = {r[0] for r in rows}
        # Overloads may differ: the most volatile wins.
        value = "v" if "v" in kinds else "s" if "s" in kinds else "i" if kinds else None
        self._volatility[key] = value
        return value

    def choose_load_balance_node(self, slot: PoolSlot, session: Session, startup: m.StartupMessage | None = None) -> int:
        """Weighted random pick among the session's nodes, with the redirect lists and delay threshold."""
        cfg, shm = self.cfg, self.shm
        nodes = sorted(slot.conns)
        primary = slot.main_node
        if len(nodes) == 1 or not cfg.load_balance_mode:
            return primary
        weights = shm.weights(nodes)
        app = startup.application_name if startup is not None else ""
        preferred = None
        for items, subject in ((cfg.app_name_redirect_preference_list, app),
                               (cfg.database_redirect_preference_list, slot.database)):
            for pattern, node, weight in parse_redirect_list(items):
                if subject and pattern.match(subject):
                    preferred = (node, weight)
                    break
            if preferred is not None:
                break
        if preferred is not None:
            node, weight = preferred
            standbys = [n for n in nodes if n != primary]
            if node == "primary":
                candidates = [primary]
            elif node == "standby":
                candidates = standbys or [primary]
            else:
                candidates = [int(node)] if int(node) in nodes else nodes
            if self._rng.random() < weight:
                weights = {n: (weights[n] or 1.0) for n in candidates}
        chosen = weighted_choice(weights, self._rng)
        if chosen != primary and cfg.delay_threshold > 0 and shm.backends[chosen].standby_delay > cfg.delay_threshold:
            if cfg.prefer_lower_delay_standby:
                standbys = [n for n in nodes if n != primary]
                best = min(standbys, key=lambda n: shm.backends[n].standby_delay)
                if shm.backends[best].standby_delay <= cfg.delay_threshold:
                    return best
            return primary
        return chosen

    def backend_connected(self, node: int) -> None:
        # pgpool-II: the first child that reaches a "waiting" node marks it up.
        b = self.shm.backends[node]
        if b.status == BackendStatus.CONNECT_WAIT:
            self.shm.set_backend_status(node, BackendStatus.UP)

    def backend_failed(self, node: int, exc: PgError | None) -> None:
        """A backend could not be reached or went away: ask main to degenerate it when
        failover_on_backend_error (or, for a shutdown message, failover_on_backend_shutdown)
        and the node's backend_flag allow it."""
        log.warning(
            "backend node %d is not reachable", node, extra={"detail": exc.detail if exc else None}
        )
        shutdown = exc is not None and exc.sqlstate in ("57P01", "57P02")  # admin/crash shutdown
        wanted = self.cfg.failover_on_backend_shutdown if shutdown else self.cfg.failover_on_backend_error
        if not wanted or not self.shm.node_valid(node):
            return
        if not failover_allowed(self.shm, node):
            log.info("failover of node %d is disallowed by backend_flag%d", node, node)
            return
        log.info("executing failover on backend %d", node)
        register_node_operation_request(self.shm, self.main_pid, RequestKind.NODE_DOWN, (node,),
                                        RequestDetail.SWITCHOVER)

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        die_with_parent()
        self.sigq = SignalQueue(CHILD_SIGNALS)
        self._accept_poll = select.epoll()
        for fd in self.listen_fds:
            self._accept_poll.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self._handoff_fd = self.handoff.recv_end.fileno()
        self._accept_poll.register(self._handoff_fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self._accept_poll.register(self.sigq.wakeup_fd, select.EPOLLIN)
        if getppid() != self.main_pid:
            return ExitCode.NO_RESTART
        proc = self.proc
        proc.pid = os.getpid()
        proc.start_time = wall_time()
        proc.connected = False
        proc.client_connection_count = 0
        proc.need_to_restart = False
        proc.current_pool = -1
        self.set_status(ChildStatus.WAIT_FOR_CONNECT)
        idle_since = monotonic()
        try:
            while True:
                try:
                    self.on_interrupt()
                except FastExit:
                    return ExitCode.NO_RESTART
                if self.stop_requested or getppid() != self.main_pid:
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
                    left = idle_since + cfg.child_life_time - monotonic()
                    if left <= 0:
                        log.debug("child life %d seconds expired", cfg.child_life_time)
                        return ExitCode.RESTART
                    timeout = left if timeout is None else min(timeout, left)
                if self.pending:
                    left = self._expire_pending()
                    if left is not None:
                        timeout = left if timeout is None else min(timeout, left)
                self.set_title("wait for connection request")
                ready = [] if self.sigq.pending else self._wait_for_client(timeout)
                if not ready:
                    continue
                if not self._wait_while_paused():
                    continue
                for fd in ready:
                    client = self._take(fd)
                    if client is not None:
                        code = self._serve(client)
                        idle_since = monotonic()
                        if code is not None:
                            return code
                        break
        finally:
            # Another child takes over the clients still on their way in, unless all stop.
            self._give_up_pending(pass_on=not self.stop_requested)
            self.pool.discard_all()
            self.set_status(ChildStatus.WAIT_FOR_CONNECT)

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

    def _take(self, fd: int) -> PendingClient | None:
        """
        Act on a ready descriptor of the accept loop: a new connection, a client passed on by
        another child, or more bytes from a pending one.  Returns the client to serve once
        its first packet is complete; until then it stays pending, holding no child.
        """
        accepted = fd in self._listener_by_fd
        if accepted:
            client = self._accept(fd)
        elif fd == self._handoff_fd:
            client = self.handoff.take()
        else:
            client = self.pending.pop(fd, None)
            if client is not None:
                self._accept_poll.unregister(fd)
        if client is None:
            return None
        done = client.read()
        # TCP_DEFER_ACCEPT hands a connection over when its first bytes arrive, or when the
        # kernel gives up waiting: one with nothing to read has been silent all along.
        silent = accepted and client.conn_type == "host" and not client.data
        tls_offered = self.tls_context is not None and client.conn_type != "local"
        try:
            while done and client.answer_encryption(tls_offered):
                done = client.complete()
        except OSError:
            done = None  # gone before it heard the answer
        if done:
            return client
        if done is not None and not silent and len(self.pending) >= MAX_PENDING:
            # Before the startup packet, as PostgreSQL may answer too: libpq shows the error.
            log.warning("too many clients are sending their startup packet; closing a new one")
            try:
                client.sock.sendall(m.error_response("sorry, too many clients already", "53300", severity="FATAL"))
            except OSError:
                pass
            done = None
        if done is None or silent:
            client.close()
            return None
        fd = client.sock.fileno()
        self.pending[fd] = client
        self._accept_poll.register(fd, EPOLLIN)
        return None

    def _expire_pending(self) -> float | None:
        """Close the pending clients past authentication_timeout; seconds until the next deadline."""
        now = wall_time()
        nearest: float | None = None
        for fd, client in list(self.pending.items()):
            left = client.deadline - now
            if left <= 0:
                log.debug("client did not send its startup packet within authentication_timeout")
                self._accept_poll.unregister(fd)
                del self.pending[fd]
                client.close()
            elif nearest is None or left < nearest:
                nearest = left
        return nearest

    def _give_up_pending(self, pass_on: bool) -> None:
        """Before this child serves a session (or exits): its pending clients go to the handoff
        queue, where an idle child takes them over, instead of waiting for this one."""
        for fd, client in self.pending.items():
            self._accept_poll.unregister(fd)
            if not (pass_on and self.handoff.pass_on(client)):
                client.close()
        self.pending.clear()

    def _accept(self, fd: int) -> PendingClient | None:
        listener = self._listener_by_fd.get(fd)
        if listener is None:
            return None
        try:
            # The C accept under socket.accept(), whose wrapper turns the listener's family
            # and type into enums for every client (two interpreted Enum calls, the most of
            # the accept's cost).  On Linux the new socket is blocking: accept4 does not pass
            # on the listener's O_NONBLOCK, and with no default timeout the object keeps it so.
            fd_accepted, addr = listener._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None  # another child won the race
        family = self._family_by_fd[fd]
        # The C socket type: socket.socket's __init__ and close() are bytecode, three calls
        # per client; the session needs nothing the subclass adds (ssl wraps either).
        sock = _socket.socket(family, SOCK_STREAM, 0, fd_accepted)
        timeout = self.cfg.authentication_timeout
        deadline = wall_time() + timeout if timeout > 0 else math.inf
        if family == AF_UNIX:
            return PendingClient(sock, "", "", "local", deadline)
        # TCP_NODELAY and SO_KEEPALIVE come from the listen socket (listen.open_listeners).
        return PendingClient(sock, str(addr[0]), str(addr[1]), "host", deadline)

    def _serve(self, client: PendingClient) -> int | None:
        """Serve one client; return an exit code when the child must exit afterwards."""
        self._give_up_pending(pass_on=True)
        sock, host, port = client.sock, client.host, client.port
        shm, proc, cfg = self.shm, self.proc, self.cfg
        count = shm.conn_counter_up()
        # Not WAIT_FOR_CONNECT while counted: main counts out a child that dies mid-session.
        self.set_status(ChildStatus.CONNECTING)
        proc.client_host = host.encode()[:63]
        proc.client_port = port.encode()[:7]
        pglog.session.host, pglog.session.port = (host or "[local]"), port
        exit_code: int | None = None
        try:
            # reserved_connections: pgpool-II's FATAL, but after the startup packet as PostgreSQL
            # does it (sent in reply to an SSLRequest, libpq only shows "error during SSL exchange").
            refuse = cfg.reserved_connections > 0 and count > cfg.num_init_children - cfg.reserved_connections
            self.in_session = True
            Session(self, client, too_many_clients=refuse).run()
        except FastExit:
            exit_code = ExitCode.NO_RESTART
        except OSError as exc:
            log.debug("client connection error: %s", exc)
        except Exception:
            # Last line of defence, found by the live fuzz test: a bug reached by one client's
            # input must end that session only.  Left to spawn(), it killed the child, and ten
            # such clients in a row stopped the whole server (main's quick-death guard).
            log.exception("internal error while serving a client; its session was ended")
            try:
                sock.sendall(m.error_response("internal error", "XX000", severity="FATAL"))
            except OSError:
                pass
            self.pool.discard_all()  # the session may have left any slot half-made
        finally:
            self.in_session = False
            try:
                sock.close()
            finally:
                self.set_status(ChildStatus.WAIT_FOR_CONNECT)  # first: main must never count us out twice
                shm.conn_counter_down()
                pglog.clear_session()
                proc.client_host = b""
                proc.client_port = b""
                proc.connected = True
                proc.client_connection_count += 1
                proc.client_idle_since = 0.0
                proc.wait_for_connect_since = wall_time()  # child_life_time counts from here
        if exit_code is not None:
            return exit_code
        if cfg.child_max_connections > 0 and proc.client_connection_count >= cfg.child_max_connections:
            log.info("child exiting, %d connections reached", cfg.child_max_connections)
            return ExitCode.RESTART
        return None

    def _reload(self) -> None:
        self.reload_requested = False
        try:
            new_cfg, _warnings, auth = reload_everything(self.cfg, self.paths)
        except (ConfigError, OSError) as exc:
            log.debug("child keeps the running configuration: %s", exc)
            return
        self.cfg = new_cfg
        self.hba_rules, self.pool_passwd, self.tls_context, self.backend_tls = auth
        self._classifier = None  # routing lists may have changed
        pglog.configure(new_cfg)

    # ------------------------------------------------------------------ cancel

    def forward_cancel(self, packet: m.CancelRequest) -> None:
        """
        Find the session that owns (pid, key) in shared memory and cancel it on each node.
        The key is the one its client was given, not the backend's (pgpool-II hands out the
        backend's): a late cancel from an earlier client of the same pooled connection must
        not stop the next client's query.
        """
        shm = self.shm
        key = int.from_bytes(packet.key[:4], "big")
        for child in range(shm.num_children):
            for pool in range(shm.max_pool):
                main = None
                for node in range(shm.req.num_backends):
                    info = shm.conn(child, pool, node)
                    if info.connected and info.pid == packet.pid and info.client_key == key:
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
