"""
pgpool's own SQL commands, answered by the child without a backend: ``SHOW POOL_NODES``,
``SHOW POOL_PROCESSES``, ``SHOW POOL_POOLS``, ``SHOW POOL_VERSION``, ``SHOW POOL_STATUS``,
``PGPOOL SHOW``.  Columns follow pgpool-II; each reply is sent once (pgpool-II 4.3 sent the
RowDescription of POOL_VERSION/POOL_PROCESSES twice).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Final, MutableMapping, Sequence

from pgpool_py import PGPOOL_COMPAT_VERSION, __version__
from pgpool_py.config import PARAMS, Context, Param, render
from pgpool_py.health.check import health_check_stats_rows, pg_role, pg_status
from pgpool_py.errors import PgError, ProtocolError
from pgpool_py.protocol import messages as m
from pgpool_py.routing.classify import addressed_to_pgpool_bytes, is_pool_command, parse_pool_command
from pgpool_py.shmem.layout import STATEMENT_COUNTERS, BackendStatus, ChildStatus, process_start_text, show_time

if TYPE_CHECKING:
    from pgpool_py.child.child import Child
    from pgpool_py.child.session import Session

Rows = list[list[str | None]]

log = logging.getLogger(__name__)

POOL_NODES_COLUMNS: Final = [
    "node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
    "select_cnt", "load_balance_node", "replication_delay", "replication_state",
    "replication_sync_state", "last_status_change",
]
POOL_PROCESSES_COLUMNS: Final = [
    "pool_pid", "start_time", "client_connection_count", "database", "username",
    "backend_connection_time", "pool_counter", "status",
]
POOL_POOLS_COLUMNS: Final = [
    "pool_pid", "start_time", "client_connection_count", "pool_id", "backend_id", "database",
    "username", "backend_connection_time", "client_connection_time", "client_disconnection_time",
    "client_idle_duration", "majorversion", "minorversion", "pool_counter", "pool_backendpid",
    "pool_connected", "status",
]

POOL_HEALTH_CHECK_STATS_COLUMNS: Final = [
    "node_id", "hostname", "port", "status", "role", "last_status_change", "total_count",
    "success_count", "fail_count", "skip_count", "retry_count", "average_retry_count",
    "max_retry_count", "max_duration", "min_duration", "average_duration", "last_health_check",
    "last_successful_health_check", "last_skip_health_check", "last_failed_health_check",
]
POOL_BACKEND_STATS_COLUMNS: Final = ["node_id", "hostname", "port", "status", "role", *STATEMENT_COUNTERS]

# A SHOW POOL_<name> that parse_pool_command does not know: named in the error.
_SHOW: Final = re.compile(r"^\s*show\s+(pool_\w+)\s*;?\s*$", re.I)




@dataclass(frozen=True)
class Result:
    """A command's answer: rows under columns (the SHOW commands), or no rows at all (SET)."""

    columns: Sequence[str] | None  # None: the command returns no rows
    rows: Sequence[Sequence[str | None]] = ()
    tag: str = ""  # "": SELECT and the number of rows, as pgpool-II tags every SHOW

    def description(self, formats: Sequence[int] = ()) -> bytes:
        """RowDescription, or NoData."""
        return m.NO_DATA if self.columns is None else m.row_description(self.columns, formats)

    def rows_from(self, start: int, limit: int = 0) -> tuple[bytes, int]:
        """DataRows from row ``start``, at most ``limit`` (0: all), then CommandComplete, or
        PortalSuspended if rows are left; and the row to go on from."""
        stop = len(self.rows) if limit <= 0 else min(len(self.rows), start + limit)
        rows = b"".join(m.data_row(row) for row in self.rows[start:stop])
        if stop < len(self.rows):
            return rows + m.PORTAL_SUSPENDED, stop
        # PostgreSQL counts the rows of this Execute only.
        return rows + m.command_complete(self.tag or f"SELECT {stop - start}"), stop

    def messages(self) -> bytes:
        """The reply to a simple Query, ReadyForQuery aside."""
        head = b"" if self.columns is None else m.row_description(self.columns)
        return head + self.rows_from(0)[0]


def error_message(exc: PgError) -> bytes:
    return m.error_response(exc.message, exc.sqlstate, detail=exc.detail, hint=exc.hint)


class PoolCommands:
    def __init__(self, child: Child) -> None:
        self.child = child
        self._show: dict[str, Callable[[Session], Result]] = {
            "pool_nodes": self.pool_nodes,
            "pool_processes": self.pool_processes,
            "pool_pools": self.pool_pools,
            "pool_version": self.pool_version,
            "pool_status": self.pool_status,
            "pool_health_check_stats": self.pool_health_check_stats,
            "pool_backend_stats": self.pool_backend_stats,
        }

    def execute(self, sql: str, tx_status: int, session: Session) -> bytes:
        """The whole reply to one Query message, ReadyForQuery included."""
        try:
            body = self.run(sql, session).messages()
        except PgError as exc:
            body = error_message(exc)
        return body + m.ready_for_query(tx_status)

    def run(self, sql: str, session: Session) -> Result:
        # As in pgpool-II, the process executes a command meanwhile (SHOW POOL_POOLS shows it).
        child = self.child
        before = child.status
        child.set_status(ChildStatus.COMMAND_EXECUTE)
        try:
            return self._dispatch(sql, session)
        finally:
            child.set_status(before)

    def _dispatch(self, sql: str, session: Session) -> Result:
        command = parse_pool_command(sql)
        if command is None:
            unknown = _SHOW.match(sql)
            if unknown is None:
                raise PgError(
                    "syntax error in pgpool command", sqlstate="42601", detail=sql.strip()[:200],
                    hint="use PGPOOL SHOW <parameter>|ALL, PGPOOL SET <parameter> = <value> or PGPOOL RESET <parameter>|ALL",
                )
            command = ("SHOW", unknown.group(1).lower())
        verb, name, *value = command
        if verb == "SHOW":
            handler = self._show.get(name)
            if handler is None:
                raise PgError(
                    f'unrecognized pgpool command "SHOW {name}"',
                    sqlstate="42704",
                    hint="pgpool-py knows SHOW " + ", ".join(n.upper() for n in self._show),
                )
            return handler(session)
        if verb == "PGPOOL SHOW":
            return self.pgpool_show(name, session)
        if verb == "PGPOOL SET":
            return self.pgpool_set(name, value[0], session)
        return self.pgpool_reset(name, session)

    # ------------------------------------------------------------------ SHOW POOL_*

    def _role_label(self, node: int) -> str:
        shm = self.child.shm
        if self.child.cfg.clustering_mode == "streaming_replication":
            return "primary" if node == shm.req.primary_node_id else "standby"
        return "main" if node == shm.req.main_node_id else "replica"

    def _used_nodes(self) -> list[int]:
        shm = self.child.shm
        return [n for n in range(shm.req.num_backends) if shm.backends[n].status != BackendStatus.UNUSED]

    def pool_nodes(self, session: Session) -> Result:
        shm = self.child.shm
        total_weight = sum(shm.backends[i].weight for i in range(shm.req.num_backends)) or 1.0
        lb_node = session.slot.load_balance_node if session.slot is not None else -1
        rows: Rows = []
        for node in self._used_nodes():
            b = shm.backends[node]
            cfg = self.child.cfg
            rows.append([
                str(node), b.hostname.decode(), str(b.port), BackendStatus(b.status).label, pg_status(cfg, shm, node),
                f"{b.weight / total_weight:f}", self._role_label(node), pg_role(cfg, shm, node),
                str(shm.statement_counts(node)["select_cnt"]), "true" if node == lb_node else "false", str(b.standby_delay),
                b.replication_state.decode(), b.replication_sync_state.decode(), show_time(b.status_changed_time),
            ])
        return Result(POOL_NODES_COLUMNS, rows)

    def pool_health_check_stats(self, session: Session) -> Result:
        shm = self.child.shm
        stats = health_check_stats_rows(shm)
        rows: Rows = []
        for node in self._used_nodes():
            b = shm.backends[node]
            rows.append([
                str(node), b.hostname.decode(), str(b.port), BackendStatus(b.status).label,
                self._role_label(node), show_time(b.status_changed_time), *stats[node],
            ])
        return Result(POOL_HEALTH_CHECK_STATS_COLUMNS, rows)

    def pool_backend_stats(self, session: Session) -> Result:
        shm = self.child.shm
        rows: Rows = []
        for node in self._used_nodes():
            b = shm.backends[node]
            counts = shm.statement_counts(node)
            rows.append([
                str(node), b.hostname.decode(), str(b.port), BackendStatus(b.status).label, self._role_label(node),
                *(str(counts[name]) for name in STATEMENT_COUNTERS),
            ])
        return Result(POOL_BACKEND_STATS_COLUMNS, rows)

    def pool_processes(self, session: Session) -> Result:
        shm = self.child.shm
        now = time.time()
        rows: Rows = []
        for child in range(shm.num_children):
            p = shm.procs[child]
            if not p.pid:
                continue
            database = username = backend_time = counter = ""
            if p.current_pool >= 0:
                info = shm.conn(child, p.current_pool, self._first_node(child, p.current_pool))
                database, username = info.database.decode(), info.user.decode()
                backend_time, counter = show_time(info.create_time), str(info.counter)
            rows.append([
                str(p.pid), process_start_text(p, session.cfg.child_life_time, now), str(p.client_connection_count),
                database, username,
                backend_time, counter, ChildStatus(p.status).label,
            ])
        return Result(POOL_PROCESSES_COLUMNS, rows)

    def pool_pools(self, session: Session) -> Result:
        shm, cfg = self.child.shm, session.cfg
        rows: list[list[str]] = []
        for child in range(shm.num_children):
            if shm.procs[child].pid:
                rows += shm.pool_rows(child, cfg.child_life_time, cfg.client_idle_limit)
        return Result(POOL_POOLS_COLUMNS, rows)

    def _first_node(self, child: int, pool: int) -> int:
        shm = self.child.shm
        for node in range(shm.req.num_backends):
            if shm.conn(child, pool, node).in_use:
                return node
        return 0

    def pool_version(self, session: Session) -> Result:
        return Result(["pool_version"], [[f"{PGPOOL_COMPAT_VERSION} (pgpool-py {__version__})"]])

    def pool_status(self, session: Session) -> Result:
        rows: Rows = [list(r) for r in render.show_rows(session.cfg)]
        return Result(["item", "value", "description"], rows)

    # ------------------------------------------------------------------ PGPOOL SHOW / SET / RESET

    def pgpool_show(self, name: str, session: Session) -> Result:
        """PGPOOL SHOW: one value, or (item, value, description) rows for ALL, a per-node family
        named without index, or a group (pgpool-II's report_config_variable)."""
        if name == "all":
            shown: str | list[render.Row] = render.pgpool_show_all(session.cfg)
        else:
            try:
                shown = render.pgpool_show(session.cfg, name)
            except KeyError:
                raise PgError(f'config variable "{name}" not found', sqlstate="42704") from None
        if isinstance(shown, str):
            return Result([name], [[shown]])
        rows: Rows = [list(r) for r in shown]
        return Result(["item", "value", "description"], rows)

    def _session_param(self, name: str) -> Param:
        param = PARAMS.get(name)
        if param is None:
            raise PgError(f'unrecognized configuration parameter "{name}"', sqlstate="42704")
        if param.context is not Context.SESSION:
            raise PgError(
                f'invalid Context, value for parameter "{name}" cannot be changed',
                sqlstate="55P02",
                hint="only session parameters can be set with PGPOOL SET; change pgpool.conf and reload",
            )
        return param

    def pgpool_set(self, name: str, text: str, session: Session) -> Result:
        param = self._session_param(name)
        try:
            value = param.parse(text)
        except ValueError:
            raise PgError(
                f'invalid value for parameter "{name}": "{text}"', sqlstate="22023", hint=f"allowed: {param.allowed()}"
            ) from None
        session.session_values[name] = value
        session.apply_session_values()
        log.debug('parameter "%s" set to "%s" for this session', name, render.format_value(param, value))
        return Result(None, tag="SET")

    def pgpool_reset(self, name: str, session: Session) -> Result:
        if name == "all":
            session.session_values.clear()
        else:
            self._session_param(name)
            session.session_values.pop(name, None)
        session.apply_session_values()
        return Result(None, tag="RESET" if name == "all" else "SET")


# ---------------------------------------------------------------- the extended protocol

_P: Final = ord("P")
_B: Final = ord("B")
_D: Final = ord("D")
_E: Final = ord("E")
_WITHOUT_ROWS: Final = ("PGPOOL SET", "PGPOOL RESET")
_DEALLOCATED: Final = m.command_complete("DEALLOCATE")
_DEALLOCATE: Final = re.compile(rb'\s*deallocate\s+(?:prepare\s+)?(?:"((?:[^"]|"")+)"|([a-z_][a-z0-9_$]*))\s*;?\s*\Z',
                         re.IGNORECASE)


@dataclass
class _Portal:
    sql: str
    formats: tuple[int, ...]  # the Bind's result format codes
    result: Result | None = None  # run by its first Describe or Execute
    sent: int = 0  # rows earlier Executes sent (a row limit)


class PoolStatements:
    """
    pgpool's commands as prepared statements and portals of the session: pgjdbc and asyncpg
    send every statement so, psycopg from a statement's 6th run on.  pgpool-II 4.3 passed
    their Parse to the backend, which knows no "pool_nodes" parameter.  Both relays hand
    their batches to ``answer`` and send what it returns.
    """

    def __init__(self, commands: PoolCommands) -> None:
        self.commands = commands
        self.statements: dict[str, str] = {}  # name -> the command's text
        self.portals: dict[str, _Portal] = {}

    def ours(self, buf: bytes | bytearray, typ: int, start: int, end: int, shadowed: set[tuple[str, str]],
             is_command: Callable[[bytes], bool]) -> bool:
        """
        Whether the extended message at ``buf[start:end]`` is for pgpool: a Parse of one of its
        commands (``is_command`` of the text), or a message naming a statement or portal of
        ours that no earlier message of the batch gave to the backend (``shadowed``, which
        this adds to).
        """
        if typ == _P:
            raw_name, text = m.parse_parse_bytes(bytes(buf[start:end]))
            if is_command(text):
                return True
            shadowed.add(("S", raw_name.decode(errors="replace")))
            return False
        if typ == _B:
            portal, stmt = m.bind_names(buf, start, end)
            if stmt in self.statements and ("S", stmt) not in shadowed:
                return True
            shadowed.add(("P", portal))
            return False
        kind, name = m.target_name(buf, start, end, typ)
        return name in (self.statements if kind == "S" else self.portals) and (kind, name) not in shadowed

    def answer(self, buf: bytes | bytearray, batch: list[tuple[int, int, int]], shadowed: set[tuple[str, str]],
               is_command: Callable[[bytes], bool], session: Session, backend_statements: MutableMapping[str, Any],
               backend_portals: MutableMapping[str, Any]) -> tuple[bytes, int]:
        """
        The replies to ``batch``'s extended messages (Sync and Flush are the relay's) from the
        first while they are pgpool's (``ours``); after an error, to none of the rest, as
        PostgreSQL skips to Sync.  Returns them, and the index of the first message left for
        the backend (``len(batch)``: none).  A name of ours takes it over from the backend's
        (``backend_statements`` and ``backend_portals`` of the session).
        """
        replies: list[bytes] = []
        failed = False
        for at, (typ, start, end) in enumerate(batch):
            if failed:
                continue
            if not self.ours(buf, typ, start, end, shadowed, is_command):
                return b"".join(replies), at
            try:
                replies.append(self._reply(typ, bytes(buf[start:end]), session, backend_statements, backend_portals))
            except ProtocolError:
                raise  # a malformed message ends the session, as anywhere else
            except PgError as exc:
                replies.append(error_message(exc))
                failed = True
        return b"".join(replies), len(batch)

    def ready(self, tx_status: int) -> bytes:
        """ReadyForQuery for a Sync the relay answers; the implicit transaction's portals end with it."""
        if tx_status == m.TX_IDLE:
            self.portals.clear()
        return m.ready_for_query(tx_status)

    def _reply(self, typ: int, msg: bytes, session: Session, backend_statements: MutableMapping[str, Any],
               backend_portals: MutableMapping[str, Any]) -> bytes:
        """The reply to a Parse, Bind, Describe, Execute or Close of ours (``msg``: the whole
        message); PgError where PostgreSQL would fail."""
        body = msg[5:]
        if typ == _P:
            name, sql = m.parse_parse(body)
            if name and (name in self.statements or name in backend_statements):
                raise PgError(f'prepared statement "{name}" already exists', sqlstate="42P05")
            backend_statements.pop(name, None)  # the unnamed statement is ours now
            self.statements[name] = sql
            return m.PARSE_COMPLETE
        if typ == _B:
            bind = m.parse_bind(body)
            if bind.portal and bind.portal in self.portals:
                raise PgError(f'portal "{bind.portal}" already exists', sqlstate="42P03")
            if bind.parameters:
                raise PgError(f'bind message supplies {bind.parameters} parameters, but prepared statement '
                              f'"{bind.statement}" requires 0', sqlstate="08P01")
            backend_portals.pop(bind.portal, None)
            self.portals[bind.portal] = _Portal(self.statements[bind.statement], bind.result_formats)
            return m.BIND_COMPLETE
        if typ == _E:
            name, limit = m.parse_execute(body)
            portal = self.portals[name]
            out, portal.sent = self._result(portal, session).rows_from(portal.sent, limit)
            return out
        kind, name = m.target_name(msg, 0, len(msg), typ)
        if typ == _D:
            if kind == "S":
                sql = self.statements[name]
                return m.NO_PARAMETERS + (m.NO_DATA if _without_rows(sql) else self.commands.run(sql, session).description())
            portal = self.portals[name]
            return m.NO_DATA if _without_rows(portal.sql) else self._result(portal, session).description(portal.formats)
        # Close: as in PostgreSQL, of a statement or portal that does not exist too.
        (self.statements if kind == "S" else self.portals).pop(name, None)
        return m.CLOSE_COMPLETE

    def deallocated(self, text: bytes) -> str | None:
        """The statement of ours that a simple Query ``DEALLOCATE name`` frees (psycopg with
        libpq before 17 and Ruby's pg evict prepared statements so), or None."""
        found = _DEALLOCATE.match(text)
        if found is None:
            return None
        quoted, bare = found.group(1), found.group(2)
        name = (quoted.replace(b'""', b'"') if quoted is not None else bare.lower()).decode(errors="replace")
        return name if name in self.statements else None

    def free(self, name: str, tx_status: int) -> bytes:
        """Free a statement ``deallocated`` found: the reply to the Query."""
        del self.statements[name]
        return _DEALLOCATED + m.ready_for_query(tx_status)

    def _result(self, portal: _Portal, session: Session) -> Result:
        if portal.result is None:
            portal.result = self.commands.run(portal.sql, session)
        return portal.result


def _without_rows(sql: str) -> bool:
    """PGPOOL SET and RESET: described as NoData, and not run before their Execute."""
    command = parse_pool_command(sql)
    return command is not None and command[0] in _WITHOUT_ROWS


def is_command_text(text: bytes) -> bool:
    """A statement's text is one of pgpool's commands (the raw relay's test; the router's
    classifier knows it from its cached verdict)."""
    return addressed_to_pgpool_bytes(text) and is_pool_command(text.decode(errors="replace"))
