"""
One client session in a child: startup packet, authentication, a backend connection set from
the pool (or a new one), the relay loop, and the reset that makes the connection safe to
cache for the next client.
"""

from __future__ import annotations

import logging
import select
import ssl
from typing import TYPE_CHECKING, Final

from pgpool_py.child import auth as client_auth
from pgpool_py.child.backend import BackendConnection, any_broken, connect_backend
from pgpool_py.child.commands import PoolStatements, is_command_text
from pgpool_py.child.hba import describe_connection, match_hba, no_entry_error
from pgpool_py.child.passwd import PasswordEntry
from pgpool_py.child.pending import ACCEPTED_SSL, ANSWERED_GSS, ANSWERED_SSL, PendingClient
from pgpool_py.child.pool import NEVER_POOLED_DATABASES, PoolSlot
from pgpool_py.child.router import Router
from pgpool_py.errors import AuthError, PgError, ProtocolError, SessionError
from pgpool_py import log as pglog
from pgpool_py.log import session as log_session
from pgpool_py.protocol import messages as m
from pgpool_py.protocol.scanner import ReplyScanner
from pgpool_py.routing.classify import POOL_PREFIX_WINDOW, addressed_to_pgpool_bytes
from pgpool_py.protocol.stream import PeerClosed, Stream
from pgpool_py.shmem.layout import ChildStatus
from pgpool_py.stdlib import monotonic, wall_time
from pgpool_py.tls import TlsStream, client_common_name, handshake, reader, writer

if TYPE_CHECKING:
    from pgpool_py.child.child import Child
    from pgpool_py.config.loader import Config

log = logging.getLogger(__name__)

_Q: Final = ord("Q")
_X: Final = ord("X")
_S: Final = ord("S")
_Z: Final = ord("Z")
_E: Final = ord("E")
_EXTENDED: Final = frozenset(b"PBDEC")
_BATCH_ENDS: Final = (_S, ord("H"))  # Sync, Flush
RESET_QUERY_TIMEOUT: Final = 10.0  # pgpool-II gives each reset query 10 s
RECV_SIZE: Final = 65536


class FastExit(BaseException):
    """SIGINT/SIGQUIT arrived: drop the session now and let the child exit."""


class Session:
    def __init__(self, child: Child, client: PendingClient, too_many_clients: bool = False) -> None:
        self.too_many_clients = too_many_clients
        self.child = child
        # client_min_messages: NoticeResponses of our log records, sent between two messages
        # of the stream to the client; those that came mid-message wait here.
        self.notices: list[bytes] = []
        self.notices_on = False
        self._raw_scanner: ReplyScanner | None = None
        self._configure(child.cfg)
        self.session_values: dict[str, object] = {}  # PGPOOL SET values of this session
        self.router: Router | None = None
        self.sock = client.sock
        self.client_addr = client.host
        self.client_port = client.port
        self.conn_type = client.conn_type  # "local" (Unix socket) or "host"
        self.client = Stream(client.sock, "client", child.sigq.wait, child.on_interrupt)
        self.client.buf += client.data  # the first packet, read in the child's accept loop
        self.startup_deadline = client.monotonic_deadline()  # authentication_timeout, from accept
        self.answered_before = client.answered  # encryption requests declined while it was pending
        self.slot: PoolSlot | None = None
        self.ended_by_terminate = False
        self.unanswered = 0  # Query/Sync replies still due when the client said Terminate
        self.deadline: float | None = None
        self.tls = False  # the client negotiated TLS: self.sock is an SSLSocket from then on
        # allow_clear_text_frontend_auth: answers the main node with the client's clear password.
        self.clear_auth: client_auth.BackendAuth | None = None
        self.client_failed = False  # the client, not the backend, broke off a relayed authentication
        self.replication = False  # a physical replication connection (pool_hba's "replication")

    # ------------------------------------------------------------------ entry

    def run(self) -> None:
        startup: m.StartupMessage | None = None
        started = wall_time()
        host = "[local]" if self.conn_type == "local" else pglog.client_host(self.client_addr, self.cfg)
        pglog.log_connection(self.cfg, host, self.client_port)
        try:
            startup = self._read_startup()
            if startup is None:
                return
            if self.too_many_clients:
                raise SessionError("Sorry, too many clients already", sqlstate="53300", severity="FATAL")
            log_session.user, log_session.database = startup.user, startup.database
            log_session.client = True
            log_session.application_name = startup.application_name
            self.child.set_title(f"{startup.user} {startup.database} {self._host_label()} idle")
            slot = self._open(startup)
            self.slot = slot
            self._relay(slot)
            self._release(slot)
        except FastExit:
            self._notices_off()
            # Like PostgreSQL's fast shutdown: the client learns why it is cut off.
            try:
                self.client.send(m.error_response(
                    "terminating connection due to administrator command", "57P01", severity="FATAL"))
            except PeerClosed:
                pass
            self._drop_slot()
            raise
        except PeerClosed as closed:
            self._notices_off()
            log.debug("session ended: %s", closed.message)
            self._drop_slot()
        except PgError as error:  # not the name above: mypyc gives a name one type per function
            # The client gets the error itself, not the log line about it as a notice first.
            self._notices_off()
            self._report(error)
            self._drop_slot()
        finally:
            self._notices_off()
            if self.tls:
                self.sock.close()  # the child closes the plain socket it accepted, now detached
            if startup is not None:
                pglog.log_disconnection(self.cfg, started, startup.user, startup.database, host, self.client_port)

    def _host_label(self) -> str:
        return "[local]" if self.conn_type == "local" else f"{self.client_addr}({self.client_port})"

    def _report(self, exc: PgError) -> None:
        severity = exc.severity if exc.severity in ("FATAL", "PANIC") else "FATAL"
        level = logging.WARNING if isinstance(exc, (AuthError, ProtocolError)) else logging.ERROR
        # The server log may say why a login failed; the client is told no more than by PostgreSQL.
        detail = getattr(exc, "log_detail", None) or exc.detail
        log.log(level, "%s", exc.message, extra={"detail": detail, "hint": exc.hint})
        try:
            self.client.send(
                m.error_response(exc.message, exc.sqlstate, severity=severity, detail=exc.detail, hint=exc.hint)
            )
        except PeerClosed:
            pass

    def _drop_slot(self) -> None:
        if self.slot is not None:
            self.child.pool.discard(self.slot)
            self.slot = None

    # ------------------------------------------------------------------ startup

    def _read_startup(self) -> m.StartupMessage | None:
        deadline = self.startup_deadline
        answered_ssl = bool(self.answered_before & ANSWERED_SSL)
        answered_gss = bool(self.answered_before & ANSWERED_GSS)
        if self.answered_before & ACCEPTED_SSL:
            self._start_tls(deadline)  # "S" was answered in the accept loop
        while True:
            packet = self.client.read_startup(deadline)
            if isinstance(packet, m.SSLRequest) and not answered_ssl:
                answered_ssl = True
                self._negotiate_tls(deadline)
            elif isinstance(packet, m.GSSENCRequest) and not answered_gss:
                answered_gss = True
                self.client.send(b"N")
            elif isinstance(packet, m.CancelRequest):
                self.child.forward_cancel(packet)
                return None
            elif isinstance(packet, m.StartupMessage):
                self.deadline = deadline
                return packet
            else:
                raise ProtocolError("unexpected repeated SSL or GSSAPI negotiation request")

    def _negotiate_tls(self, deadline: float | None) -> None:
        """Answer an SSLRequest: ``S`` and the handshake when ``ssl`` is on, else ``N``."""
        ctx = self.child.tls_context
        if ctx is None or self.conn_type == "local":
            self.client.send(b"N")
            return
        if self.client.buf:
            # Bytes sent before the handshake could be injected by a man in the middle.
            raise ProtocolError("received unencrypted data after SSL request")
        self.client.send(b"S")
        self._start_tls(deadline)

    def _start_tls(self, deadline: float | None) -> None:
        """The handshake, once the client has its "S"."""
        ctx = self.child.tls_context
        if ctx is None:  # turned off by a reload while the client was pending
            raise ProtocolError("SSL is no longer offered")
        self.sock = handshake(ctx, self.sock, deadline, server_side=True, who="the client")
        self.tls = True
        self.client = TlsStream(self.sock, "client", self.child.sigq.wait, self.child.on_interrupt)

    # ------------------------------------------------------------------ authentication + backend

    def _open(self, startup: m.StartupMessage) -> PoolSlot:
        child = self.child
        if startup.minor > m.LATEST_MINOR or startup.unsupported_options:
            # Negotiate down instead of refusing (pgpool-II 4.3 refused 3.2 and _pq_ options).
            self.client.send(m.negotiate_protocol_version(m.LATEST_MINOR, startup.unsupported_options))
        main_node = child.main_node()
        if main_node < 0:
            raise SessionError(
                "pgpool is not accepting any new connections",
                sqlstate="08S01",
                detail="all backend nodes are down, pgpool requires at least one valid node",
                hint="repair the backend nodes and attach them with pcp_attach_node",
            )
        user, database = startup.user, startup.database
        self.database = database
        self.client_user = user
        self.replication = startup.params.get("replication", "").lower() in ("true", "on", "yes", "1")
        nodes = child.session_nodes(main_node)
        entry = child.pool_passwd.get(user)
        method = self._frontend_method(user, database)
        startup_key = startup.pool_key_bytes()
        pooled = child.pool.find(user, database, startup.major, startup_key) if self.cfg.connection_cache else None
        if pooled is not None and (
            set(pooled.conns) != set(nodes)
            or any_broken(pooled.conns.values())
            or not self._can_reauthenticate(pooled, method, entry)
        ):
            log.debug("cached connection cannot serve this session; connecting afresh")
            child.pool.discard(pooled)
            pooled = None
        if pooled is not None:
            self._authenticate_client(method, user, entry)
            pooled.load_balance_node = child.choose_load_balance_node(pooled, self, startup)
            child.pool.mark_connected(pooled, reused=True)
            self._send_welcome(pooled)
            return pooled

        password: str | None = None
        md5_hash: str | None = entry.md5_hash if entry is not None else None
        if method != "passthrough":
            password = self._authenticate_client(method, user, entry)
            if password is None and entry is not None:
                password = entry.plaintext()
        slot = child.pool.allocate()
        slot.user, slot.database, slot.major, slot.minor = user, database, startup.major, startup.minor
        slot.startup_key = startup_key
        slot.main_node = main_node
        child.set_status(ChildStatus.CONNECTING)
        conns: dict[int, BackendConnection] = {}
        try:
            for node_id in nodes:
                if method == "passthrough" and node_id == main_node:
                    respond = self._relay_auth_to_client
                else:
                    # Passthrough taught us nothing to answer other nodes with unless the
                    # client sent its password in clear; md5/SCRAM need pool_passwd.
                    if password is None and self.clear_auth is not None:
                        password = self.clear_auth.password
                    respond = client_auth.BackendAuth(user, password, md5_hash).feed
                try:
                    conns[node_id] = self._connect(node_id, startup, respond)
                except PgError as exc:
                    if node_id == main_node or exc.sqlstate != "08006":
                        raise
                    # A standby we cannot reach is left out of this session (and reported).
                    log.warning("backend node %d is left out of this session", node_id,
                                extra={"detail": exc.detail})
        except BaseException:
            for conn in conns.values():
                conn.close()
            raise
        slot.backend_asked_password = any(conn.auth_codes for conn in conns.values())
        slot.password = password
        slot.conns = conns
        slot.load_balance_node = child.choose_load_balance_node(slot, self, startup)
        child.pool.register(slot)
        child.pool.mark_connected(slot, reused=False)
        for node_id in conns:
            child.backend_connected(node_id)
        self._send_welcome(slot)
        return slot

    def _connect(self, node_id: int, startup: m.StartupMessage, respond: object) -> BackendConnection:
        child = self.child
        node = child.shm.backends[node_id]
        try:
            return connect_backend(
                node_id,
                node.hostname.decode(),
                node.port,
                startup,
                respond,  # type: ignore[arg-type]
                wait=child.sigq.wait,
                on_interrupt=child.on_interrupt,
                tls=child.backend_tls,
                timeout=max(self.cfg.connect_timeout / 1000.0, 1.0) if self.cfg.connect_timeout else 30.0,
            )
        except PgError as exc:
            if exc.sqlstate == "08006" and not self.client_failed:
                child.backend_failed(node_id, exc)
            raise

    def _connection_facts(self, user: str, database: str) -> dict[str, object]:
        return {
            "conn_type": self.conn_type,
            "ssl": self.tls,
            "database": database,
            "user": user,
            "client_addr": None if self.conn_type == "local" else self.client_addr,
            "replication": self.replication,
        }

    def _frontend_method(self, user: str, database: str) -> str:
        """How this client must prove itself: pool_hba.conf, else pgpool-II's rules."""
        child = self.child
        if self.cfg.enable_pool_hba:
            facts = self._connection_facts(user, database)
            rule = match_hba(child.hba_rules, **facts)  # type: ignore[arg-type]
            if rule is None:
                raise no_entry_error(**facts)  # type: ignore[arg-type]
            return rule.method
        # Without pool_hba.conf: a pool_passwd entry lets us authenticate the client ourselves
        # (so every node can be logged in to); otherwise relay the backend's own request.
        entry = child.pool_passwd.get(user)
        if entry is None:
            return "passthrough"
        return "md5" if entry.kind == "md5" else "scram-sha-256"

    def _can_reauthenticate(self, slot: PoolSlot, method: str, entry: PasswordEntry | None) -> bool:
        """A cached connection may serve this client only if we can check its credentials."""
        if method == "passthrough" or (method == "password" and entry is None):
            # Only the backend checks such a password: a new connection must let it.  (Not the
            # method that let the slot's first client in: pool_hba's trust is no backend's.)
            return not slot.backend_asked_password
        return True

    def _authenticate_client(self, method: str, user: str, entry: PasswordEntry | None) -> str | None:
        if method == "passthrough":
            return None
        where = describe_connection(**self._connection_facts(user, self.database))  # type: ignore[arg-type]
        cn = client_common_name(self.sock) if isinstance(self.sock, ssl.SSLSocket) else None
        exchange = client_auth.make_frontend_auth(method, user, entry, connection=where, client_cn=cn)
        out = exchange.first()
        if out:
            self.client.send(out)
            done = False
            while not done:
                out, done = exchange.feed(ord("p"), self.client.read_password(self.deadline))
                if out:
                    self.client.send(out)
        return exchange.password

    def _relay_auth_to_client(self, code: int, data: bytes) -> bytes | None:
        """
        Passthrough: the backend's Authentication request goes to the client, its answer back.
        With allow_clear_text_frontend_auth an md5 or SCRAM request is answered by pgpool with the
        password the client is asked for in clear, so that every node can be logged in to.
        """
        try:
            if self.clear_auth is None and self.cfg.allow_clear_text_frontend_auth and code in (m.AUTH_MD5, m.AUTH_SASL):
                asked = client_auth.PasswordAuth(self.client_user, None)
                self.client.send(asked.first())
                asked.feed(ord("p"), self.client.read_password(self.deadline))
                self.clear_auth = client_auth.BackendAuth(self.client_user, asked.password)
            if self.clear_auth is not None:
                return self.clear_auth.feed(code, data)
            if code == m.AUTH_OK:
                return None  # the client gets AuthenticationOk with the rest of the welcome
            self.client.send(m.authentication(code, data))
            if code == m.AUTH_SASL_FINAL:
                return None
            return m.password_message(self.client.read_password(self.deadline))
        except PgError:
            self.client_failed = True  # a client that leaves or stalls here is no backend failure
            raise

    def _send_welcome(self, slot: PoolSlot) -> None:
        main = slot.main
        # Logged in: SHOW POOL_PROCESSES says Idle (not Connecting) until the first statement,
        # from before the client can know it is logged in and ask.
        self.child.set_status(ChildStatus.IDLE if main.tx_status == m.TX_IDLE else ChildStatus.IDLE_IN_TRANS)
        self.client.send(
            m.AUTHENTICATION_OK
            + main.param_messages()
            + m.backend_key_data(main.pid, slot.cancel_key.to_bytes(4, "big"))
            + m.ready_for_query(main.tx_status)
        )

    # ------------------------------------------------------------------ relay

    def _relay(self, slot: PoolSlot) -> None:
        if self.cfg.clustering_mode != "raw":
            self.router = Router(self, slot)
            self._notices_on()
            try:
                self.router.run()
            finally:
                # The router and the session refer to each other: left so, each session's
                # objects would wait for the cyclic collector (a tenth of a connection's cost).
                self.router = None
        else:
            self._relay_raw(slot)

    def _relay_raw(self, slot: PoolSlot) -> None:
        """
        Forward client → backend and backend → client until the client terminates.

        Only framing is parsed: client messages to find Terminate and pgpool's own commands,
        backend messages to follow ReadyForQuery (transaction state, outstanding replies).
        Backend data is forwarded as it arrives, even mid-message, so a huge row or a COPY OUT
        stream never piles up here.
        """
        child = self.child
        backend = slot.main
        backend.dirty = True
        csock, bsock = self.sock, backend.sock
        cfd, bfd = csock.fileno(), bsock.fileno()
        wakeup = child.sigq.wakeup_fd
        poller = select.poll()
        poller.register(cfd, select.POLLIN)
        poller.register(bfd, select.POLLIN)
        poller.register(wakeup, select.POLLIN)
        cbuf = bytearray(self.client.buf)
        self.client.buf.clear()
        split = m.split_messages
        recv_b, recv_c = reader(bsock), reader(csock)
        send_c, send_b = writer(csock), writer(bsock)
        scanner = self._raw_scanner = ReplyScanner(backend.tx_status)
        self._notices_on()
        outstanding = 0  # Query/Sync messages whose ReadyForQuery has not come back
        held = False  # a pgpool command waits for earlier replies before we answer it
        idle_since = monotonic()
        set_status = child.set_status
        pool = PoolStatements(child.commands)
        batch_open = False  # extended messages went to the backend since the last Sync

        def log_upto(msgs: list[tuple[int, int, int]], end: int) -> None:
            """log_statement / log_client_messages for the messages handled (a held one is read again)."""
            if self.cfg.log_statement or self.cfg.log_client_messages:
                pglog.log_frontend(self.cfg, cbuf, [msg for msg in msgs if msg[2] <= end])

        while True:
            if cbuf and not held:
                msgs, consumed = split(cbuf)
                start = skip_to = 0
                more = False  # a batch of pgpool's statements waits for the rest of it
                for at, (typ, mstart, mend) in enumerate(msgs):
                    if mstart < skip_to:
                        continue
                    if typ in _EXTENDED and not batch_open:
                        # A batch that starts with pgpool's own statements or portals: those are
                        # answered here; what follows them goes to the backend with the Sync.
                        shadowed: set[tuple[str, str]] = set()
                        if not pool.ours(cbuf, typ, mstart, mend, shadowed, is_command_text):
                            batch_open = True
                            continue
                        last = next((i for i in range(at, len(msgs)) if msgs[i][0] in _BATCH_ENDS), -1)
                        if last < 0 or outstanding:
                            more, held = last < 0, bool(outstanding)
                            break
                        if start < mstart:
                            send_b(bytes(cbuf[start:mstart]))
                        stop = self._answer_pool_batch(pool, cbuf, msgs[at:last + 1], shadowed, scanner.tx_status)
                        start = skip_to = stop
                        batch_open = stop != msgs[last][2]
                        continue
                    if typ == _Q:
                        freed = pool.deallocated(m.query_bytes(bytes(cbuf[mstart:mend]))) if pool.statements else None
                        if freed is not None or \
                                addressed_to_pgpool_bytes(bytes(cbuf[mstart + 5 : mstart + 5 + POOL_PREFIX_WINDOW])):
                            if start < mstart:
                                send_b(bytes(cbuf[start:mstart]))
                            start = mstart
                            if outstanding:
                                held = True
                                break
                            if freed is not None:
                                send_c(pool.free(freed, scanner.tx_status))
                            else:
                                sql = m.parse_query(memoryview(cbuf)[mstart + 5 : mend])
                                send_c(child.commands.execute(sql, scanner.tx_status, self))
                            start = mend
                            continue
                        outstanding += 1
                    elif typ == _S:
                        outstanding += 1
                        batch_open = False
                    elif typ == _X:
                        log_upto(msgs, mstart)
                        if start < mstart:
                            send_b(bytes(cbuf[start:mstart]))
                        self.ended_by_terminate = True
                        self.unanswered = outstanding
                        backend.tx_status = scanner.tx_status
                        return
                else:
                    mstart = consumed
                end = mstart if held or more else consumed
                log_upto(msgs, end)
                if start < end:
                    send_b(bytes(cbuf[start:end]))
                del cbuf[:end]
                if outstanding:
                    set_status(ChildStatus.COMMAND_EXECUTE)
            events = poller.poll(self.idle_timeout(bool(outstanding), idle_since))
            for fd, _ev in events:
                if fd == bfd:
                    try:
                        data = recv_b(RECV_SIZE)
                    except OSError:
                        data = b""
                    if not data:
                        raise self._backend_lost(backend)
                    done = scanner.feed(data)
                    try:
                        send_c(data)
                    except OSError as exc:
                        raise PeerClosed("client") from exc
                    if done:
                        outstanding = max(0, outstanding - done)
                        if not outstanding:
                            held = False
                            set_status(ChildStatus.IDLE if scanner.tx_status == m.TX_IDLE else ChildStatus.IDLE_IN_TRANS)
                elif fd == cfd:
                    try:
                        data = recv_c(RECV_SIZE)
                    except OSError:
                        data = b""
                    if not data:
                        raise PeerClosed("client")
                    cbuf += data
                    idle_since = monotonic()
                else:
                    child.sigq.drain()
                    child.on_interrupt()

    def _answer_pool_batch(self, pool: PoolStatements, cbuf: bytearray, batch: list[tuple[int, int, int]],
                           shadowed: set[tuple[str, str]], tx_status: int) -> int:
        """
        Answer the raw relay's batch (through its Sync or Flush) from its start while its
        messages are pgpool's.  Returns where the messages for the backend begin (after the
        Sync or Flush when there are none).
        """
        replies, at = pool.answer(cbuf, batch[:-1], shadowed, is_command_text, self, {}, {})
        if at < len(batch) - 1:
            self.send_client(replies)
            return batch[at][1]
        if batch[-1][0] == _S:
            replies += pool.ready(tx_status)
        self.send_client(replies)
        return batch[-1][2]

    def send_client(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise PeerClosed("client") from exc

    # ------------------------------------------------------------------ notices (client_min_messages)

    def _notices_on(self) -> None:
        """From the relay's start: our log records at or above client_min_messages reach the client."""
        self.notices_on = True
        pglog.set_client(self._deliver_notice, self.cfg.client_min_messages)

    def _notices_off(self) -> None:
        if self.notices_on:
            self.notices_on = False
            self.notices.clear()
            pglog.set_client(None)

    def _deliver_notice(self, data: bytes) -> None:
        """A notice from pglog: sent now if the stream to the client is between two messages,
        else kept until it is (idle_timeout, which both relays ask before each wait, sends it)."""
        self.notices.append(data)
        if not self._flush_notices():
            self.idle_limited = True  # leaves idle_timeout's fast path until they are sent

    def _flush_notices(self) -> bool:
        """Send the waiting notices if no message to the client is half sent; True when none waits."""
        if not self._between_messages():
            return False
        data = b"".join(self.notices)
        self.notices.clear()
        self.idle_limited = self.idle_configured
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the relay finds the client gone on its next read
        return True

    def _between_messages(self) -> bool:
        """Whether everything forwarded to the client so far ends on a message boundary."""
        router = self.router
        if router is not None:
            if router.reply_held:
                return False
            scanners = [(ch.scanner, ch.tail) for ch in router.channels.values()]
        elif self._raw_scanner is not None:
            scanners = [(self._raw_scanner, b"")]
        else:
            return False
        return all(not (sc.skip or sc.carry or tail) for sc, tail in scanners)

    def apply_session_values(self) -> None:
        """PGPOOL SET/RESET: the session sees the file's values with its own on top."""
        self._configure(self.child.cfg.with_session_values(self.session_values))  # type: ignore[arg-type]
        if self.router is not None:
            self.router.reconfigure(self.cfg)

    def _configure(self, cfg: Config) -> None:
        self.cfg = cfg
        # Asked before every wait for the client: kept here rather than looked up in cfg.
        self.idle_configured = cfg.client_idle_limit > 0 or bool(cfg.client_idle_limit_in_recovery)
        # idle_timeout's fast path is left also while notices wait to be sent.
        self.idle_limited = self.idle_configured or bool(self.notices)
        self._idle_published: float | None = None  # what _publish_idle last wrote
        if self.notices_on:
            pglog.set_client(self._deliver_notice, cfg.client_min_messages)

    def idle_timeout(self, busy: bool, idle_since: float) -> int:
        """
        Milliseconds the relay may wait for the client (-1: no limit); raises when the
        client has been idle too long.  During online recovery client_idle_limit_in_recovery
        replaces client_idle_limit (a SIGUSR2 wakes the relay when recovery starts) and counts
        only the idle time since the 2nd stage began (pgpool-II's idle_count_in_recovery).
        """
        if not self.idle_limited:
            return -1  # no limit whatever the recovery state: shared memory need not be read
        if self.notices:
            self._flush_notices()
        if not self.idle_configured:
            return -1
        mark = -1.0 if busy else idle_since
        if mark != self._idle_published:
            self._publish_idle(mark)
        if busy:
            return -1
        req = self.child.shm.req
        if req.in_recovery:
            limit, name = self.cfg.client_idle_limit_in_recovery, "client_idle_limit_in_recovery"
            if limit == -1:
                raise SessionError("connection terminated due to online recovery", sqlstate="57000")
            idle_since = max(idle_since, req.recovery_started)
        else:
            limit, name = self.cfg.client_idle_limit, "client_idle_limit"
        if limit <= 0:
            return -1
        left = idle_since + limit - monotonic()
        if left <= 0:
            raise SessionError(
                "unable to read data",
                sqlstate="57000",
                detail=f"child connection forced to terminate due to {name}:{limit} is reached",
            )
        return int(left * 1000) + 1

    def _publish_idle(self, idle_since: float) -> None:
        """For client_idle_duration (SHOW POOL_POOLS, pcp_proc_info): since when the client is
        idle (-1: busy), in wall-clock time; kept only while an idle limit is set, as pgpool-II
        counts it."""
        self._idle_published = idle_since
        now = wall_time()
        self.child.proc.client_idle_since = 0.0 if idle_since < 0 else now - (monotonic() - idle_since)

    def _backend_lost(self, backend: BackendConnection) -> SessionError:
        self.child.backend_failed(backend.node_id, None)
        return SessionError(
            "unable to forward message to backend",
            sqlstate="08006",
            detail=f"backend node {backend.node_id} closed the connection unexpectedly",
            hint="the server may have been restarted or the node failed; reconnect and retry",
        )

    # ------------------------------------------------------------------ release

    def _release(self, slot: PoolSlot) -> None:
        """Reset the backend session and keep it for the next client, or close it."""
        child = self.child
        self.slot = None
        cacheable = (
            self.cfg.connection_cache
            and self.ended_by_terminate
            and slot.database not in NEVER_POOLED_DATABASES
            and self.unanswered == 0
        )
        if cacheable:
            try:
                self._reset(slot)
            except (PgError, OSError) as exc:
                log.info("reset of pooled connection failed, closing it: %s", exc)
                cacheable = False
        if cacheable:
            child.pool.mark_released(slot)
        else:
            child.pool.discard(slot)

    def _reset(self, slot: PoolSlot) -> None:
        for conn in slot.conns.values():
            if not conn.dirty and conn.tx_status == m.TX_IDLE:
                continue  # the session sent this node nothing: its state is as it was
            queries = [q for q in self.cfg.reset_query_list if q.strip()]
            if conn.tx_status == m.TX_IDLE:
                queries = [q for q in queries if q.strip().upper() != "ABORT"]
            elif not any(q.strip().upper() == "ABORT" for q in queries):
                queries.insert(0, "ABORT")
            for sql in queries:
                run_simple(conn, sql, monotonic() + RESET_QUERY_TIMEOUT)
            conn.dirty = False


def run_simple(conn: BackendConnection, sql: str, deadline: float) -> None:
    """Run one internal query to completion (a reset query); raise on error."""
    query_rows(conn, sql, deadline)


def query_rows(conn: BackendConnection, sql: str, deadline: float) -> list[list[str | None]]:
    """
    Run one internal query and return its rows as text (e.g. a pg_proc lookup); raise on
    error.  Keeps the connection's ParameterStatus values current (DISCARD ALL reports them).
    """
    conn.stream.send(m.query(sql))
    rows: list[list[str | None]] = []
    error: dict[str, str] | None = None
    while True:
        typ, body = conn.stream.read_message(deadline, f'running "{sql}"')
        if typ == ord("D"):
            rows.append(m.parse_data_row(body))
        elif typ == _E:
            error = m.parse_error_fields(body)
        elif typ == _S:
            conn.set_param(body)
        elif typ == _Z:
            conn.tx_status = body[0]
            break
    if error is not None:
        raise PgError(error.get("M", "error"), sqlstate=error.get("C", "XX000"))
    return rows


