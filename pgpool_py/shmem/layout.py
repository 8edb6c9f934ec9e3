"""
Shared memory: fixed-size ctypes structures in one anonymous shared mmap.

Created by main after daemonizing and before the first fork, so every process inherits the
same pages; nothing to unlink, no resource tracker, no pickles, no pointers.  Main is the only
writer of cluster-wide state (backend status, primary/main node); other processes write only
their own ProcessInfo/ConnectionInfo slots and ask main for the rest through the request queue.

Locks are ``fcntl.lockf`` byte ranges on an unlinked temporary file: the kernel releases them
when a holder dies, so a child killed by SIGKILL cannot wedge the server.  Critical sections
only copy memory.
"""

from __future__ import annotations

import _ctypes  # noqa: F401  (compiled: mypyc refers to ctypes.Structure as _ctypes.Structure)
import contextlib
import ctypes
import enum
import mmap
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Final, Iterator

from pgpool_py.stdlib import LOCK_EX, LOCK_UN, lockf

MAX_BACKENDS: Final = 128
REQUEST_QUEUE_SIZE: Final = 10
MAX_NODE_IDS: Final = 8  # node ids carried per request (pgpool: 128; one request names few nodes)


class BackendStatus(enum.IntEnum):
    UNUSED = 0
    CONNECT_WAIT = 1
    UP = 2
    DOWN = 3

    @property
    def label(self) -> str:
        return ("unused", "waiting", "up", "down")[self]


VALID_STATUSES: Final = frozenset({BackendStatus.UP, BackendStatus.CONNECT_WAIT})


class ServerStatus(enum.IntEnum):
    """What the health check last saw of a node's server, whatever pgpool's status of the node
    (pgpool-II's PQping, the pg_status of SHOW POOL_NODES)."""

    UNKNOWN = 0
    UP = 1
    DOWN = 2

    @property
    def label(self) -> str:
        return ("unknown", "up", "down")[self]


class Role(enum.IntEnum):
    MAIN = 0
    REPLICA = 1
    PRIMARY = 2
    STANDBY = 3

    @property
    def label(self) -> str:
        return ("main", "replica", "primary", "standby")[self]


class RequestKind(enum.IntEnum):
    NODE_UP = 0
    NODE_DOWN = 1
    NODE_RECOVERY = 2
    CLOSE_IDLE = 3
    PROMOTE_NODE = 4
    NODE_QUARANTINE = 5


class RequestDetail(enum.IntFlag):
    NONE = 0
    SWITCHOVER = 0x01
    WATCHDOG = 0x02
    CONFIRMED = 0x04
    UPDATE = 0x08
    PROMOTE = 0x10


class ChildStatus(enum.IntEnum):
    WAIT_FOR_CONNECT = 0
    COMMAND_EXECUTE = 1
    IDLE = 2
    IDLE_IN_TRANS = 3
    CONNECTING = 4

    @property
    def label(self) -> str:
        return ("Wait for connection", "Execute command", "Idle", "Idle in transaction", "Connecting")[self]


class Recovery(enum.IntEnum):
    INIT = 0
    ONLINE = 1


class LockId(enum.IntEnum):
    """Byte offsets in the lock file, one per critical section (pgpool's semaphore numbers)."""

    CONN_COUNTER = 0
    REQUEST_INFO = 1
    PCP_REQUEST = 3
    ACCEPT = 4
    FOLLOW_PRIMARY = 6


_CONN_COUNTER_LOCK: Final = int(LockId.CONN_COUNTER)


def show_time(epoch: float) -> str:
    """A time kept in shared memory as SHOW and PCP print it (pgpool-II's %F %T); '' for never."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else ""


def _minutes(seconds: int) -> str:
    return f"{seconds // 60}:{seconds % 60:02d}"


def process_start_text(proc: ProcessInfo, child_life_time: int, now: float) -> str:
    """A child's start_time as SHOW POOL_PROCESSES/POOL_POOLS and pcp_proc_info print it: an
    idle child that has served clients also shows how long it has before child_life_time
    restarts it."""
    text = show_time(proc.start_time)
    if child_life_time > 0 and proc.connected and proc.current_pool < 0 and proc.wait_for_connect_since:
        left = max(0, child_life_time - int(now - proc.wait_for_connect_since))
        text += f" ({_minutes(left)} before process restarting)"
    return text


class BackendInfo(ctypes.Structure):
    _fields_ = [
        ("hostname", ctypes.c_char * 256),
        ("port", ctypes.c_int),
        ("status", ctypes.c_int),
        ("role", ctypes.c_int),
        ("weight", ctypes.c_double),  # unnormalized, as configured
        ("data_directory", ctypes.c_char * 256),
        ("application_name", ctypes.c_char * 64),
        ("flag", ctypes.c_int),
        ("quarantine", ctypes.c_bool),
        ("status_changed_time", ctypes.c_double),
        ("standby_delay", ctypes.c_uint64),
        ("pg_role", ctypes.c_int),  # live role seen by sr_check: -1 unknown
        # pg_stat_replication.state / sync_state of this node as a standby (sr_check worker)
        ("replication_state", ctypes.c_char * 64),
        ("replication_sync_state", ctypes.c_char * 64),
    ]


# SHOW POOL_NODES (select_cnt) and SHOW POOL_BACKEND_STATS: statements routed to a node, by
# kind, and the errors it sent.
STATEMENT_COUNTERS: Final = ("select_cnt", "insert_cnt", "update_cnt", "delete_cnt", "ddl_cnt", "other_cnt",
                      "panic_cnt", "fatal_cnt", "error_cnt")


class StatementCounters(ctypes.Structure):
    """One child's counts for one node.  Each child writes only its own (the SHOW commands add
    them up): a counter shared by every child was a cache line passed between the CPUs on
    every statement."""

    _fields_ = [(name, ctypes.c_uint64) for name in STATEMENT_COUNTERS]


class HealthCheckStats(ctypes.Structure):
    """pgpool-II's POOL_HEALTH_CHECK_STATISTICS: written only by the node's health check process."""

    _fields_ = [
        ("total_count", ctypes.c_uint64),
        ("success_count", ctypes.c_uint64),
        ("fail_count", ctypes.c_uint64),
        ("skip_count", ctypes.c_uint64),
        ("retry_count", ctypes.c_uint64),
        ("max_retry_count", ctypes.c_uint64),
        ("total_health_check_duration", ctypes.c_uint64),  # milliseconds
        ("max_health_check_duration", ctypes.c_int),  # milliseconds
        ("min_health_check_duration", ctypes.c_int),  # milliseconds
        ("last_health_check", ctypes.c_double),  # epoch seconds; 0 = never
        ("last_successful_health_check", ctypes.c_double),
        ("last_skip_health_check", ctypes.c_double),
        ("last_failed_health_check", ctypes.c_double),
        # ServerStatus of the last connection attempt, down nodes included (they count as skipped).
        ("server_status", ctypes.c_int),
    ]


class Request(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("details", ctypes.c_int),
        ("count", ctypes.c_int),
        ("node_ids", ctypes.c_int * MAX_NODE_IDS),
    ]


class RequestInfo(ctypes.Structure):
    """pgpool-II's POOL_REQUEST_INFO plus InRecovery and the PCP wakeup flags."""

    _fields_ = [
        ("request", Request * REQUEST_QUEUE_SIZE),
        ("request_queue_head", ctypes.c_int),
        ("request_queue_tail", ctypes.c_int),
        ("main_node_id", ctypes.c_int),
        ("primary_node_id", ctypes.c_int),
        ("conn_counter", ctypes.c_int),
        ("switching", ctypes.c_bool),
        ("in_recovery", ctypes.c_int),  # InRecovery
        # time.monotonic() when InRecovery was last set: client_idle_limit_in_recovery counts from it.
        ("recovery_started", ctypes.c_double),
        ("pcp_wakeup_request", ctypes.c_int),
        ("pcp_recovery_in_progress", ctypes.c_bool),
        ("pcp_recovery_pid", ctypes.c_int),  # the PCP worker running it, so a dead one can be cleaned up
        ("config_generation", ctypes.c_int),  # bumped by main after each accepted reload
        ("num_backends", ctypes.c_int),
        # A follow child runs follow_primary_command: sr_check pauses, primary search keeps the primary.
        ("follow_primary_ongoing", ctypes.c_bool),
    ]


class ProcessInfo(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_int),
        ("start_time", ctypes.c_double),
        ("connected", ctypes.c_bool),  # has served at least one client
        ("client_connection_count", ctypes.c_int),
        ("status", ctypes.c_int),
        ("need_to_restart", ctypes.c_bool),
        ("current_pool", ctypes.c_int),  # pool slot of the session being served, -1 when none
        ("client_host", ctypes.c_char * 64),
        ("client_port", ctypes.c_char * 8),
        ("statement", ctypes.c_char * 256),
        # When the child began to wait for its next client, after serving one (child_life_time).
        ("wait_for_connect_since", ctypes.c_double),
        # When the session's client last went idle, while a client idle limit is set; 0 otherwise.
        ("client_idle_since", ctypes.c_double),
    ]


class ConnectionInfo(ctypes.Structure):
    _fields_ = [
        ("backend_id", ctypes.c_int),
        ("database", ctypes.c_char * 64),
        ("user", ctypes.c_char * 64),
        ("major", ctypes.c_int),
        ("minor", ctypes.c_int),
        ("pid", ctypes.c_int),  # backend pid (host order; PCP renders it)
        ("key", ctypes.c_uint32),  # cancel key, big-endian int: we speak protocol 3.0 to backends
        # The key the current client was given instead (Session._send_welcome): a cancel is honoured
        # only with it, so one left over from an earlier client of this connection does nothing.
        ("client_key", ctypes.c_uint32),
        ("counter", ctypes.c_int),
        ("create_time", ctypes.c_double),
        ("client_connection_time", ctypes.c_double),
        ("client_disconnection_time", ctypes.c_double),
        ("load_balancing_node", ctypes.c_int),
        ("connected", ctypes.c_bool),  # a client is using this pooled connection now
        ("in_use", ctypes.c_bool),  # the slot holds a live backend connection
    ]


@dataclass(frozen=True)
class NodeRequest:
    kind: RequestKind
    node_ids: tuple[int, ...]
    details: RequestDetail


def _align(n: int) -> int:
    return (n + 15) & ~15


class SharedState:
    """All shared structures; build once in main before forking."""

    def __init__(self, num_children: int, max_pool: int) -> None:
        self.num_children = num_children
        self.max_pool = max_pool
        sizes = [
            ctypes.sizeof(BackendInfo) * MAX_BACKENDS,
            ctypes.sizeof(RequestInfo),
            ctypes.sizeof(ProcessInfo) * num_children,
            ctypes.sizeof(ConnectionInfo) * num_children * max_pool * MAX_BACKENDS,
            ctypes.sizeof(HealthCheckStats) * MAX_BACKENDS,
            ctypes.sizeof(StatementCounters) * num_children * MAX_BACKENDS,
        ]
        total = sum(_align(s) for s in sizes)
        self._mem = mmap.mmap(-1, total)  # MAP_SHARED | MAP_ANONYMOUS
        off = 0
        self.backends = (BackendInfo * MAX_BACKENDS).from_buffer(self._mem, off)
        off += _align(sizes[0])
        self.req = RequestInfo.from_buffer(self._mem, off)
        off += _align(sizes[1])
        self.procs = (ProcessInfo * num_children).from_buffer(self._mem, off)
        off += _align(sizes[2])
        self.conns = (ConnectionInfo * (num_children * max_pool * MAX_BACKENDS)).from_buffer(self._mem, off)
        off += _align(sizes[3])
        self.health_stats = (HealthCheckStats * MAX_BACKENDS).from_buffer(self._mem, off)
        off += _align(sizes[4])
        self.counters = (StatementCounters * (num_children * MAX_BACKENDS)).from_buffer(self._mem, off)
        # The same counters as one array of integers for the relay, which bumps one or two per
        # statement: an index into a memoryview costs a fraction of a ctypes field by name.
        self.counter_cells = memoryview(self._mem)[off : off + sizes[5]].cast("Q")
        # The whole block as an array of each scalar type a cell may have (cell()).
        mem = memoryview(self._mem)
        self._cells: dict[type, memoryview[Any]] = {
            ctypes.c_int: mem.cast("i"), ctypes.c_uint32: mem.cast("I"),
            ctypes.c_double: mem.cast("d"), ctypes.c_bool: mem.cast("?"),
        }
        self._int_cells = self._cells[ctypes.c_int]
        self._base = ctypes.addressof(ctypes.c_char.from_buffer(self._mem))
        # Each node's status and the node count as integer cells: every new session asks which
        # nodes are valid, and indexing ctypes arrays makes an object per node.
        self._status_at = [self.cell(self.backends[n], "status")[1] for n in range(MAX_BACKENDS)]
        self._weight_at = [self.cell(self.backends[n], "weight")[1] for n in range(MAX_BACKENDS)]
        self._num_backends_at = self.cell(self.req, "num_backends")[1]
        self.size = total
        self.req.main_node_id = -1
        self.req.primary_node_id = -1
        self._lockfile = tempfile.TemporaryFile(prefix="pgpool-py-locks-")

    # ------------------------------------------------------------ addressing

    def conn(self, child: int, pool: int, node: int) -> ConnectionInfo:
        return self.conns[(child * self.max_pool + pool) * MAX_BACKENDS + node]

    def pool_rows(self, child: int, child_life_time: int, client_idle_limit: int) -> list[list[str]]:
        """SHOW POOL_POOLS / pcp_proc_info for one child: a row per (pool slot, node), the
        17 fields of pgpool-II's get_pools."""
        p = self.procs[child]
        now = time.time()
        start = process_start_text(p, child_life_time, now)
        status = ChildStatus(p.status).label  # the process's, on every row of it
        rows = []
        for pool in range(self.max_pool):
            for node in range(self.req.num_backends):
                info = self.conn(child, pool, node)
                live = info.in_use
                # pgpool-II counts idle seconds only while a client idle limit is set.
                idle = 0
                if info.connected and p.current_pool == pool and p.client_idle_since:
                    idle = max(0, int(now - p.client_idle_since))
                idle_text = str(idle) if live else "0"
                if live and client_idle_limit > 0 and info.connected:
                    idle_text += f" ({_minutes(max(0, client_idle_limit - idle))} before client disconnected)"
                rows.append([
                    str(p.pid), start, str(p.client_connection_count), str(pool), str(node),
                    info.database.decode(errors="replace") if live else "",
                    info.user.decode(errors="replace") if live else "",
                    show_time(info.create_time) if live else "",
                    show_time(info.client_connection_time) if live else "",
                    show_time(info.client_disconnection_time) if live else "",
                    idle_text,
                    str(info.major) if live else "0", str(info.minor) if live else "0",
                    str(info.counter) if live else "0", str(info.pid) if live else "0",
                    "1" if live and info.connected else "0",
                    status,
                ])
        return rows

    def cell(self, struct: ctypes.Structure, field: str) -> tuple[memoryview[Any], int]:
        """
        A scalar field of a shared structure as (array, index), for a value written often:
        an index into a memoryview costs a fraction of the ctypes field by name (~340
        instructions a write, compiled).
        """
        ctype = next(f[1] for f in type(struct)._fields_ if f[0] == field)
        cells = self._cells[ctype]
        offset = ctypes.addressof(struct) - self._base + getattr(type(struct), field).offset
        return cells, offset // cells.itemsize

    @staticmethod
    def _counters_index(child: int, node: int) -> int:
        """A child's StatementCounters for a node, in ``counters``."""
        return child * MAX_BACKENDS + node

    def counter_base(self, child: int, node: int) -> int:
        """Where a child's counters for a node start in ``counter_cells`` (STATEMENT_COUNTERS order)."""
        return self._counters_index(child, node) * len(STATEMENT_COUNTERS)

    def statement_counts(self, node: int) -> dict[str, int]:
        """The node's counters summed over every child slot (a respawned child carries on)."""
        totals = dict.fromkeys(STATEMENT_COUNTERS, 0)
        for child in range(self.num_children):
            counters = self.counters[self._counters_index(child, node)]
            for name in STATEMENT_COUNTERS:
                totals[name] += getattr(counters, name)
        return totals

    # ------------------------------------------------------------ locks

    @contextlib.contextmanager
    def lock(self, which: LockId) -> Iterator[None]:
        self._acquire(which)
        try:
            yield
        finally:
            self._release(which)

    def _acquire(self, which: int) -> None:
        lockf(self._lockfile.fileno(), LOCK_EX, 1, which)

    def _release(self, which: int) -> None:
        lockf(self._lockfile.fileno(), LOCK_UN, 1, which)

    # ------------------------------------------------------------ connection counter
    # Twice per client (a new connection per transaction is a common load): the lock is taken
    # without lock()'s generator, which cost more than the two system calls.

    def conn_counter_up(self) -> int:
        self._acquire(_CONN_COUNTER_LOCK)
        try:
            self.req.conn_counter += 1
            return int(self.req.conn_counter)
        finally:
            self._release(_CONN_COUNTER_LOCK)

    def conn_counter_down(self) -> None:
        self._acquire(_CONN_COUNTER_LOCK)
        try:
            if self.req.conn_counter > 0:
                self.req.conn_counter -= 1
        finally:
            self._release(_CONN_COUNTER_LOCK)

    # ------------------------------------------------------------ request queue (Req_info)

    def enqueue_request(self, kind: RequestKind, node_ids: tuple[int, ...], details: RequestDetail) -> bool:
        """Put a request in the ring; False when it is full (the caller reports it)."""
        with self.lock(LockId.REQUEST_INFO):
            req = self.req
            if req.request_queue_tail - req.request_queue_head >= REQUEST_QUEUE_SIZE:
                return False
            req.request_queue_tail += 1
            slot = req.request[req.request_queue_tail % REQUEST_QUEUE_SIZE]
            slot.kind = int(kind)
            slot.details = int(details)
            ids = node_ids[:MAX_NODE_IDS]
            slot.count = len(ids)
            for i, node in enumerate(ids):
                slot.node_ids[i] = node
            return True

    def dequeue_request(self) -> NodeRequest | None:
        with self.lock(LockId.REQUEST_INFO):
            req = self.req
            if req.request_queue_head == req.request_queue_tail:
                return None
            req.request_queue_head += 1
            slot = req.request[req.request_queue_head % REQUEST_QUEUE_SIZE]
            return NodeRequest(
                RequestKind(slot.kind), tuple(slot.node_ids[i] for i in range(slot.count)), RequestDetail(slot.details)
            )

    def queue_empty(self) -> bool:
        return bool(self.req.request_queue_head == self.req.request_queue_tail)

    # ------------------------------------------------------------ backend status

    def node_valid(self, node: int) -> bool:
        """pgpool-II's VALID_BACKEND: the node is up or waiting."""
        cells = self._int_cells
        return 0 <= node < cells[self._num_backends_at] and cells[self._status_at[node]] in VALID_STATUSES

    def valid_nodes(self) -> list[int]:
        cells, status_at = self._int_cells, self._status_at
        return [n for n in range(cells[self._num_backends_at]) if cells[status_at[n]] in VALID_STATUSES]

    def weights(self, nodes: list[int]) -> dict[int, float]:
        """The nodes' backend_weight, unnormalized, as main last wrote them (each new session)."""
        cells, weight_at = self._cells[ctypes.c_double], self._weight_at
        return {n: cells[weight_at[n]] for n in nodes}

    def set_backend_status(self, node: int, status: BackendStatus) -> None:
        """Main only."""
        b = self.backends[node]
        if b.status != status:
            b.status = int(status)
            b.status_changed_time = time.time()
