"""
Online recovery, run by the PCP worker that received ``O`` (pgpool-II's ``start_recovery``).

The flow is the seed's (``README.online-recovery``), as pgpool-II 4.3 runs it:

1. ``start_recovery``: check the node is down; connect to the source node (the primary in
   streaming mode, the main node in native replication) as ``recovery_user``, to
   recovery_database; when pgpool.conf does not set it, to the first of postgres (pgpool-II
   4.7's default) and template1 (pgpool-II 4.3's only choice) that has the functions.
2. 1st stage: in native replication a CHECKPOINT first; ``exec_recovery`` runs
   ``SELECT pgpool_recovery(recovery_1st_stage_command, ...)`` on the source.  Clients go on.
3. 2nd stage, native replication only: ``InRecovery = 1`` (children leave new clients in the
   listen backlog), ``wait_connection_closed`` (up to recovery_timeout), CHECKPOINT,
   ``exec_recovery`` with recovery_2nd_stage_command.  Streaming mode never blocks clients.
4. ``exec_remote_start`` (``SELECT pgpool_remote_start(host, data_dir)``),
   ``check_postmaster_started`` (as long as pgpool-II waits: ``postmaster_wait``).
5. Failback: clear ``pcp_wakeup_request``, queue NODE_UP for main, wait (at most 5 s) for main
   to set it and SIGUSR2 us.
6. ``finish_recovery`` (always, also after any error): ``InRecovery = 0`` and SIGUSR2 to
   main, which wakes every child.

Every failure is a ``PgError``; the PCP worker logs it and sends it to the client.  Where
pgpool-II 4.3 has the same failure, the message is its text to the letter (log-watching
scripts match it); what pgpool-py adds goes into the detail and the hint.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgpool_py.config.loader import DEFAULT
from pgpool_py.errors import PgError
from pgpool_py.requests import register_node_operation_request
from pgpool_py.shmem.layout import VALID_STATUSES, BackendStatus, LockId, Recovery, RequestDetail, RequestKind, SharedState
from pgpool_py.tls import TLS_NOT_SUPPORTED, libpq_params

if TYPE_CHECKING:
    from pgpool_py.config import Config
    from pgpool_py.signals import SignalQueue

log = logging.getLogger(__name__)

# Modes whose recovery has a 2nd stage (pgpool-II's REPLICATION); snapshot isolation is native
# replication with a different visibility rule.
REPLICATION_MODES = ("native_replication", "snapshot_isolation")
RECOVERABLE_MODES = REPLICATION_MODES + ("streaming_replication",)
FAILBACK_WAIT_MAX = 5.0  # seconds (pgpool-II's FAILBACK_WAIT_MAX_RETRY tries of 1 s)
POLL_INTERVAL = 0.5  # seconds between checks of conn_counter and of the recovered postmaster
# pgpool-II's check_postmaster_started: 4 tries 3 s apart, then recovery_timeout / 3 + 1 tries.
POSTMASTER_FIRST_TRIES = 4
POSTMASTER_RETRY_PAUSE = 3  # seconds
CONNECT_TIMEOUT = 10  # seconds, side connections (libpq's connect_timeout)
# recovery_database not set: pgpool-II 4.7's default first, then the database of pgpool-II 4.3.
UNSET_RECOVERY_DATABASES = ("postgres", "template1")
SQL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sql")
FUNCTIONS_SQL = os.path.join(SQL_DIR, "pgpool_recovery.sql")


def install_command(host: str, port: int, user: str, dbname: str) -> str:
    """What a user types to install the recovery functions (named in error hints and docs)."""
    return f"python -m pgpool_py.recovery install --host {host} --port {port} --user {user} --dbname {dbname}"


def recovery_databases(cfg: Config) -> tuple[str, ...]:
    """
    Where the recovery functions may be: recovery_database when pgpool.conf sets it (not
    empty), else postgres then template1.  pgpool-II 4.3 has no recovery_database and always
    used template1; 4.7 added it with the default postgres.
    """
    if cfg.recovery_database and cfg.source("recovery_database") != DEFAULT:
        return (cfg.recovery_database,)
    return UNSET_RECOVERY_DATABASES


@dataclass
class Source:
    """The connection to the node recovery copies from, and where the functions were looked for."""

    node: int
    conn: psycopg.Connection[Any]
    searched: tuple[str, ...]  # the databases looked in; the last is the connected one

    @property
    def dbname(self) -> str:
        return self.searched[-1]


class Waiter:
    """
    The PCP worker's waits during a recovery: a SIGUSR2 ends one at once (main's "failback
    done"); any other signal is held back and handed to the worker's own loop afterwards, so
    that it does not turn later waits into busy loops.  SIGINT/SIGQUIT (shutdown) end the
    recovery with an error, after which ``finish_recovery`` still runs.
    """

    def __init__(self, sigq: SignalQueue) -> None:
        self.sigq = sigq
        self.held: list[int] = []

    def sleep(self, seconds: float) -> None:
        self.sigq.wait((), max(0.0, seconds))
        for signum in self.sigq.pop_all():
            if signum != signal.SIGUSR2:
                self.held.append(signum)
            if signum in (signal.SIGINT, signal.SIGQUIT):
                raise PgError("node recovery failed", detail="pgpool-py is shutting down")

    def give_back(self) -> None:
        self.sigq.pending.extend(self.held)
        self.held.clear()


# ---------------------------------------------------------------------- entry point


def process_recovery_request(cfg: Config, shm: SharedState, node_id: int, main_pid: int, sigq: SignalQueue) -> None:
    """
    PCP ``O``: recover ``node_id``.  The caller holds the one-recovery-at-a-time guard
    (``pcp_recovery_in_progress``).  Raises PgError when the recovery fails; InRecovery is
    0 and the children are awake in every case.
    """
    if not 0 <= node_id < shm.req.num_backends:
        raise PgError("process recovery request failed", detail=f"node id {node_id} is not valid")
    mode = cfg.clustering_mode
    if mode not in RECOVERABLE_MODES:
        raise PgError("process recovery request failed",
                      detail="recovery request is only allowed in replication and streaming replication modes.",
                      hint=f"backend_clustering_mode is {mode}")
    if mode == "streaming_replication" and node_id == shm.req.primary_node_id:
        raise PgError("process recovery request failed",
                      detail="primary server cannot be recovered by online recovery.")
    waiter = Waiter(sigq)
    try:
        start_recovery(cfg, shm, node_id, main_pid, waiter)
    finally:
        finish_recovery(shm, main_pid)
        waiter.give_back()


def start_recovery(cfg: Config, shm: SharedState, node_id: int, main_pid: int, waiter: Waiter) -> None:
    log.info("starting recovering node %d", node_id)
    status = shm.backends[node_id].status
    if status == BackendStatus.UNUSED:
        raise PgError(f"node recovery failed, node id: {node_id} is unused")
    if status in VALID_STATUSES:
        raise PgError(
            f"node recovery failed, node id: {node_id} is alive",
            detail=f"node {node_id} is {BackendStatus(status).label}: only a detached (down) node can be recovered",
            hint=f'detach it with "pcp_detach_node -n {node_id}", then run pcp_recovery_node again',
        )
    replication = cfg.clustering_mode in REPLICATION_MODES
    source = shm.req.main_node_id if replication else shm.req.primary_node_id
    if source < 0 or source == node_id:
        raise PgError("node recovery failed, no live node to copy from",
                      detail="recovery copies the primary node (streaming) or the main node (native replication)")
    if not cfg.recovery_user:
        raise PgError("node recovery failed, recovery_user is not set", hint="set recovery_user in pgpool.conf")
    if not shm.backends[node_id].data_directory:
        # The recovery scripts get it as their destination: pgpool-II ran them with ''.
        raise PgError(f"node recovery failed, backend_data_directory{node_id} is not set",
                      hint=f"set backend_data_directory{node_id} in pgpool.conf and reload")

    src = connect_to_source(cfg, shm, source)
    with src.conn as conn:
        if replication:
            execute_checkpoint(conn)
            log.info("node recovery, CHECKPOINT in the 1st stage done")
        exec_recovery(cfg, shm, src, node_id, "1st stage", cfg.recovery_1st_stage_command)
        log.info("node recovery, 1st stage is done")

        if replication:
            log.info("node recovery, starting 2nd stage")
            # Before InRecovery: a child that sees InRecovery set reads this start time.
            shm.req.recovery_started = time.monotonic()
            shm.req.in_recovery = Recovery.ONLINE
            # Main SIGUSR2s the children: those in a session start their
            # client_idle_limit_in_recovery clock now rather than at their next message.
            _signal_main(main_pid)
            wait_connection_closed(cfg, shm, waiter)
            log.info("node recovery, all connections from clients have been closed")
            execute_checkpoint(conn)
            log.info("node recovery", extra={"detail": "CHECKPOINT in the 2nd stage done"})
            exec_recovery(cfg, shm, src, node_id, "2nd stage", cfg.recovery_2nd_stage_command)
            log.info("node recovery, 2nd stage is done")

        exec_remote_start(cfg, shm, src, node_id)
    # The recovered node is a copy of the source: the same database is there.
    check_postmaster_started(cfg, shm, node_id, src.dbname, waiter)
    log.info("node recovery, node: %d restarted", node_id)

    shm.req.pcp_wakeup_request = 0
    if not register_node_operation_request(shm, main_pid, RequestKind.NODE_UP, (node_id,), RequestDetail.CONFIRMED):
        raise PgError("node recovery failed, could not send the failback request",
                      detail="the failover request queue is full or pgpool-py's main process is gone")
    wait_for_failback(shm, waiter)
    log.info("recovery done")


def finish_recovery(shm: SharedState, main_pid: int) -> None:
    """Let the children accept again: InRecovery = 0, then main SIGUSR2s every child."""
    shm.req.in_recovery = Recovery.INIT
    _signal_main(main_pid)


def _signal_main(main_pid: int) -> None:
    """SIGUSR2 to main, which passes it on to every child (pgpool-II's wakeup_children)."""
    try:
        os.kill(main_pid, signal.SIGUSR2)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------- the steps


# pgpool-II's text, with its trailing space.
_UNABLE_TO_CONNECT = "node recovery failed, unable to connect to main node: {} "


def recovery_password(cfg: Config) -> str | None:
    """recovery_password, or the recovery_user's pool_passwd entry when it is empty."""
    from pgpool_py.child.child import pool_passwd_path
    from pgpool_py.child.passwd import classify_password, load_pool_passwd, read_pool_key

    if cfg.recovery_password:
        entry = classify_password(cfg.recovery_password, read_pool_key())
    else:
        path = pool_passwd_path(cfg)
        found = load_pool_passwd(path, read_pool_key()).get(cfg.recovery_user) if path else None
        if found is None:
            return None  # no password: trust or a .pgpass of the server user
        entry = found
    password = entry.plaintext()
    if password is None:
        raise PgError(
            f"the password of recovery_user {cfg.recovery_user} is invalid format",
            detail=entry.problem or f"a {entry.kind} password cannot be sent to PostgreSQL",
            hint="give recovery_password in plain text, TEXT or AES form (pg_enc)",
        )
    return password


def connect_as_recovery_user(cfg: Config, shm: SharedState, node: int, dbname: str) -> psycopg.Connection[Any]:
    b = shm.backends[node]
    try:
        return _connect(cfg, host=b.hostname.decode(), port=b.port, user=cfg.recovery_user,
                        password=recovery_password(cfg), dbname=dbname, connect_timeout=CONNECT_TIMEOUT,
                        autocommit=True)
    except psycopg.Error as exc:
        raise PgError(_UNABLE_TO_CONNECT.format(node), detail=str(exc).strip()) from exc


def connect_to_source(cfg: Config, shm: SharedState, node: int) -> Source:
    """
    The connection the recovery functions are called on: to recovery_database, or without
    it to the first database that has them.  When none has them, the first database reached,
    so that the first call fails naming every database looked in.
    """
    databases = recovery_databases(cfg)
    if len(databases) == 1:
        return Source(node, connect_as_recovery_user(cfg, shm, node, databases[0]), databases)
    reached: Source | None = None
    failures: list[str] = []
    for i, dbname in enumerate(databases):
        try:
            conn = connect_as_recovery_user(cfg, shm, node, dbname)
        except PgError as exc:
            failures.append(f'database "{dbname}": {exc.detail}')
            continue
        try:
            found = has_recovery_functions(conn)
        except psycopg.Error as exc:
            conn.close()
            failures.append(f'database "{dbname}": {_server_text(exc)}')
            continue
        if found:
            if reached is not None:
                reached.conn.close()
            log.info('recovery_database is not set: the recovery functions of node %d are in database "%s"',
                     node, dbname)
            return Source(node, conn, databases[: i + 1])
        if reached is None:
            reached = Source(node, conn, databases)
        else:
            conn.close()
    if reached is not None:
        return reached
    raise PgError(_UNABLE_TO_CONNECT.format(node), detail="; ".join(failures))


def has_recovery_functions(conn: psycopg.Connection[Any]) -> bool:
    """pgpool_recovery can be called by name here (ours or pgpool-II's extension)."""
    row = conn.execute("SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'pgpool_recovery'"
                       " AND pg_function_is_visible(oid))").fetchone()
    return bool(row and row[0])


def _connect(cfg: Config, **params: Any) -> psycopg.Connection[Any]:
    """A libpq connection of online recovery, checking the backend's certificate as the relay does."""
    tls = libpq_params(cfg)  # once: with ssl_ca_cert_dir it checks the CA bundle on disk
    try:
        return psycopg.connect(make_conninfo("", **tls), application_name="pgpool-py recovery", **params)
    except psycopg.OperationalError as exc:
        if TLS_NOT_SUPPORTED not in str(exc) or not tls:
            raise
        return psycopg.connect(application_name="pgpool-py recovery", **params)


def execute_checkpoint(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.execute("CHECKPOINT")
    except psycopg.Error as exc:
        raise PgError("executing recovery, execute CHECKPOINT failed", detail=_server_text(exc),
                      hint="recovery_user needs to be a superuser") from exc


def script_host(hostname: str) -> str:
    """pgpool-II passes localhost for a node reached through a Unix socket directory."""
    return "localhost" if not hostname or hostname.startswith("/") else hostname


def exec_recovery(cfg: Config, shm: SharedState, source: Source, node: int, stage: str, script: str) -> None:
    """``SELECT pgpool_recovery(script, ...)`` on the source node; an empty script is skipped."""
    if not script:
        return
    conn = source.conn
    src, dst = shm.backends[source.node], shm.backends[node]
    query = sql.SQL("SELECT pgpool_recovery({}, {}, {}, {}, {}, {}, {})").format(
        sql.Literal(script), sql.Literal(script_host(dst.hostname.decode())), sql.Literal(dst.data_directory.decode()),
        sql.Literal(str(src.port)), sql.Literal(node), sql.Literal(str(dst.port)),
        sql.Literal(script_host(src.hostname.decode())),
    ).as_string(conn)
    log.info("executing recovery", extra={"detail": f'starting recovery command: "{query}"'})
    try:
        log.info("executing recovery", extra={"detail": "disabling statement_timeout"})
        conn.execute("SET statement_timeout To 0")
    except psycopg.Error as exc:
        raise PgError(f'executing recovery, SET STATEMENT_TIMEOUT failed at "{stage}"',
                      detail=_server_text(exc)) from exc
    try:
        conn.execute(query)
    except psycopg.Error as exc:
        raise _function_error(cfg, shm, source, f'executing recovery, execution of command failed at "{stage}"',
                              exc) from exc


def exec_remote_start(cfg: Config, shm: SharedState, source: Source, node: int) -> None:
    conn = source.conn
    dst = shm.backends[node]
    query = sql.SQL("SELECT pgpool_remote_start({}, {})").format(
        sql.Literal(script_host(dst.hostname.decode())), sql.Literal(dst.data_directory.decode()),
    ).as_string(conn)
    log.info("executing remote start", extra={"detail": f'starting remote start command: "{query}"'})
    try:
        conn.execute(query)
    except psycopg.Error as exc:
        # pgpool-II puts libpq's whole error text (PQresultErrorMessage) into its message.
        result = exc.pgresult.error_message.decode(errors="replace") if exc.pgresult is not None else str(exc)
        raise _function_error(cfg, shm, source, f'executing remote start failed with error: "{result}"',
                              exc) from exc
    log.info("executing remote start", extra={"detail": "finish pgpool_remote_start"})


def _function_error(cfg: Config, shm: SharedState, source: Source, message: str, exc: psycopg.Error) -> PgError:
    """The server's error (with the script's status and output in its detail) for the PCP client."""
    if isinstance(exc, psycopg.errors.UndefinedFunction):
        # PCP cuts each field at 256 bytes and pcp tools print no HINT: the command goes first.
        b = shm.backends[source.node]
        command = install_command(b.hostname.decode(), b.port, cfg.recovery_user, source.searched[0])
        where = " or ".join(f'"{db}"' for db in source.searched)
        return PgError(message,
                       detail=f"the recovery functions are not installed in database {where} "
                              f"of node {source.node}; run: {command}",
                       hint="pgpool-II's C extension serves too: CREATE EXTENSION pgpool_recovery")
    return PgError(message, detail=_server_text(exc), hint=exc.diag.message_hint if exc.diag else None)


def _server_text(exc: psycopg.Error) -> str:
    diag = exc.diag
    if diag is None or not diag.message_primary:
        return str(exc).strip()
    return diag.message_primary + (f": {diag.message_detail}" if diag.message_detail else "")


def wait_connection_closed(cfg: Config, shm: SharedState, waiter: Waiter) -> None:
    """Wait up to recovery_timeout for every client of this pgpool to leave (conn_counter 0)."""
    deadline = time.monotonic() + cfg.recovery_timeout
    while shm.req.conn_counter > 0:
        left = deadline - time.monotonic()
        if left <= 0:
            log.info("wait_connection_closed: existing connections did not close in %d sec.", cfg.recovery_timeout)
            if ensure_conn_counter_validity(cfg, shm):
                return
            raise PgError(
                # pgpool-II's text, though there are no other pgpools (no watchdog).
                "node recovery failed, waiting connection closed in the other pgpools timeout",
                detail=f"existing connections did not close within recovery_timeout ({cfg.recovery_timeout} seconds): "
                       f"{shm.req.conn_counter} client connection(s) still open",
                hint="clients must disconnect; client_idle_limit_in_recovery ends idle ones, "
                     "or raise recovery_timeout",
            )
        waiter.sleep(min(POLL_INTERVAL, left))


def conn_counter_is_suspect(client_idle_limit_in_recovery: int, recovery_timeout: int) -> bool:
    """
    pgpool-II's ``ensure_conn_counter_validity`` rule: when client_idle_limit_in_recovery
    must already have ended every client, a non-zero counter is a miscount (a child killed
    by SIGKILL never decremented it).
    """
    limit = client_idle_limit_in_recovery
    return limit == -1 or (limit > 0 and recovery_timeout >= limit)


def ensure_conn_counter_validity(cfg: Config, shm: SharedState) -> bool:
    """True (and the counter reset to 0) when the remaining count cannot be real clients."""
    if not conn_counter_is_suspect(cfg.client_idle_limit_in_recovery, cfg.recovery_timeout):
        return False
    with shm.lock(LockId.CONN_COUNTER):
        log.info("wait_connection_closed: malformed conn_counter (%d) detected. reset it to 0",
                 shm.req.conn_counter)
        shm.req.conn_counter = 0
    return True


def postmaster_wait(recovery_timeout: int) -> int:
    """
    Seconds the recovered postmaster has to accept a connection: until pgpool-II 4.3 tries it
    for the last time.  pgpool-II tries 4 times 3 s apart (database postgres), then
    recovery_timeout / 3 + 1 times 3 s apart (template1), so its last try comes
    12 + 3 * (recovery_timeout // 3) seconds after its first (102 for the default 90); it
    reports the failure after a last pause of 3 s more.
    """
    return POSTMASTER_RETRY_PAUSE * (POSTMASTER_FIRST_TRIES + recovery_timeout // POSTMASTER_RETRY_PAUSE)


def check_postmaster_started(cfg: Config, shm: SharedState, node: int, dbname: str, waiter: Waiter) -> None:
    """Poll the recovered node until it accepts connections, as long as pgpool-II would."""
    log.info("checking if postmaster is started")
    b = shm.backends[node]
    host, user = b.hostname.decode(), cfg.recovery_user
    password = recovery_password(cfg)
    wait = postmaster_wait(cfg.recovery_timeout)
    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        log.debug("trying to connect to postmaster on hostname:%s database:%s user:%s (retry %d times)",
                  host, dbname, user, attempt)
        try:
            with _connect(cfg, host=host, port=b.port, user=user, password=password, dbname=dbname,
                          connect_timeout=max(2, int(min(CONNECT_TIMEOUT, deadline - time.monotonic())))):
                return
        except psycopg.Error as exc:
            last = str(exc).strip()
        left = deadline - time.monotonic()
        if left <= 0:
            raise PgError(
                "recovery is checking if postmaster is started",
                detail=f'postmaster on hostname:"{host}" database:"{dbname}" user:"{user}" failed to start in '
                       f"{wait} second (recovery_timeout {cfg.recovery_timeout}); last error: {last}",
                hint="check the pgpool_remote_start script and the server log of the recovered node; "
                     "it has 12 s + recovery_timeout rounded down to a multiple of 3 to start",
            )
        attempt += 1
        waiter.sleep(min(POLL_INTERVAL, left))


def wait_for_failback(shm: SharedState, waiter: Waiter) -> None:
    """Main sets pcp_wakeup_request and SIGUSR2s the PCP processes once the failback is done."""
    deadline = time.monotonic() + FAILBACK_WAIT_MAX
    while not shm.req.pcp_wakeup_request:
        left = deadline - time.monotonic()
        if left <= 0:
            log.info("node recovery",
                     extra={"detail": f"waiting for wake up request is timeout({int(FAILBACK_WAIT_MAX)} seconds)"})
            break
        waiter.sleep(left)
    shm.req.pcp_wakeup_request = 0
