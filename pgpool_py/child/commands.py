"""
pgpool's own SQL commands, answered by the child without a backend: ``SHOW POOL_NODES``,
``SHOW POOL_PROCESSES``, ``SHOW POOL_POOLS``, ``SHOW POOL_VERSION``, ``SHOW POOL_STATUS``,
``PGPOOL SHOW``.  Columns follow pgpool-II; each reply is sent once (pgpool-II 4.3 sent the
RowDescription of POOL_VERSION/POOL_PROCESSES twice).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Callable

from pgpool_py import PGPOOL_COMPAT_VERSION, __version__
from pgpool_py.config import render
from pgpool_py.errors import PgError
from pgpool_py.protocol import messages as m
from pgpool_py.shmem.layout import BackendStatus, ChildStatus, Role

if TYPE_CHECKING:
    from pgpool_py.child.child import Child
    from pgpool_py.child.session import Session

Rows = list[list[str | None]]

POOL_NODES_COLUMNS = [
    "node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role", "pg_role",
    "select_cnt", "load_balance_node", "replication_delay", "replication_state",
    "replication_sync_state", "last_status_change",
]
POOL_PROCESSES_COLUMNS = [
    "pool_pid", "start_time", "client_connection_count", "database", "username",
    "backend_connection_time", "pool_counter", "status",
]
POOL_POOLS_COLUMNS = [
    "pool_pid", "start_time", "client_connection_count", "pool_id", "backend_id", "database",
    "username", "backend_connection_time", "client_connection_time", "client_disconnection_time",
    "client_idle_duration", "majorversion", "minorversion", "pool_counter", "pool_backendpid",
    "pool_connected", "status", "load_balance_node",
]

_SHOW = re.compile(r"^\s*show\s+(pool_\w+)\s*;?\s*$", re.I)
_PGPOOL_SHOW = re.compile(r"^\s*pgpool\s+show\s+(\w+)\s*;?\s*$", re.I)


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


class PoolCommands:
    def __init__(self, child: Child) -> None:
        self.child = child
        self._show: dict[str, Callable[[Session], bytes]] = {
            "pool_nodes": self.pool_nodes,
            "pool_processes": self.pool_processes,
            "pool_pools": self.pool_pools,
            "pool_version": self.pool_version,
            "pool_status": self.pool_status,
        }

    def execute(self, sql: str, tx_status: int, session: Session) -> bytes:
        """The whole reply to one Query message, ReadyForQuery included."""
        try:
            body = self._dispatch(sql, session)
        except PgError as exc:
            body = m.error_response(exc.message, exc.sqlstate, detail=exc.detail, hint=exc.hint)
        return body + m.ready_for_query(tx_status)

    def _dispatch(self, sql: str, session: Session) -> bytes:
        match = _SHOW.match(sql)
        if match:
            handler = self._show.get(match.group(1).lower())
            if handler is None:
                raise PgError(
                    f'unrecognized pgpool command "SHOW {match.group(1)}"',
                    sqlstate="42704",
                    hint="pgpool-py knows SHOW " + ", ".join(n.upper() for n in self._show),
                )
            return handler(session)
        match = _PGPOOL_SHOW.match(sql)
        if match:
            return self.pgpool_show(match.group(1).lower())
        raise PgError(
            "syntax error in pgpool command", sqlstate="42601", detail=sql.strip()[:200],
            hint="use PGPOOL SHOW <parameter> or PGPOOL SHOW ALL",
        )

    # ------------------------------------------------------------------ SHOW POOL_*

    def pool_nodes(self, session: Session) -> bytes:
        shm = self.child.shm
        cfg = self.child.cfg
        streaming = cfg.clustering_mode == "streaming_replication"
        total_weight = sum(shm.backends[i].weight for i in range(shm.req.num_backends)) or 1.0
        lb_node = session.slot.load_balance_node if session.slot is not None else -1
        rows: Rows = []
        for node in range(shm.req.num_backends):
            b = shm.backends[node]
            status = BackendStatus(b.status)
            if status == BackendStatus.UNUSED:
                continue
            if streaming:
                role_label = "primary" if node == shm.req.primary_node_id else "standby"
            else:
                role_label = "main" if node == shm.req.main_node_id else "replica"
            pg_role = Role(b.pg_role).label if b.pg_role >= 0 else "unknown"
            rows.append([
                str(node), b.hostname.decode(), str(b.port), status.label, "unknown",
                f"{b.weight / total_weight:f}", role_label, pg_role,
                str(b.select_cnt), "true" if node == lb_node else "false", str(b.standby_delay), "", "",
                _ts(b.status_changed_time),
            ])
        return m.result_set(POOL_NODES_COLUMNS, rows)

    def pool_processes(self, session: Session) -> bytes:
        shm = self.child.shm
        rows: Rows = []
        for child in range(shm.num_children):
            p = shm.procs[child]
            if not p.pid:
                continue
            database = username = backend_time = counter = ""
            if p.current_pool >= 0:
                info = shm.conn(child, p.current_pool, self._first_node(child, p.current_pool))
                database, username = info.database.decode(), info.user.decode()
                backend_time, counter = _ts(info.create_time), str(info.counter)
            rows.append([
                str(p.pid), _ts(p.start_time), str(p.client_connection_count), database, username,
                backend_time, counter, ChildStatus(p.status).label,
            ])
        return m.result_set(POOL_PROCESSES_COLUMNS, rows)

    def pool_pools(self, session: Session) -> bytes:
        shm = self.child.shm
        rows: Rows = []
        for child in range(shm.num_children):
            p = shm.procs[child]
            if not p.pid:
                continue
            for pool in range(shm.max_pool):
                for node in range(shm.req.num_backends):
                    info = shm.conn(child, pool, node)
                    live = info.in_use
                    rows.append([
                        str(p.pid), _ts(p.start_time), str(p.client_connection_count), str(pool), str(node),
                        info.database.decode() if live else "", info.user.decode() if live else "",
                        _ts(info.create_time) if live else "",
                        _ts(info.client_connection_time) if live else "",
                        _ts(info.client_disconnection_time) if live else "",
                        str(info.client_idle_duration) if live else "0",
                        str(info.major) if live else "0", str(info.minor) if live else "0",
                        str(info.counter) if live else "0", str(info.pid) if live else "0",
                        "1" if live and info.connected else "0",
                        ChildStatus(p.status).label if live and info.connected else "",
                        "1" if live and info.load_balancing_node == node else "0",
                    ])
        return m.result_set(POOL_POOLS_COLUMNS, rows)

    def _first_node(self, child: int, pool: int) -> int:
        shm = self.child.shm
        for node in range(shm.req.num_backends):
            if shm.conn(child, pool, node).in_use:
                return node
        return 0

    def pool_version(self, session: Session) -> bytes:
        return m.result_set(["pool_version"], [[f"{PGPOOL_COMPAT_VERSION} (pgpool-py {__version__})"]])

    def pool_status(self, session: Session) -> bytes:
        rows: Rows = [list(r) for r in render.show_rows(self.child.cfg)]
        return m.result_set(["item", "value", "description"], rows)

    # ------------------------------------------------------------------ PGPOOL SHOW

    def pgpool_show(self, name: str) -> bytes:
        if name == "all":
            return self.pool_status_rows()
        try:
            value = render.show_value(self.child.cfg, name)
        except KeyError:
            raise PgError(f'unrecognized configuration parameter "{name}"', sqlstate="42704") from None
        return m.result_set([name], [[value]], tag="SHOW")

    def pool_status_rows(self) -> bytes:
        rows: Rows = [list(r) for r in render.show_rows(self.child.cfg)]
        return m.result_set(["item", "value", "description"], rows, tag="SHOW")
