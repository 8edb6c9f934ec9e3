"""
The per-child backend connection cache: ``max_pool`` slots, each a set of connections (one per
node) keyed by (user, database, protocol major) and the sorted startup options, as pgpool-II
keys it.  Every change is mirrored to this child's ConnectionInfo block in shared memory, which
SHOW POOL_POOLS, PCP and cancel routing read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pgpool_py.child.backend import BackendConnection
from pgpool_py.shmem.layout import ConnectionInfo, SharedState
from pgpool_py.stdlib import urandom, wall_time

# pgpool-II never pools these databases.
NEVER_POOLED_DATABASES: Final = frozenset({"template0", "template1", "postgres", "regression"})


@dataclass
class PoolSlot:
    index: int
    user: str = ""
    database: str = ""
    major: int = 3
    minor: int = 0
    startup_key: bytes = b""
    conns: dict[int, BackendConnection] = field(default_factory=dict)
    main_node: int = 0
    load_balance_node: int = 0
    closetime: float = 0.0  # when the last client left (0 while in use)
    # Whether a backend asked for a password when the slot was made: a later client whose
    # password only a backend could check (passthrough; "password" without a pool_passwd
    # entry) may reuse the slot only if none did.
    backend_asked_password: bool = True
    password: str | None = None
    cancel_key: int = 0  # the current client's cancel key (shared memory: client_key)

    @property
    def in_use(self) -> bool:
        return bool(self.conns)

    @property
    def main(self) -> BackendConnection:
        return self.conns[self.main_node]


class SessionCells:
    """
    The fields of a pooled connection's ConnectionInfo that every session writes, at its
    start and end, as shared-memory cells (SharedState.cell): a ctypes field by name costs
    several times as much, and a connection per transaction is a common load.
    """

    def __init__(self, shm: SharedState, info: ConnectionInfo) -> None:
        self.counter = shm.cell(info, "counter")
        self.client_key = shm.cell(info, "client_key")
        self.client_connection_time = shm.cell(info, "client_connection_time")
        self.client_disconnection_time = shm.cell(info, "client_disconnection_time")
        self.connected = shm.cell(info, "connected")


class ConnectionPool:
    def __init__(self, shm: SharedState, child_index: int, max_pool: int) -> None:
        self.shm = shm
        self.child_index = child_index
        self.slots = [PoolSlot(i) for i in range(max_pool)]
        self._infos: dict[tuple[int, int], ConnectionInfo] = {}
        self._cells: dict[tuple[int, int], SessionCells] = {}
        self._current_pool = shm.cell(shm.procs[child_index], "current_pool")
        # Cancel keys, 4 bytes each, read from the kernel a page at a time.  Empty until the
        # child's first session: a buffer filled before the fork would give every child the
        # same keys.
        self._random = b""
        self._random_at = 0

    def _info(self, slot: PoolSlot, node_id: int) -> ConnectionInfo:
        """A connection's block in shared memory; looked up once (each ctypes index makes an object)."""
        key = (slot.index, node_id)
        info = self._infos.get(key)
        if info is None:
            info = self._infos[key] = self.shm.conn(self.child_index, slot.index, node_id)
        return info

    def _session_cells(self, slot: PoolSlot, node_id: int) -> SessionCells:
        key = (slot.index, node_id)
        cells = self._cells.get(key)
        if cells is None:
            cells = self._cells[key] = SessionCells(self.shm, self._info(slot, node_id))
        return cells

    def _cancel_key(self) -> int:
        at = self._random_at
        if at + 4 > len(self._random):
            self._random, at = urandom(4096), 0
        self._random_at = at + 4
        return int.from_bytes(self._random[at : at + 4], "big")

    def find(self, user: str, database: str, major: int, startup_key: bytes) -> PoolSlot | None:
        for slot in self.slots:
            if slot.in_use and slot.user == user and slot.database == database and slot.major == major:
                if slot.startup_key == startup_key:
                    return slot
                # Same user/db but other options: pgpool-II discards it and connects afresh.
                self.discard(slot)
                return None
        return None

    def allocate(self) -> PoolSlot:
        """A free slot, evicting the one idle the longest when all are taken."""
        for slot in self.slots:
            if not slot.in_use:
                return slot
        victim = min(self.slots, key=lambda s: s.closetime)
        self.discard(victim)
        return victim

    def register(self, slot: PoolSlot) -> None:
        """Publish a freshly connected slot to shared memory."""
        now = wall_time()
        for node_id, conn in slot.conns.items():
            info = self._info(slot, node_id)
            info.backend_id = node_id
            info.database = slot.database.encode()[:63]
            info.user = slot.user.encode()[:63]
            info.major, info.minor = slot.major, slot.minor
            info.pid = conn.pid
            info.key = int.from_bytes(conn.key, "big")
            info.counter = 0
            info.create_time = now
            info.load_balancing_node = slot.load_balance_node
            info.in_use = True

    def mark_connected(self, slot: PoolSlot, reused: bool) -> None:
        now = wall_time()
        slot.closetime = 0.0
        slot.cancel_key = key = self._cancel_key()
        cells, index = self._current_pool
        cells[index] = slot.index
        for node_id in slot.conns:
            info = self._session_cells(slot, node_id)
            if reused:
                cells, index = info.counter
                cells[index] += 1
            cells, index = info.client_connection_time
            cells[index] = now
            cells, index = info.client_key
            cells[index] = key
            cells, index = info.connected
            cells[index] = True

    def mark_released(self, slot: PoolSlot) -> None:
        now = wall_time()
        slot.closetime = now
        cells, index = self._current_pool
        cells[index] = -1
        for node_id in slot.conns:
            info = self._session_cells(slot, node_id)
            cells, index = info.client_disconnection_time
            cells[index] = now
            cells, index = info.connected
            cells[index] = False

    def discard(self, slot: PoolSlot, terminate: bool = True) -> None:
        for node_id, conn in slot.conns.items():
            conn.close(terminate)
            info = self._info(slot, node_id)
            info.in_use = False
            info.connected = False
            info.pid = 0
        slot.conns = {}
        slot.closetime = 0.0
        cells, index = self._current_pool
        if cells[index] == slot.index:
            cells[index] = -1

    def forget_node(self, slot: PoolSlot, node_id: int) -> None:
        """Drop one node's (dead) connection from a slot; the rest of the slot lives on."""
        conn = slot.conns.pop(node_id, None)
        if conn is not None:
            conn.close(terminate=False)
        info = self._info(slot, node_id)
        info.in_use = info.connected = False
        info.pid = 0

    def discard_all(self) -> None:
        for slot in self.slots:
            if slot.in_use:
                self.discard(slot)

    def expire(self, connection_life_time: float, now: float | None = None) -> float | None:
        """
        Close pooled connections idle longer than ``connection_life_time`` (0 = never).
        Returns seconds until the next expiry, for the accept loop's timeout.
        """
        if connection_life_time <= 0:
            return None
        now = wall_time() if now is None else now
        nearest: float | None = None
        for slot in self.slots:
            if slot.in_use and slot.closetime:
                left = slot.closetime + connection_life_time - now
                if left <= 0:
                    self.discard(slot)
                elif nearest is None or left < nearest:
                    nearest = left
        return nearest

    def close_idle(self) -> None:
        """SIGUSR1: close every pooled connection no client is using."""
        for slot in self.slots:
            if slot.in_use and slot.closetime:
                self.discard(slot)

