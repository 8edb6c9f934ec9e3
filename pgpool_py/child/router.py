"""
The relay for sessions with several backends (streaming and native replication modes).

Client messages are cut into *batches*: one Query, or the extended-protocol messages up to a
Sync or Flush.  Each batch is classified (``routing.classify``) and sent to a set of nodes
with one of them chosen to answer the client:

- a load-balanceable read goes to the session's load-balance node (or the primary, per
  ``disable_load_balance_on_write`` and the transaction's state);
- a write goes to the primary (streaming) or to every node (native replication);
- BEGIN/COMMIT/SET and friends go to every node of the session, so their states stay alike.

The answering node's replies are forwarded as they arrive; the others' are read and dropped
(native replication compares their command tags and detaches a node that disagrees).  A batch
for other nodes than the ones still answering waits, so replies never interleave.

Named prepared statements remember their Parse: when a later Bind needs one on a node where it
was not prepared (a SELECT prepared on a standby, bound after a write in the transaction), the
Parse is sent there first and its ParseComplete swallowed — pgpool-II's "re-parse on primary".
"""

from __future__ import annotations

import _socket
import logging
import random
import re
import select
import struct
import zlib
from collections import deque
from collections.abc import Callable, Set
from typing import TYPE_CHECKING, Final

from pgpool_py import log as pglog
from pgpool_py.child.commands import PoolStatements
from pgpool_py.errors import ProtocolError, SessionError
from pgpool_py.protocol import messages as m
from pgpool_py.protocol.messages import bind_names, target_name
from pgpool_py.protocol.scanner import ReplyScanner
from pgpool_py.protocol.stream import PeerClosed
from pgpool_py.requests import register_node_operation_request
from pgpool_py.routing import timestamp
from pgpool_py.routing.classify import DEST_RANK, Dest, StatementKind, Verdict, addressed_to_pgpool_bytes
from pgpool_py.shmem.layout import STATEMENT_COUNTERS, ChildStatus, RequestDetail, RequestKind
from pgpool_py.stdlib import EPOLLIN, monotonic
from pgpool_py.tls import reader, writer

if TYPE_CHECKING:
    from pgpool_py.child.pool import PoolSlot
    from pgpool_py.config.loader import Config
    from pgpool_py.child.session import Session

log = logging.getLogger(__name__)

# epoll.poll allocates room for maxevents results on each call, by default 1023 of them
# (12 kB from malloc); level-triggered, ready fds beyond these come with the next call.
EPOLL_MAX_EVENTS: Final = 8

RECV_SIZE: Final = 65536
TERMINATE_DRAIN_SECONDS: Final = 10.0  # how long replies due at Terminate are still relayed
_Q: Final = ord("Q")
_X: Final = ord("X")
_S: Final = ord("S")
_H: Final = ord("H")
_P: Final = ord("P")
_B: Final = ord("B")
_D: Final = ord("D")
_E: Final = ord("E")
_C: Final = ord("C")
_F: Final = ord("F")
_DATA_ROW: Final = ord("D")
_TX_IDLE: Final = m.TX_IDLE
_TX_FAILED: Final = m.TX_FAILED
_IDLE: Final = ChildStatus.IDLE
_IDLE_IN_TRANS: Final = ChildStatus.IDLE_IN_TRANS
_COMMAND_EXECUTE: Final = ChildStatus.COMMAND_EXECUTE
_COPY_MESSAGES: Final = frozenset(ord(c) for c in "dcf")
_EXTENDED: Final = frozenset(ord(c) for c in "PBDEC")
_PARSE_COMPLETE: Final = b"1\x00\x00\x00\x04"
_CLOSE_COMPLETE: Final = b"3\x00\x00\x00\x04"
# Native replication: the copies of clock-reading statements a batch binds (_clock_batch).
_CLOCK_STATEMENT: Final = "pgpool_py_clock_{}"
# What a standby gets for a BEGIN it would refuse (READ WRITE, SERIALIZABLE).
_PLAIN_BEGIN: Final = m.query("BEGIN")
# Puts a node's transaction in the failed state; PostgreSQL's log says why.
_FAIL_TRANSACTION: Final = m.query(
    "DO $pgpool$BEGIN RAISE EXCEPTION 'pgpool-py: the transaction failed on another node'; END$pgpool$")
# PostgreSQL's error for a prepared statement whose result columns changed: pgjdbc and asyncpg
# know it by its routine, and prepare the statement again (_replay_changes_shape).
_PLAN_CHANGED: Final = m.frame(b"E", b"".join(code + text + b"\0" for code, text in (
    (b"S", b"ERROR"), (b"V", b"ERROR"), (b"C", b"0A000"), (b"M", b"cached plan must not change result type"),
    (b"F", b"plancache.c"), (b"R", b"RevalidateCachedQuery"))) + b"\0")
_ROW_DESCRIPTION: Final = ord("T")
_NO_DATA: Final = ord("n")
# disable_load_balance_on_write values under which a session's earlier write keeps a
# transaction's reads on the primary.
_WRITES_KEEP_READS: Final = frozenset(("always", "trans_transaction"))
_NO_NODES: Final[frozenset[int]] = frozenset()
_PARSES_KEPT: Final = 256  # Router.parses: a session's distinct Parse messages remembered, at most
_FIRST_NORMAL_OID: Final = 16384  # PostgreSQL's FirstNormalObjectId: oids below are built in, the same everywhere
# lo_creat and lo_create, by their oids in pg_proc (fixed for built-in functions).
_LO_CREAT: Final = struct.pack("!I", 957)
_LO_CREATE: Final = struct.pack("!I", 715)
_NEXT_LARGE_OBJECT: Final = "SELECT coalesce(max(oid)::int8, 0) + 1 FROM pg_catalog.pg_largeobject_metadata"
# insert_lock: an advisory lock per table, the first key saying it is ours ('pgpy').
_INSERT_LOCK_CLASS: Final = 0x70677079
# Whether a table takes ids from a sequence (serial or identity): what insert_lock protects.
_HAS_SERIAL: Final = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d"
    " ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = pg_catalog.to_regclass({})"
    " AND a.attnum > 0 AND NOT a.attisdropped"
    " AND (a.attidentity <> '' OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'))"
)
_DEST_BY_RANK: Final = {rank: dest for dest, rank in DEST_RANK.items()}
_EITHER_RANK: Final = DEST_RANK[Dest.EITHER]
_PRIMARY_RANK: Final = DEST_RANK[Dest.PRIMARY]
_POOL_COMMAND: Final = StatementKind.POOL_COMMAND
# The commonest statements by their first keyword.  Where only the primary can get them, this
# is all the relay needs to know of them (the statistics counter, and that a write makes the
# transaction a writing one), and it costs less than classifying the text.
_BY_KEYWORD: Final = {
    b"SELECT": Verdict(StatementKind.SELECT, Dest.PRIMARY, is_read=True, is_write=False),
    b"INSERT": Verdict(StatementKind.INSERT, Dest.PRIMARY),
    b"UPDATE": Verdict(StatementKind.UPDATE, Dest.PRIMARY),
    b"DELETE": Verdict(StatementKind.DELETE, Dest.PRIMARY),
}
_SELECT: Final = _BY_KEYWORD[b"SELECT"]
_COUNTER_INDEX: Final = {name: i for i, name in enumerate(STATEMENT_COUNTERS)}
# Router._nodes_changed: (child index, the session's nodes, primary) -> (to_node, to_all,
# counter bases), shared by the child's sessions and never changed.
_SESSION_NODES: Final[dict[tuple[int, tuple[int, ...], int], tuple[dict[int, Target], Target, dict[int, int]]]] = {}


# Classes made for every statement, batch or session are plain classes with their own
# __init__, not dataclasses: compiled by mypyc, a dataclass keeps the interpreted __init__ the
# dataclass module writes, a few thousand instructions per object.


class Prepared:
    """A named (or the unnamed) prepared statement of this session."""

    def __init__(self, parse: bytes, verdict: Verdict, nodes: frozenset[int]) -> None:
        self.parse = parse  # the client's Parse message, replayed on another node when needed
        self.verdict = verdict
        self.nodes = nodes  # a Target's node_set, shared: replaced, never changed
        # Native replication: the text with timestamp.MARKER where it reads the clock; None if
        # it does not, unset until a Bind of it needs to know (_clock_batch).
        self.clock_template: str | None = None
        self.clock_known = False


class NodeChannel:
    """A session's connection to one node, as the relay loop sees it."""

    def __init__(self, node_id: int, sock: _socket.socket, scanner: ReplyScanner) -> None:
        self.node_id = node_id
        self.fd = sock.fileno()
        self.sock = sock  # a TLS connection's SSLSocket too
        self.recv: Callable[[int], bytes] = reader(sock)  # drains what TLS decrypted already
        self.send: Callable[[bytes | bytearray | memoryview], None] = writer(sock)
        self.scanner = scanner
        self.pending = 0  # ReadyForQuery still due from this node
        # ParseCompletes and CloseCompletes of our Parses and Closes sent ahead of a batch, to swallow.
        self.drop_completes = 0
        self.drop_ready = 0  # ReadyForQuery of our own Syncs to swallow
        self.tail = b""  # held back while a ReadyForQuery of ours may be at the end
        # Replies to queries of ours to drop, through their ReadyForQuery, in order: what each
        # does, for the log should it fail ("" where it fails on purpose: _fail_elsewhere).
        self.swallow: deque[str] = deque()
        self.swallowed = b""  # the start of those replies, while incomplete
        self.used = False  # the session sent this node something (it needs the reset queries)
        self.collect: bytearray | None = None  # native replication: the batch's replies, to compare


# Earlier Parses to send again, each to a node where the statement is not prepared yet.
Replay = list[tuple[Prepared, int]]


class BatchScan:
    """What one pass over an extended batch found (``Router._scan_batch``)."""

    def __init__(self) -> None:
        self.dest_rank = 0  # where the batch may go: the most demanding of its statements
        self.verdict: Verdict | None = None  # the verdict that demands it
        # Parse (the Prepared) and Close of a statement (None), by name, in the batch's order.
        self.statements: list[tuple[str, Prepared | None]] = []
        self.portals: list[tuple[str, bool]] = []  # Bind (True), Close (False)
        self.needed: list[str] = []  # statements prepared by earlier batches
        self.pinned: frozenset[int] | None = None  # the nodes of an earlier portal this batch executes
        self.binds = 0
        self.bound: list[Verdict] = []  # the verdicts of the statements bound, in order
        self.bound_statement = ""  # the last Bind's statement
        # A BEGIN bound with other statements (pgjdbc's first batch of a transaction): it goes
        # where they go, and the other nodes get it later (Router.deferred_begin).
        self.begin: Prepared | None = None
        self.executes = False  # False: the batch only prepares, binds or describes
        self.ours = False  # a message is for a statement or portal of pgpool's own (PoolStatements)
        self.closes: list[tuple[Prepared, bytes]] = []  # earlier statements, their Close


class Target:
    """Where messages go, and the node whose replies the client sees.  Never changed once
    made; equal by value.  A plain class (see above), as one may be made per statement."""

    def __init__(self, nodes: tuple[int, ...], answer: int) -> None:
        self.nodes = nodes
        self.answer = answer
        self._node_set: frozenset[int] | None = None

    @property
    def node_set(self) -> frozenset[int]:
        """The nodes as a set, made once: the statements and portals of every extended batch
        sent here share it (one set less per Parse and per Bind)."""
        if self._node_set is None:
            self._node_set = frozenset(self.nodes)
        return self._node_set

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and self.nodes == other.nodes and self.answer == other.answer

    def __hash__(self) -> int:
        return hash((self.nodes, self.answer))

    def __repr__(self) -> str:
        return f"Target(nodes={self.nodes!r}, answer={self.answer})"


class Router:
    def __init__(self, session: Session, slot: PoolSlot) -> None:
        self.session = session
        self.child = session.child
        self.cfg = session.cfg
        self.slot = slot
        self.native = self.cfg.clustering_mode != "streaming_replication"
        shm = self.child.shm
        primary = shm.req.primary_node_id if not self.native else slot.main_node
        self.primary = primary if primary in slot.conns else slot.main_node
        self.lb_node = slot.load_balance_node
        self.channels = {
            node: NodeChannel(node, conn.stream.sock, ReplyScanner(conn.tx_status))
            for node, conn in slot.conns.items()
        }
        self.by_fd = {ch.fd: ch for ch in self.channels.values()}
        self._nodes_changed()
        self.statements: dict[str, Prepared] = {}
        # The session's Parse messages, whole, with their statement's name and verdict: most
        # drivers parse the same few again and again (the unnamed statement above all).  Only
        # while the session has no temporary table, which could change a verdict.
        self.parses: dict[bytes, tuple[str, Verdict]] = {}
        self.portals: dict[str, frozenset[int]] = {}
        self.pool = PoolStatements(self.child.commands)  # pgpool's commands as prepared statements
        self.sql_prepared: dict[str, int] = {}  # SQL-level PREPARE name -> node
        self.in_tx = slot.main.tx_status != m.TX_IDLE
        self.tx_failed = False
        self.tx_written = False
        self.tx_serializable = False
        self.session_written = False  # for disable_load_balance_on_write = always / trans_transaction
        # The session's transactions are SERIALIZABLE by default: every read stays on the primary,
        # as in pgpool-II (a standby cannot run them so).
        self.session_serializable = False
        self.temp_tables: set[str] = set()
        # check_temp_table = catalog: a DO, CALL or function may have made temporary tables
        # unseen; the primary is asked before the next statement that could read elsewhere.
        self.temp_unknown = False
        self.in_flight: Target | None = None
        self.unsent = 0  # extended messages the client left without Sync when it said Terminate
        self.reply_held = bytearray()  # native replication: the answer, until every node has answered
        # What the primary sent unasked (a notification) while another node answered: it
        # reaches the client when that answer is complete, not in the middle of it.
        self.unsolicited = bytearray()
        self.open_target: Target | None = None  # extended batch sent up to a Flush, not yet Synced
        # _pool_batch sent the messages before pgpool's own with a Sync of ours; if they fail,
        # the client's cycle is skipped up to its Sync (skip_to_sync), as PostgreSQL does.
        self.prefix_pending = False
        self.skip_to_sync = False
        # A BEGIN goes to the primary at once and to another node only when the transaction
        # first sends it something (pgpool-II sends it to every node): most transactions
        # that write never read from a standby.  begun: the nodes that have it.
        self.deferred_begin: bytes | None = None
        self.begun: set[int] = set()
        self.serial_tables: dict[tuple[str, ...], bool] = {}  # insert_lock: does the table need it
        self.insert_locked: tuple[tuple[int, ...], int] | None = None  # (nodes, key) while held
        self.unlocks_due: list[tuple[int, bytes]] = []  # releases waiting for a failed transaction to end
        self.classifier = self.child.get_classifier()
        self.reconfigure(self.cfg)
        self.child.session_temp_tables = self.temp_tables
        self.child.volatility_lookup = self._function_volatility

    def reconfigure(self, cfg: Config) -> None:
        """A new configuration for the session (PGPOOL SET/RESET)."""
        self.cfg = cfg
        # The settings read for every statement, as attributes of the router: a Config holds
        # hundreds, and under load each lookup in it is a cache miss.
        self.statement_level_load_balance = cfg.statement_level_load_balance
        self.disable_load_balance_on_write = cfg.disable_load_balance_on_write
        self.log_per_node_statement = cfg.log_per_node_statement
        self.insert_lock = self.native and cfg.insert_lock
        self.log_frontend = cfg.log_statement or cfg.log_client_messages
        self.catalog_temp = cfg.check_temp_table == "catalog"
        self._balancing_changed()

    def _balancing_changed(self) -> None:
        self.balancing = self.cfg.load_balance_mode and self.lb_node in self.channels
        # No statement of this session can go to another node than the primary: the session
        # reads from the primary (its load-balance node, or load balancing off) and the node
        # is not chosen again per statement.  Streaming replication only.
        self.primary_only = not self.native and (
            not self.balancing or self.session_serializable
            or (self.lb_node == self.primary and not self.statement_level_load_balance))

    def _nodes_changed(self) -> None:
        """Targets and statement counters for the session's nodes, made once rather than per query."""
        self.everyone = everyone = tuple(sorted(self.channels))  # every node of this session
        self.lazy_begin = not self.native and len(everyone) > 1
        shm, index = self.child.shm, self.child.index
        self.counter_cells = shm.counter_cells
        # Most sessions of a child have the same nodes: what they need is made for the first
        # and shared (nothing changes it), a tenth of a new connection's set-up.
        key = (index, everyone, self.primary)
        made = _SESSION_NODES.get(key)
        if made is None:
            to_node = {node: Target((node,), node) for node in everyone}
            bases = {node: shm.counter_base(index, node) for node in everyone}
            made = _SESSION_NODES[key] = (to_node, Target(everyone, self.primary), bases)
        self.to_node, self.to_all, self.counter_bases = made

    # ------------------------------------------------------------------ routing decisions

    def _function_volatility(self, name: str) -> str | None:
        """pg_proc.provolatile of ``name`` ('v', 's', 'i'; None: no such function)."""
        if self.in_flight is not None:
            # The primary connection is busy: known already, or counted as writing this time.
            return self.child.function_volatility(None, self.slot.database, name)
        self._drain_ours(self.channels[self.primary])
        return self.child.function_volatility(self.slot.conns[self.primary], self.slot.database, name)

    def _refresh_temp_tables(self) -> None:
        """check_temp_table = catalog: the session's temporary tables, from the primary."""
        reply, ok = self._exchange(self.primary, "SELECT relname FROM pg_catalog.pg_class"
                                                 " WHERE relnamespace = pg_catalog.pg_my_temp_schema()")
        if ok:
            self.temp_tables.clear()  # the classifier holds this very set
            self.temp_tables.update(str(row[0]) for row in _rows(reply))
            self.temp_unknown = False

    def _reads_kept_on_primary(self) -> bool:
        """The transaction's state or the session's writes keep reads on the primary
        (a failed or SERIALIZABLE transaction; disable_load_balance_on_write)."""
        if self.temp_unknown:
            return True
        mode = self.disable_load_balance_on_write
        if not self.in_tx:
            return self.session_written and mode == "always"
        if self.tx_failed or self.tx_serializable:
            return True
        return mode != "off" and (self.tx_written or (self.session_written and mode in _WRITES_KEEP_READS))

    def _read_target(self, verdict: Verdict | None) -> int:
        # primary_only: a SERIALIZABLE session default among its reasons, which nothing else here sees.
        if self.primary_only or not self.balancing or self._reads_kept_on_primary():
            return self.primary
        if self.statement_level_load_balance:
            return self.child.choose_load_balance_node(self.slot, self.session)
        return self.lb_node

    def _target(self, dest: Dest, verdict: Verdict | None) -> Target:
        if dest is Dest.EITHER and (not self.native or verdict is None or verdict.is_read):
            return self.to_node[self._read_target(verdict)]
        if dest is Dest.PRIMARY and not self.native:
            return self.to_node[self.primary]
        return self.to_all

    def _note_verdict(self, verdict: Verdict, target: Target) -> None:
        """Predict the transaction state a batch leaves (ReadyForQuery corrects it)."""
        if verdict.changes_session:
            if verdict.tx_start:
                self.in_tx, self.tx_written, self.tx_failed = True, False, False
                self.tx_serializable = verdict.serializable
                if (self.lazy_begin and self.deferred_begin is None and not verdict.tx_end
                        and len(target.nodes) < len(self.everyone)):
                    # BEGIN came with other statements ("BEGIN; INSERT ...", pgjdbc's batch)
                    # and went where they did: the other nodes get a BEGIN of theirs before
                    # the transaction's first statement there, as after a lone BEGIN.
                    self.deferred_begin = _PLAIN_BEGIN
                    self.begun = set(target.nodes)
            # A write, alone or in a string with BEGIN or COMMIT ("BEGIN; INSERT ...").
            if verdict.marks_write:
                if self.in_tx:
                    self.tx_written = True
                self.session_written = True
            if verdict.tx_end:
                self.in_tx = self.tx_written = self.tx_failed = self.tx_serializable = False
            if verdict.other_effects:
                self._note_other_effects(verdict)
        field = verdict.stats_field  # SHOW POOL_NODES / POOL_BACKEND_STATS
        if field is not None:
            index = _COUNTER_INDEX[field]
            cells, bases = self.counter_cells, self.counter_bases
            for node in target.nodes:
                cells[bases[node] + index] += 1

    def _note_other_effects(self, verdict: Verdict) -> None:
        """What a statement changes besides the transaction's start, end and writes."""
        if verdict.kind is StatementKind.DDL and self.native:
            self.child.table_clocks.clear()  # a column default may change (routing.timestamp)
        if verdict.serializable and self.in_tx:  # SET TRANSACTION ISOLATION LEVEL SERIALIZABLE
            self.tx_serializable = True
        if verdict.session_serializable is not None and verdict.session_serializable != self.session_serializable:
            self.session_serializable = verdict.session_serializable
            self._balancing_changed()
        if verdict.opaque and self.catalog_temp and not self.primary_only:
            self.temp_unknown = True
        if verdict.created_temp_tables:
            self.temp_tables.update(verdict.created_temp_tables)
        for name in verdict.dropped_tables:
            self.temp_tables.discard(name.removeprefix("pg_temp."))  # DROP TABLE pg_temp.t drops t

    def _route_query(self, text: bytes) -> tuple[Target, Verdict]:
        """Where a simple Query goes; ``text`` is its SQL as the client sent it."""
        if text[6:7].isspace() and (self.primary_only or self._reads_kept_on_primary()):
            # Only the primary can get it: in such a session, or while reads are kept there.
            known = _BY_KEYWORD.get(text[:6].upper())
            # SELECT INTO TEMP makes a temporary table, which later reads must follow.
            if known is not None and (known is not _SELECT or b"into" not in text.lower()):
                return self.to_node[self.primary], known
        verdict = self.classifier.classify_bytes(text)
        if verdict.sql_prepared:
            # SQL-level EXECUTE/DEALLOCATE follow their PREPARE (regression 121).
            name = verdict.prepared_name
            if verdict.kind is StatementKind.PREPARE:
                target = self._target(verdict.dest, verdict)
                if name is not None:
                    self.sql_prepared[name] = target.answer
                return target, verdict
            node = self.sql_prepared.get(name or "", self.primary)
            if verdict.kind is StatementKind.DEALLOCATE:
                if name is None:
                    self.sql_prepared.clear()
                    self.statements.clear()
                    self.pool.statements.clear()
                    return self.to_all, verdict
                if self.sql_prepared.pop(name, None) is None and name in self.statements:
                    # A statement of the protocol's Parse (psycopg with libpq before 17 and
                    # Ruby's pg free theirs so): where it was prepared, as in pgpool-II.
                    return self._target_of(self.statements.pop(name).nodes or {self.primary}), verdict
            return Target((node,), node), verdict
        return self._target(verdict.dest, verdict), verdict

    def _scan_batch(self, buf: bytes | bytearray, batch: list[tuple[int, int, int]]) -> BatchScan:
        """One pass over an extended batch (messages ``buf[start:end]``): what routing and the
        bookkeeping after sending need, without copying any message but the Parses."""
        scan = BatchScan()
        dest_rank = _EITHER_RANK
        verdict: Verdict | None = None  # the batch's most demanding verdict (the later one on a tie)
        verdict_rank = -1
        pending: dict[str, Prepared] = {}  # the batch's own statements, by name
        bound: set[str] = set()  # portals this batch binds: they follow the batch, not an earlier Bind
        skipped_begin: Verdict | None = None  # a BEGIN's rank, left out while other statements decide
        pool = self.pool
        ours_named = bool(pool.statements or pool.portals)
        for typ, start, end in batch:
            if typ == _P:
                name, prepared = self._prepared(bytes(buf[start:end]))
                v = prepared.verdict
                if v.kind is _POOL_COMMAND:
                    scan.ours = True
                pending[name] = prepared
                scan.statements.append((name, prepared))
                if v.kind is StatementKind.TX_BEGIN and self.lazy_begin and not v.begin_default_on_standby:
                    skipped_begin = v
                    continue
            elif typ == _B:
                portal, stmt = bind_names(buf, start, end)
                bound.add(portal)
                scan.portals.append((portal, True))
                scan.binds += 1
                scan.bound_statement = stmt
                found = pending.get(stmt)
                if found is None:
                    found = self.statements.get(stmt)
                    if found is None:
                        if stmt in pool.statements:
                            scan.ours = True
                        dest_rank = _PRIMARY_RANK
                        continue
                    scan.needed.append(stmt)
                v = found.verdict
                scan.bound.append(v)
                if (v.kind is StatementKind.TX_BEGIN and self.lazy_begin and not v.begin_default_on_standby
                        and scan.begin is None):
                    scan.begin, skipped_begin = found, v  # no reason to reach every node
                    continue
            else:
                if ours_named and typ != _S and typ != _H:
                    kind, name = target_name(buf, start, end, typ)
                    if (name in pool.portals and name not in bound) if kind == "P" else \
                            (name in pool.statements and name not in pending):
                        scan.ours = True
                if typ == _C:
                    kind, name = target_name(buf, start, end, typ)
                    if kind == "S":
                        pending.pop(name, None)
                        scan.statements.append((name, None))
                        if name in self.statements:
                            scan.closes.append((self.statements[name], bytes(buf[start:end])))
                    else:
                        scan.portals.append((name, False))
                elif typ == _E or typ == _D:
                    if typ == _E:
                        scan.executes = True
                    # Of a portal bound earlier, or (Describe) a statement prepared earlier?
                    if self.portals or (typ == _D and self.statements and buf[start + 5 : start + 6] == b"S"):
                        kind, name = target_name(buf, start, end, typ)
                        if kind == "P" and name in self.portals and name not in bound:
                            scan.pinned = self.portals[name]
                        elif kind == "S" and name not in pending and name in self.statements:
                            scan.needed.append(name)
                continue  # Sync, Flush
            rank = v.dest_rank
            if rank >= verdict_rank:
                verdict, verdict_rank = v, rank
            if rank > dest_rank:
                dest_rank = rank
        if skipped_begin is not None and scan.binds == (1 if scan.begin is not None else 0):
            # Nothing but the BEGIN runs (or is prepared): it goes everywhere, as before.
            if skipped_begin.dest_rank >= verdict_rank:
                verdict = skipped_begin
            dest_rank = max(dest_rank, skipped_begin.dest_rank)
        scan.dest_rank, scan.verdict = dest_rank, verdict
        return scan

    def _batch_target(self, scan: BatchScan) -> Target:
        """Where a batch goes, an extended cycle left open by Flush aside."""
        if scan.pinned is not None:
            return self._target_of(scan.pinned)
        return self._target(_DEST_BY_RANK[scan.dest_rank], scan.verdict)

    def _target_of(self, nodes: Set[int]) -> Target:
        """Some nodes (those a portal, a statement or BEGIN reached), answered by the primary
        if it is one of them, else by the first."""
        if len(nodes) == 1:
            # The session's target for that node (the end of most transactions: BEGIN went to
            # the primary alone), not a new one. Never to_all: callers tell it by identity.
            for node in nodes:
                shared = self.to_node.get(node)
                if shared is not None:
                    return shared
        ordered = tuple(sorted(nodes))
        return Target(ordered, self.primary if self.primary in nodes else ordered[0])

    def _replay(self, scan: BatchScan, target: Target) -> Replay:
        """The earlier Parses the batch needs on the target's nodes where they were not sent."""
        replay: Replay = []
        for stmt in dict.fromkeys(scan.needed) if scan.needed else ():
            info = self.statements[stmt]
            replay.extend((info, node) for node in target.nodes if node not in info.nodes)
        return replay

    def _prepared(self, parse: bytes) -> tuple[str, Prepared]:
        """The statement a Parse message prepares, by name, not yet on any node."""
        known = self.parses.get(parse) if not self.temp_tables else None
        if known is not None:
            return known[0], Prepared(parse, known[1], _NO_NODES)
        raw_name, text = m.parse_parse_bytes(parse)
        name = raw_name.decode(errors="replace") if raw_name else ""
        verdict = self.classifier.classify_bytes(text)
        if not verdict.uses_temp_table and not self.classifier.guessed:
            if len(self.parses) >= _PARSES_KEPT:
                self.parses.clear()
            self.parses[parse] = (name, verdict)
        return name, Prepared(parse, verdict, _NO_NODES)

    # ------------------------------------------------------------------ sending

    def _send(self, target: Target, payload: bytes, expect_ready: bool, replay: Replay | None = None) -> None:
        for node in target.nodes:
            ch = self.channels[node]
            data = payload
            if replay and (parses := [info.parse for info, at in replay if at == node]):
                data = b"".join(parses) + payload
                if node == target.answer:
                    ch.drop_completes += len(parses)
            if self.deferred_begin is not None and node not in self.begun:
                ch.swallow.append("begin the transaction")
                if self.tx_failed:
                    # It failed where it began: here too, so that what follows fails alike.
                    data = self.deferred_begin + _FAIL_TRANSACTION + data
                    ch.swallow.append("")
                else:
                    data = self.deferred_begin + data
                self.begun.add(node)
                if self.log_per_node_statement:
                    log.info("DB node id: %d backend pid: %d statement: %s", node, self.slot.conns[node].pid,
                             _describe(self.deferred_begin))
            try:  # _write, inline: this runs for every statement
                ch.send(data)
            except OSError:
                raise self.session._backend_lost(self.slot.conns[node]) from None
            ch.used = True
            if expect_ready:
                ch.pending += 1
            if self.native and len(target.nodes) > 1 and ch.collect is None:
                ch.collect = bytearray()
        if self.log_per_node_statement:
            for node in target.nodes:
                log.info("DB node id: %d backend pid: %d statement: %s", node, self.slot.conns[node].pid,
                         _describe(payload))
        if self.in_flight is None:
            self.in_flight = target
        else:
            self._add_in_flight(target)

    def _write(self, node: int, data: bytes) -> None:
        try:
            self.channels[node].send(data)
        except OSError:
            raise self.session._backend_lost(self.slot.conns[node]) from None

    def _send_own_sync(self, node: int, messages: bytes = b"") -> None:
        """Messages of ours, if any, and a Sync of ours to a node; its ReadyForQuery is due there."""
        self._write(node, messages + m.SYNC)
        self.channels[node].pending += 1

    def _add_in_flight(self, target: Target) -> None:
        current = self.in_flight
        if current is None:
            self.in_flight = target
        else:
            self.in_flight = Target(tuple(sorted(set(current.nodes) | set(target.nodes))), current.answer)

    def _can_send(self, target: Target) -> bool:
        """
        Replies reach the client only from the answering node, in order: another batch may go
        out while earlier ones are answered as long as the same node answers it.  Otherwise it
        waits; an extended cycle left open by a Flush is closed first with a Sync of our own
        (its ReadyForQuery is not forwarded).
        """
        if self.in_flight is None:
            return True
        if self.native:
            # Results are compared per node over everything in flight: only batches for the
            # very same nodes may overlap, or one node's extra replies look like a divergence.
            if self.in_flight == target:
                return True
        elif self.in_flight.answer == target.answer:
            return True
        self._end_open_cycle()
        return False

    def _end_open_cycle(self) -> None:
        """Before waiting for what is in flight to complete: a cycle left open by Flush never
        completes by itself, so it gets a Sync of ours (its ReadyForQuery is not forwarded)."""
        if self.open_target is not None:
            self._close_open_cycle()

    def _close_open_cycle(self) -> None:
        target = self.open_target
        assert target is not None
        for node in target.nodes:
            self._send_own_sync(node)
        self.channels[target.answer].drop_ready += 1
        self.open_target = None

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        # epoll: unlike poll(), the kernel keeps the interest list between waits, and the
        # child's keeps the backends' sockets between sessions: only the client is added.
        child = self.child
        poller = child.relay_poller()
        for ch in self.channels.values():
            child.relay_watch(ch.fd, ch.sock)
        cfd = self.session.sock.fileno()
        poller.register(cfd, EPOLLIN)
        try:
            self._run(poller, cfd)
        finally:
            try:
                poller.unregister(cfd)
            except OSError:
                pass  # the client's socket is closed already, which took it out

    def _run(self, poller: select.epoll, cfd: int) -> None:
        session = self.session
        child = self.child
        csock = session.sock
        wakeup_fd = child.sigq.wakeup_fd
        cbuf = bytearray(session.client.buf)
        session.client.buf.clear()
        held = False
        idle_since = monotonic()
        send_c = writer(csock)
        recv_c = reader(csock)
        by_fd = self.by_fd  # the same dict for the session (_node_lost deletes from it)
        wait = poller.poll  # bound once: compiled, poller.poll(...) looks the method up per call

        terminate_by: float | None = None  # Terminate seen: finish what is in flight first
        chunk = b""  # what the client sent while nothing was buffered: routed without a copy
        while True:
            if (cbuf or chunk) and not held and terminate_by is None:
                held, cut = self._process_client(chunk or cbuf, send_c)
                if self.log_frontend:  # what was handled, once (a held batch is read again)
                    buf = chunk or cbuf
                    pglog.log_frontend(self.cfg, buf, m.split_messages(buf[:cut] if cut >= 0 else buf)[0])
                if cut < 0:
                    # Replies still due are relayed (and, in native replication, compared)
                    # before the session ends, within a bound.
                    if not self._pending():
                        return self._terminated()
                    terminate_by = monotonic() + TERMINATE_DRAIN_SECONDS
                elif chunk:
                    cbuf += chunk[cut:]
                else:
                    del cbuf[:cut]
                chunk = b""
                if self.in_flight is not None:
                    child.set_status(_COMMAND_EXECUTE)
            if terminate_by is None:
                if session.idle_limited:
                    timeout = session.idle_timeout(self.in_flight is not None, idle_since)
                    events = wait(timeout / 1000 if timeout > 0 else timeout, EPOLL_MAX_EVENTS)
                else:
                    events = wait(-1, EPOLL_MAX_EVENTS)
            else:
                left = terminate_by - monotonic()
                if left <= 0:
                    return self._terminated()
                events = wait(left + 0.001, EPOLL_MAX_EVENTS)
            for fd, _ev in events:
                chan = by_fd.get(fd)
                if chan is not None:
                    try:  # _recv, inline: this runs for every reply
                        data = chan.recv(RECV_SIZE)
                    except OSError:
                        data = b""
                    if not data:
                        self._node_lost(chan)  # raises, unless the session can go on without the node
                    elif self._on_backend_data(chan, data, send_c):
                        held = False
                    if data and terminate_by is not None and not self._pending():
                        return self._terminated()
                elif fd == cfd:
                    try:
                        data = recv_c(RECV_SIZE)
                    except OSError:
                        data = b""
                    if not data:
                        raise PeerClosed("client")
                    idle_since = monotonic()
                    if not cbuf and data[0] == _Q and len(data) >= 5 and m.uint32_at(data, 1) + 1 == len(data) \
                            and not held and terminate_by is None:
                        # Most reads are one whole Query: routed from the chunk itself, without
                        # the buffer and its copies.
                        if self._simple(_Q, data, send_c):
                            if self.log_frontend:
                                pglog.log_frontend(self.cfg, data, [(_Q, 0, len(data))])
                            if self.in_flight is not None:
                                child.set_status(_COMMAND_EXECUTE)
                            continue
                        held = True
                    if cbuf or held or terminate_by is not None:
                        cbuf += data
                    else:
                        chunk = data
                elif fd == wakeup_fd:
                    child.sigq.drain()
                    child.on_interrupt()
                else:
                    # Another pool slot's connection, pooled (its server closed it, say): it
                    # stays out of the relay's epoll until a session uses it again.
                    child.relay_forget(fd)

    def _process_client(self, cbuf: bytes | bytearray, send_c: object) -> tuple[bool, int]:
        """
        Route the complete messages in ``cbuf``.  Returns (held, cut): ``held`` when a batch must
        wait for the one in flight, ``cut`` the bytes handled (-1 after Terminate).  An extended
        batch whose Sync/Flush has not arrived stays in the buffer and is read again later.
        """
        session = self.session
        msgs, consumed = m.split_messages(cbuf)
        batch: list[tuple[int, int, int]] = []  # the extended messages so far, where they lie in cbuf
        interleaved = False  # COPY data came between the batch's messages
        for msg in msgs:
            typ, start, end = msg
            if typ in _EXTENDED:
                batch.append(msg)
                continue
            if typ in (_S, _H):
                batch.append(msg)
                payload = _batch_bytes(cbuf, batch, interleaved)
                cut = self._flush_batch(cbuf, batch, payload, sync=typ == _S)
                if cut >= 0:
                    return True, cut
                batch, interleaved = [], False
                continue
            if typ in _COPY_MESSAGES:
                interleaved = interleaved or bool(batch)
                target = self.in_flight or self.to_node[self.primary]
                data = bytes(cbuf[start:end])
                for node in target.nodes:
                    self._write(node, data)
                continue
            if typ == _X:
                session.ended_by_terminate = True
                self.unsent = len(batch)
                return False, -1
            if typ not in (_Q, _F):
                raise ProtocolError(f"invalid frontend message type {typ}")
            if batch:
                # Extended messages the client did not end with Sync (pgjdbc since 42.7.7 sends
                # its Closes so, then a simple BEGIN).  PostgreSQL runs them and the Query as
                # one cycle; here they end with a Sync of ours whose ReadyForQuery is dropped,
                # and the Query waits for their replies (pgpool-II refuses the Query).  Our
                # ReadyForQuery must be the only one due: whatever is in flight ends first.
                batch_start = batch[0][1]
                if self.in_flight is not None:
                    self._end_open_cycle()
                    return True, batch_start
                payload = _batch_bytes(cbuf, batch, interleaved)
                cut = self._flush_batch(cbuf, batch, payload + m.SYNC, sync=True, own_sync=True)
                return True, (cut if cut >= 0 else start)
            if not self._simple(typ, bytes(cbuf[start:end]), send_c):
                return True, start
        return False, (batch[0][1] if batch else consumed)

    def _simple(self, typ: int, msg: bytes, send_c: object) -> bool:
        """Route a Query or FunctionCall message; False when it must wait for the batch in flight."""
        if typ == _F:
            # pgpool-II routes a FunctionCall as a write (a dummy INSERT): to every node in
            # native replication (pgjdbc writes large objects so), else to the primary.
            target, verdict = (self.to_all if self.native else self.to_node[self.primary]), None
            if self.in_tx:
                self.tx_written = True
            self.session_written = True
            if self.native and self.in_tx and self.cfg.lobj_lock_table and msg[5:9] == _LO_CREAT \
                    and len(target.nodes) > 1:
                if self.in_flight is not None:
                    self._end_open_cycle()
                    return False
                msg = self._lo_create(msg)
        else:
            if self.temp_unknown and self.in_flight is None:
                self._refresh_temp_tables()
            end = msg.find(b"\0", 5)  # m.query_bytes, inline: this runs for every Query
            text = msg[5:end] if end >= 0 else msg[5:]
            if addressed_to_pgpool_bytes(text):
                if self.in_flight is not None:
                    self._end_open_cycle()
                    return False
                sql = text.decode(errors="replace")
                send_c(self.child.commands.execute(sql, self._client_tx_status(), self.session))  # type: ignore[operator]
                return True
            if self.pool.statements and (freed := self.pool.deallocated(text)) is not None:
                if self.in_flight is not None:
                    self._end_open_cycle()
                    return False
                send_c(self.pool.free(freed, self._client_tx_status()))  # type: ignore[operator]
                return True
            target, verdict = self._route_query(text)
            if target is self.to_all:
                target = self._defer_begin(verdict, target, msg)
        cycle = self.open_target
        if cycle is not None and not cycle.node_set <= target.node_set:
            self._close_open_cycle()  # a Flush-ended cycle on nodes the Query does not reach
            return False
        if self.in_flight is not None and not self._can_send(target):
            return False
        if self.native and verdict is not None and len(target.nodes) > 1:
            rewritten = self._constant_clock(verdict, target, msg)
            if rewritten is None:
                return False
            msg = rewritten
        if self.insert_lock and verdict is not None and not self._take_insert_lock(verdict, target):
            return False
        self.open_target = None  # the Query's ReadyForQuery ends the cycle, as in PostgreSQL
        if verdict is not None:
            self._note_verdict(verdict, target)
            if verdict.begin_default_on_standby and len(target.nodes) > 1:
                self._send_begin(target, msg)
                return True
        self._send(target, msg, expect_ready=True)
        return True

    def _begin_text(self, scan: BatchScan) -> bytes | None:
        """An extended-protocol BEGIN as the Query a standby gets later; None when the batch
        runs anything else (one Bind, of a statement that is a BEGIN, qualifies)."""
        verdict = scan.verdict
        if verdict is None or verdict.kind is not StatementKind.TX_BEGIN or scan.binds != 1:
            return None
        name = scan.bound_statement
        # The statement as _scan_batch saw it: the batch's last Parse of that name, else an earlier one.
        prepared = dict(scan.statements).get(name) or self.statements.get(name)
        if prepared is None or prepared.verdict.kind is not StatementKind.TX_BEGIN:
            return None
        return m.query(m.parse_parse(memoryview(prepared.parse)[5:])[1])

    def _defer_begin(self, verdict: Verdict, target: Target, payload: bytes | None) -> Target:
        """
        A BEGIN (or the end of its transaction) for every node: only where it is needed.
        ``payload`` is the BEGIN as a Query message; None leaves it for every node.
        """
        if verdict.kind is StatementKind.TX_BEGIN and payload is not None and self.lazy_begin and not self.in_tx:
            self.deferred_begin = _PLAIN_BEGIN if verdict.begin_default_on_standby else payload
            self.begun = {self.primary}
            return self.to_node[self.primary]
        if verdict.tx_end and self.deferred_begin is not None:
            return self._target_of(self.begun)  # perhaps only a standby (pgjdbc's BEGIN came with a read)
        return target

    def _send_begin(self, target: Target, payload: bytes) -> None:
        """A BEGIN a standby refuses (READ WRITE, SERIALIZABLE): a plain one there."""
        for node in target.nodes:
            data = payload if node == self.primary else _PLAIN_BEGIN
            self._send(Target((node,), target.answer), data, expect_ready=True)

    def _flush_batch(self, buf: bytes | bytearray, batch: list[tuple[int, int, int]], payload: bytes,
                     sync: bool, own_sync: bool = False, ours: bool = True) -> int:
        """Send an extended batch (ending in Sync or Flush, or ``own_sync``: a Sync of ours
        whose ReadyForQuery the client does not see).  Returns -1 when it is done, else where
        in ``buf`` to read again once the replies in flight are in."""
        if self.skip_to_sync:
            # What came before pgpool's own messages failed (_pool_batch): the rest of the
            # client's cycle is skipped, and its Sync answered.
            if sync:
                self.skip_to_sync = False
                if not own_sync:
                    self.session.send_client(m.ready_for_query(self._client_tx_status()))
            return -1
        if self.temp_unknown and self.in_flight is None:
            self._refresh_temp_tables()
        scan = self._scan_batch(buf, batch)
        if scan.ours and ours:
            return self._pool_batch(buf, batch, sync, own_sync)
        verdict = scan.verdict
        target = self._batch_target(scan)
        if scan.closes and self.native and any(not info.nodes <= target.node_set for info, _c in scan.closes):
            # A Close goes wherever its statement is (streaming replication: _close_elsewhere);
            # here every node, whose replies are compared like any others.
            target = self.to_all
        cycle = self.open_target
        if cycle is not None and ((scan.pinned is None and scan.dest_rank == _EITHER_RANK)
                                  or target.node_set <= cycle.node_set):
            # Until Sync the cycle is one implicit transaction: what may run there stays there.
            # Anything else (a write after reads on a standby) ends it with a Sync of ours
            # (_can_send) and starts a new one where it must go.
            target = cycle
        elif target is self.to_all and verdict is not None:
            target = self._defer_begin(verdict, target, self._begin_text(scan))
        replay = self._replay(scan, target)
        if not self._can_send(target):
            return batch[0][1]
        if replay and sync and not own_sync:
            if self.in_flight is not None:  # the nodes are asked first
                self._end_open_cycle()
                return batch[0][1]
            error = self._replay_changes_shape(replay)
            if error is not None:
                # As in PostgreSQL the statement fails, and with it the transaction; the rest
                # of the batch is skipped, and ReadyForQuery ends it.
                self._fail_elsewhere(None)
                status = self.channels[target.answer].scanner.tx_status
                self._after_ready(status)
                self.open_target = None
                self.session.send_client(error + m.ready_for_query(status))
                return -1
            replay = self._replay(scan, target)
        ahead = 0
        if self.native and scan.binds and len(target.nodes) > 1 and not self.tx_failed:
            clocked = self._clock_batch(payload, scan, target)
            if clocked is None:
                return batch[0][1]
            payload, ahead = clocked
        if self.insert_lock and verdict is not None and scan.executes and not self._take_insert_lock(verdict, target):
            return batch[0][1]
        if (scan.begin is not None and scan.binds > 1 and self.lazy_begin and not self.in_tx
                and len(target.nodes) < len(self.everyone)):
            self.deferred_begin = m.query(m.parse_parse(memoryview(scan.begin.parse)[5:])[1])
            self.begun = set(target.nodes)
        if scan.executes:
            # Only what runs changes the transaction or counts: a Parse of BEGIN, answered on
            # the primary while a standby still works on it, must not make the Bind that
            # follows look like a statement inside a transaction.  Each statement bound, in
            # order: pgjdbc's BEGIN comes with the transaction's first statement.
            for executed in scan.bound:
                self._note_verdict(executed, target)
        self._send(target, payload, expect_ready=sync, replay=replay)
        self.channels[target.answer].drop_completes += ahead
        if own_sync:
            self.channels[target.answer].drop_ready += 1
        if scan.closes and not self.native:
            self._close_elsewhere(scan.closes, target)
        for info, node in replay:
            info.nodes = info.nodes | {node}
        for name, prepared in scan.statements:
            if prepared is None:
                self.statements.pop(name, None)
            else:
                prepared.nodes = target.node_set
                self.statements[name] = prepared
        for portal, bound in scan.portals:
            if bound:
                self.portals[portal] = target.node_set
            else:
                self.portals.pop(portal, None)
        if self.pool.statements or self.pool.portals:
            self._forget_ours(scan)
        self.open_target = None if sync else target
        return -1

    # ------------------------------------------------------------------ pgpool's commands as prepared statements

    def _pool_batch(self, buf: bytes | bytearray, batch: list[tuple[int, int, int]], sync: bool, own_sync: bool) -> int:
        """
        A batch with messages for pgpool's own statements or portals (``PoolStatements``), run
        in order: the messages before the first of ours go to the backend with a Sync of ours,
        and the rest waits for their replies; ours are answered here; the messages after them
        make a batch of their own.  After an error the rest is skipped until Sync, as PostgreSQL
        does.  Returns as ``_flush_batch``.
        """
        if self.in_flight is not None:  # earlier replies first
            self._end_open_cycle()
            return batch[0][1]
        shadowed: set[tuple[str, str]] = set()
        last = len(batch) if own_sync else len(batch) - 1  # the Sync or Flush aside
        first = 0
        while first < last and not self._ours(buf, *batch[first], shadowed):
            first += 1
        if first == last:  # none of ours after all (a name given to the backend's earlier in the batch)
            return self._flush_batch(buf, batch, _batch_bytes(buf, batch, True) + (m.SYNC if own_sync else b""),
                                     sync, own_sync, ours=False)
        if first:
            before = batch[:first]
            self.prefix_pending = True
            cut = self._flush_batch(buf, before, _batch_bytes(buf, before, True) + m.SYNC, sync=True, own_sync=True,
                                    ours=False)
            return batch[first][1] if cut < 0 else cut
        replies, at = self.pool.answer(buf, batch[:last], shadowed, self._is_pool_command, self.session,
                                       self.statements, self.portals)
        if at == last and sync and not own_sync:
            replies += self.pool.ready(self._client_tx_status())
        self.session.send_client(replies)
        if at == last:
            return -1
        rest = batch[at:]
        return self._flush_batch(buf, rest, _batch_bytes(buf, rest, True) + (m.SYNC if own_sync else b""),
                                 sync, own_sync)

    def _ours(self, buf: bytes | bytearray, typ: int, start: int, end: int, shadowed: set[tuple[str, str]]) -> bool:
        return self.pool.ours(buf, typ, start, end, shadowed, self._is_pool_command)

    def _is_pool_command(self, text: bytes) -> bool:
        return self.classifier.classify_bytes(text).kind is _POOL_COMMAND

    def _forget_ours(self, scan: BatchScan) -> None:
        """Names the backend's statements and portals took over from ours."""
        for name, _prepared in scan.statements:
            self.pool.statements.pop(name, None)
        for portal, _bound in scan.portals:
            self.pool.portals.pop(portal, None)

    def _lo_create(self, call: bytes) -> bytes:
        """
        Native replication with lobj_lock_table (pgpool-II's pool_rewrite_lo_creat): a
        FunctionCall of lo_creat lets every node pick the large object's oid, and they may
        pick different ones.  Under the table's lock the main node finds a free oid, and the
        call becomes lo_create of it.  pgpool-II takes max(loid) + 1 from pg_largeobject,
        which objects without data are missing from; pg_largeobject_metadata has them all.
        LOCK TABLE needs a transaction, as large objects do: outside one the call is left as
        it is, as in pgpool-II, and so it is when the lock cannot be taken (logged).
        """
        table = self.cfg.lobj_lock_table
        _reply, locked = self._exchange(self.primary, f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        if not locked:
            return call
        reply, ok = self._exchange(self.primary, _NEXT_LARGE_OBJECT)
        if not ok:
            return call
        oid = int(_rows(reply)[0][0] or 0)
        if oid > 0xFFFFFFFF:
            return call
        result_format = call[-2:]  # as the client asked for lo_creat's
        return m.frame(b"F", _LO_CREATE + struct.pack("!hhhiI", 1, 1, 1, 4, oid) + result_format)

    def _take_insert_lock(self, verdict: Verdict, target: Target) -> bool:
        """
        insert_lock (native replication): an INSERT into a table that takes ids from a
        sequence runs while this session holds an advisory lock on the table's name on every
        node, taken on the main node first (so two sessions cannot deadlock across nodes):
        concurrent INSERTs then draw their ids in the same order everywhere.  pgpool-II locks
        the table until COMMIT; the ids are drawn by the INSERT, so it is released as soon
        as every node has answered.  False: wait for what is in flight first.  Called only
        while insert_lock is on (the check stays at the call: it is on every statement's path).
        """
        table = verdict.insert_table
        if not (table and len(target.nodes) > 1) or self.insert_locked is not None:
            return True
        if self.tx_failed:
            return True  # the INSERT fails on every node, and so would our queries
        if self.in_flight is not None:
            self._end_open_cycle()
            return False
        serial = self.serial_tables.get(table)
        if serial is None:
            name = ".".join('"' + part.replace('"', '""') + '"' for part in table)
            reply, ok = self._exchange(target.answer, _HAS_SERIAL.format("'" + name.replace("'", "''") + "'"))
            serial = _rows(reply) == [["t"]]
            if ok:  # asked again next time otherwise
                self.serial_tables[table] = serial
        if serial:
            key = int.from_bytes(zlib.crc32(".".join(table).encode()).to_bytes(4, "big"), "big", signed=True)
            nodes = (target.answer, *(n for n in target.nodes if n != target.answer))
            for node in nodes:
                self._exchange(node, f"SELECT pg_catalog.pg_advisory_lock({_INSERT_LOCK_CLASS}, {key})")
            self.insert_locked = (nodes, key)
        return True

    def _constant_clock(self, verdict: Verdict, target: Target, msg: bytes) -> bytes | None:
        """
        Native replication: the Query for every node with the clock read once, on the main
        node (``routing.timestamp``), so that now() and DEFAULT now() store one value
        everywhere.  None: wait for what is in flight first.
        """
        text = m.query_bytes(msg)
        if self.tx_failed or not self._clock_candidate(verdict, text):
            return msg
        if self.in_flight is not None:
            self._end_open_cycle()
            return None
        main = target.answer
        rewritten = self._rewrite_clock(text, main, lambda: self._read_clock(main))
        return msg if rewritten is None else m.query(rewritten)

    def _clock_batch(self, payload: bytes, scan: BatchScan, target: Target) -> tuple[bytes, int] | None:
        """
        Native replication, extended protocol: a Bind of a statement that reads the clock binds
        a copy of it instead, prepared just before the batch under a name of ours with the main
        node's timestamp as a constant.  The client's statement stays as it prepared it (its
        Describe answers alike), and each execution gets its own time.  Returns the payload and
        the number of our messages ahead of it; None: wait for what is in flight first.
        """
        own = iter(scan.statements)
        batch_statements: dict[str, Prepared | None] = {}
        binds: list[tuple[int, int, Prepared]] = []
        msgs, _ = m.split_messages(payload)
        for typ, start, end in msgs:
            if typ == _P or (typ == _C and payload[start + 5] == _S):
                name, prepared = next(own)
                batch_statements[name] = prepared
            elif typ == _B:
                stmt = bind_names(payload, start, end)[1]
                found = batch_statements[stmt] if stmt in batch_statements else self.statements.get(stmt)
                if found is None or (found.clock_known and found.clock_template is None):
                    continue
                if not found.clock_known and not self._clock_candidate(found.verdict, _parse_text(found)):
                    found.clock_known = True
                    continue
                binds.append((start, end, found))
        if not binds:
            return payload, 0
        if self.in_flight is not None:
            self._end_open_cycle()
            return None
        main = target.answer
        for _start, _end, prepared in binds:
            if not prepared.clock_known:
                prepared.clock_template = self._rewrite_clock(_parse_text(prepared), main, lambda: timestamp.MARKER)
                prepared.clock_known = True
        binds = [bind for bind in binds if bind[2].clock_template is not None]
        now = self._read_clock(main) if binds else None
        if now is None:
            return payload, 0
        copies: dict[int, bytes] = {}  # id(Prepared) -> the name of its copy
        ahead: list[bytes] = []
        parts: list[bytes] = []
        done = 0
        for start, end, prepared in binds:
            copy = copies.get(id(prepared))
            if copy is None:
                copy = copies[id(prepared)] = _CLOCK_STATEMENT.format(len(copies)).encode()
                template = prepared.clock_template
                assert template is not None
                ahead += [m.frame(b"C", b"S" + copy + b"\0"),
                          _parse_with(prepared.parse, copy, template.replace(timestamp.MARKER, now))]
            portal_end = payload.index(b"\0", start + 5)
            statement_end = payload.index(b"\0", portal_end + 1)
            parts += [payload[done:start], m.frame(b"B", payload[start + 5 : portal_end + 1] + copy
                                                   + payload[statement_end:end])]
            done = end
        parts.append(payload[done:])
        return b"".join(ahead + parts), len(ahead)

    def _clock_candidate(self, verdict: Verdict, text: bytes) -> bool:
        """Whether a statement for every node may read the clock: cheap tests before parsing."""
        lowered = text.lower()
        if timestamp.may_read_clock(lowered):
            return True
        if verdict.kind is StatementKind.INSERT and verdict.statement_count == 1:
            known = self.child.table_clocks.get(self.slot.database, verdict.insert_table, self.cfg.relcache_expire)
            return known is not timestamp.NO_CLOCK  # the common case once a table is known
        return b"insert" in lowered or (b"update" in lowered and b"default" in lowered)

    def _rewrite_clock(self, text: bytes, main: int, clock: Callable[[], str | None]) -> str | None:
        try:
            sql = text.decode()
        except UnicodeDecodeError:
            return None
        return timestamp.rewrite(sql, clock, lambda table: self._table_clock(main, table))

    def _read_clock(self, node: int) -> str | None:
        reply, ok = self._exchange(node, timestamp.TIMESTAMP_QUERY)
        rows = _rows(reply)
        return rows[0][0] if ok and rows else None

    def _table_clock(self, node: int, table: timestamp.TableKey) -> timestamp.TableClock:
        cache, database = self.child.table_clocks, self.slot.database
        known = cache.get(database, table, self.cfg.relcache_expire)
        if known is not None:
            return known
        reply, ok = self._exchange(node, timestamp.columns_query(table))
        clock = timestamp.table_clock(_rows(reply))
        if ok:  # asked again next time otherwise
            cache.put(database, table, clock, self.cfg.relcache_size)
        return clock

    def _release_insert_lock(self) -> None:
        assert self.insert_locked is not None
        nodes, key = self.insert_locked
        self.insert_locked = None
        unlock = m.query(f"SELECT pg_catalog.pg_advisory_unlock({_INSERT_LOCK_CLASS}, {key})")
        self.unlocks_due.extend((node, unlock) for node in nodes)
        self._send_unlocks()

    def _send_unlocks(self) -> None:
        """The insert lock's releases, where the node's transaction has not failed: a failed
        INSERT leaves it refusing every query until ROLLBACK (or to a savepoint), and the
        lock, the session's, would stay and hold up every other session's INSERTs."""
        due = []
        for node, unlock in self.unlocks_due:
            ch = self.channels.get(node)
            if ch is None:
                continue
            if ch.scanner.tx_status == m.TX_FAILED:
                due.append((node, unlock))
            else:
                self._write(node, unlock)
                ch.swallow.append("release the insert lock")
        self.unlocks_due = due

    def _exchange(self, node: int, sql: str) -> tuple[bytes, bool]:
        """Run a query of ours on a node with nothing in flight: its replies, up to
        ReadyForQuery, and whether it succeeded (a failure is logged)."""
        reply, msgs = self._ask(node, m.query(sql))
        ok = True
        for typ, start, end in msgs:
            if typ == _E:
                fields = m.parse_error_fields(reply[start + 5 : end])
                log.warning("backend node %d: %s failed: %s", node, sql, fields.get("M", ""))
                ok = False
        return reply, ok

    def _ask(self, node: int, messages: bytes) -> tuple[bytes, list[tuple[int, int, int]]]:
        """Send messages of ours, ending in a Query or Sync, to a node with nothing in flight;
        its replies up to ReadyForQuery, and where they lie."""
        ch = self.channels[node]
        self._drain_ours(ch)  # replies to earlier queries of ours come first
        self._write(node, messages)
        reply = b""
        while True:
            reply += self._recv_or_lost(ch)
            msgs, _ = m.split_messages(reply)
            if msgs and msgs[-1][0] == ord("Z"):
                ch.scanner.tx_status = reply[msgs[-1][1] + 5]
                return reply, msgs

    def _replay_changes_shape(self, replay: Replay) -> bytes | None:
        """
        A statement re-parsed on another node gets the result columns of the table as it is
        now, where the client knows those of its first Parse.  After an ALTER TABLE between
        the two, PostgreSQL would fail the statement with "cached plan must not change result
        type"; re-parsed, it would answer with other columns (asyncpg: "the number of columns
        in the result row is different from what was described").  So before a re-parse is
        used, the node that has the statement describes it (failing with that very error if
        its plan is out of date), the new node parses and describes it, and the two must
        agree.  Returns the error for the client when they do not, or when either node
        failed (its error).  Nothing may be in flight.
        """
        for info, node in replay:
            if not info.nodes:
                continue  # its nodes failed: nothing to compare with
            describe = m.frame(b"D", b"S" + m.parse_parse_bytes(info.parse)[0] + b"\0")
            known, known_msgs = self._ask(min(info.nodes), describe + m.SYNC)
            fresh, fresh_msgs = self._ask(node, info.parse + describe + m.SYNC)
            error = _error(fresh, fresh_msgs)
            if error is not None:
                return error
            info.nodes = info.nodes | {node}
            error = _error(known, known_msgs)
            if error is not None:
                return error
            if _result_shape(known, known_msgs) != _result_shape(fresh, fresh_msgs):
                return _PLAN_CHANGED
        return None

    def _drain_ours(self, ch: NodeChannel) -> None:
        """Read the replies to queries of ours still due from a node with nothing in flight
        (what it sent unasked after them goes to the client later)."""
        while ch.swallow:
            rest = self._swallow_ours(ch, self._recv_or_lost(ch))
            if rest and ch.node_id == self.primary:
                self.unsolicited += rest

    def _recv_or_lost(self, ch: NodeChannel) -> bytes:
        data = self._recv(ch)
        if not data:
            raise self.session._backend_lost(self.slot.conns[ch.node_id])
        return data

    def _close_elsewhere(self, closes: list[tuple[Prepared, bytes]], target: Target) -> None:
        """
        A statement closed by the client lives on every node it was prepared or replayed on:
        the batch's target is only one of them (pgjdbc closes the statements its cache evicts;
        left on a node, they would pile up there for the connection's life).  The others get
        the Close with a Sync of ours; they do not answer the client, so their replies are
        dropped.  Streaming replication only: native replication compares every node's replies,
        and sends such a batch to every node instead.
        """
        elsewhere: dict[int, list[bytes]] = {}
        for info, close in closes:
            for node in info.nodes:
                if node not in target.nodes and node in self.channels:
                    elsewhere.setdefault(node, []).append(close)
        for node, messages in elsewhere.items():
            self._send_own_sync(node, b"".join(messages))
            self._add_in_flight(Target((node,), target.answer))

    # ------------------------------------------------------------------ replies

    def _recv(self, ch: NodeChannel) -> bytes:
        try:
            data = ch.recv(RECV_SIZE)
        except OSError:
            data = b""
        if not data:
            self._node_lost(ch)
        return data

    def _node_lost(self, ch: NodeChannel) -> None:
        """
        A node closed its connection.  If this session is waiting on it (or it is the
        primary/main node), the session ends with an error; otherwise the session goes on
        without it, and main is told (pgpool-II 4.3 ended every such session).
        """
        node = ch.node_id
        target = self.in_flight
        if node == self.primary or ch.pending or (target is not None and node in target.nodes):
            raise self.session._backend_lost(self.slot.conns[node])
        self.child.relay_forget(ch.fd)
        del self.channels[node]
        del self.by_fd[ch.fd]
        self._nodes_changed()
        self.child.pool.forget_node(self.slot, node)
        self.child.backend_failed(node, None)
        for prepared in self.statements.values():
            prepared.nodes = prepared.nodes - {node}
        self.portals = {name: nodes - {node} for name, nodes in self.portals.items()}
        self.begun.discard(node)
        if self.lb_node == node:
            self.lb_node = self.slot.load_balance_node = self.primary
        self._balancing_changed()
        log.info("backend node %d closed its connection; the session goes on without it", node)

    def _on_backend_data(self, ch: NodeChannel, data: bytes, send_c: object) -> bool:
        """Forward or drop a chunk; True when the batch in flight has completed everywhere."""
        if ch.swallow or ch.drop_completes or ch.drop_ready or ch.collect is not None:
            data, completed = self._take_ours(ch, data)
        else:  # most chunks: nothing of ours to take out
            completed = ch.scanner.feed(data)
        target = self.in_flight
        if target is not None and ch.node_id == target.answer and data:
            if self.native and len(target.nodes) > 1 and self.open_target is None and not ch.scanner.copy_in:
                # Native replication: the client hears of a write only once every node has
                # done it, so no later session can act on a node that has not caught up.
                # Not when it waits for more before it sends its Sync (a Flush; COPY data):
                # nothing is committed before that, and all is still compared at the end.
                self.reply_held += data
            else:
                ch.scanner.copy_in = False
                if self.reply_held:
                    data, self.reply_held = bytes(self.reply_held) + data, bytearray()
                try:
                    send_c(data)  # type: ignore[operator]
                except OSError as exc:
                    raise PeerClosed("client") from exc
        elif data and ch.node_id == self.primary and (target is None or ch.node_id not in target.nodes):
            # Unsolicited: NotificationResponse, ParameterStatus, NoticeResponse.  While another
            # node answers, held until its answer is complete.
            self.unsolicited += data
            if target is None:
                self._send_unsolicited()
        if not completed:
            return False
        pending = ch.pending - completed
        ch.pending = pending if pending > 0 else 0
        if ch.scanner.errors:
            self.counter_cells[self.counter_bases[ch.node_id] + _COUNTER_INDEX["error_cnt"]] += ch.scanner.errors
            ch.scanner.errors = 0
            if self.prefix_pending:
                self.skip_to_sync = True
        for other in self.channels.values():
            if other.pending:
                return False
        if self.native:
            if self.insert_locked is not None:
                self._release_insert_lock()
            elif self.unlocks_due:
                self._send_unlocks()
            self._compare_results(target)
            if self.reply_held:
                held, self.reply_held = bytes(self.reply_held), bytearray()
                self.session.send_client(held)
        answer = self.channels[target.answer] if target is not None else ch
        status = answer.scanner.tx_status
        if status == _TX_FAILED:
            self._fail_elsewhere(answer)
        self._after_ready(status)
        if self.unsolicited:
            self._send_unsolicited()
        if self.open_target is None:
            self.in_flight = None
        self.prefix_pending = False
        self.child.set_status(_IDLE if status == _TX_IDLE else _IDLE_IN_TRANS)
        return True

    def _take_ours(self, ch: NodeChannel, data: bytes) -> tuple[bytes, int]:
        """The chunk without the replies to messages of ours (``NodeChannel`` says which are
        due), and the ReadyForQuery messages it completes."""
        if ch.swallow:
            data = self._swallow_ours(ch, data)
            if not data:
                return data, 0
        if ch.drop_completes:
            while ch.drop_completes and (data.startswith(_PARSE_COMPLETE) or data.startswith(_CLOSE_COMPLETE)):
                data = data[len(_PARSE_COMPLETE):]
                ch.drop_completes -= 1
            if data and data[:1] not in (b"1", b"3"):
                ch.drop_completes = 0  # an error instead: the client must see it
        if ch.collect is not None:
            ch.collect += data
        completed = ch.scanner.feed(data)
        if ch.drop_ready:
            data = self._drop_own_ready(ch, data, completed)
        return data, completed

    def _send_unsolicited(self) -> None:
        """The whole messages the primary sent unasked while another node answered."""
        _msgs, whole = m.split_messages(self.unsolicited)
        if whole:
            data = bytes(self.unsolicited[:whole])
            del self.unsolicited[:whole]
            self.session.send_client(data)

    def _fail_elsewhere(self, failed: NodeChannel | None) -> None:
        """
        The client's transaction failed on the answering node (a read on the load-balance
        node, say), or before any node ran the statement (None: _replay_changes_shape): fail
        it too where it is still healthy, so that, as in PostgreSQL, what follows fails and
        COMMIT rolls back.  Left alone, a write sent on to the primary would commit.  The
        failure goes out now, before the client's next statement.
        """
        for ch in self.channels.values():
            if ch is not failed and ch.scanner.tx_status == m.TX_IN_BLOCK:
                self._write(ch.node_id, _FAIL_TRANSACTION)
                ch.swallow.append("")
                ch.scanner.tx_status = m.TX_FAILED  # what its ReadyForQuery will say
                if self.log_per_node_statement:
                    log.info("DB node id: %d backend pid: %d statement: %s", ch.node_id,
                             self.slot.conns[ch.node_id].pid, _describe(_FAIL_TRANSACTION))

    def _swallow_ours(self, ch: NodeChannel, data: bytes) -> bytes:
        """Drop the replies to queries of ours (``NodeChannel.swallow``), up to their ReadyForQuery."""
        buf = ch.swallowed + data
        msgs, rest = m.split_messages(buf)
        for typ, start, end in msgs:
            if typ == _E and ch.swallow[0]:
                fields = m.parse_error_fields(buf[start + 5 : end])
                log.warning("backend node %d could not %s: %s", ch.node_id, ch.swallow[0], fields.get("M", ""))
            elif typ == ord("Z"):
                ch.swallow.popleft()
                ch.scanner.tx_status = buf[start + 5]
                if not ch.swallow:
                    ch.swallowed = b""
                    return buf[end:]
        ch.swallowed = buf[rest:]
        return b""

    def _drop_own_ready(self, ch: NodeChannel, data: bytes, completed: int) -> bytes:
        """
        Cut the ReadyForQuery answering our own Sync out of the stream.  Nothing follows it
        (the node has no other request), so it is the last 6 bytes once it has arrived; until
        then the last bytes are held back in case they start it.
        """
        buf = ch.tail + data
        ch.tail = b""
        if completed:
            if buf[-6:-1] == b"Z\x00\x00\x00\x05":
                ch.drop_ready -= 1
                return buf[:-6]
            ch.drop_ready = 0  # not at the end: the client's own Sync was answered; forward all
            return buf
        ch.tail = buf[-5:]
        return buf[:-5]

    def _after_ready(self, status: int) -> None:
        if status == _TX_IDLE:
            self.in_tx = self.tx_written = self.tx_failed = self.tx_serializable = False
            if self.portals:
                self.portals.clear()
            self.deferred_begin = None
        else:
            self.in_tx = True
            self.tx_failed = status == m.TX_FAILED

    def _client_tx_status(self) -> int:
        return self.channels[self.primary].scanner.tx_status

    def _pending(self) -> int:
        """Replies still due, the swallowed ones to queries of ours included: a session must
        not end (and leave its connection to the reset queries) before they are read."""
        return sum(ch.pending + len(ch.swallow) for ch in self.channels.values())

    def _terminated(self) -> None:
        """The client said Terminate: tell the session what is left for the reset to judge."""
        self.session.unanswered = self._pending() + self.unsent
        self._save_tx_status()

    def _save_tx_status(self) -> None:
        for node, ch in self.channels.items():
            conn = self.slot.conns[node]
            conn.tx_status = ch.scanner.tx_status
            conn.dirty = conn.dirty or ch.used

    # ------------------------------------------------------------------ native replication

    def _compare_results(self, target: Target | None) -> None:
        if target is None or len(target.nodes) < 2:
            for ch in self.channels.values():
                ch.collect = None
            return
        results: dict[int, tuple[str, ...]] = {}
        for node in target.nodes:
            ch = self.channels[node]
            results[node] = _outcome(bytes(ch.collect or b""))
            ch.collect = None
        if len(set(results.values())) == 1:
            return
        # As pgpool-II: the nodes outside the largest group of equal results (on a tie, the
        # group of the answering node) are detached if the parameter for this kind of
        # difference is on; otherwise only the session ends.
        groups: dict[tuple[str, ...], list[int]] = {}
        for node, outcome in sorted(results.items()):
            groups.setdefault(outcome, []).append(node)
        winner = max(groups.values(), key=lambda nodes: (len(nodes), target.answer in nodes))
        losers = [node for node in results if node not in winner]
        only_counts = len({_without_counts(outcome) for outcome in results.values()}) == 1
        if only_counts:
            what, param = "the number of affected tuples", "failover_if_affected_tuples_mismatch"
        else:
            what, param = "the kind of results", "replication_stop_on_mismatch"
        detail = " ".join(f"{n}[{', '.join(o)}]" for n, o in sorted(results.items()))
        if getattr(self.cfg, param):
            for node in losers:
                log.warning("pgpool-py detected a difference in %s of node %d and node %d; detaching node %d",
                            what, node, winner[0], node, extra={"detail": detail})
                register_node_operation_request(
                    self.child.shm, self.child.main_pid, RequestKind.NODE_DOWN, (node,), RequestDetail.SWITCHOVER
                )
            return
        raise SessionError(
            f"{what} differs among backends; the session is ended",
            sqlstate="XX000",
            detail=detail,
            hint=f"check data consistency among db nodes; with {param} = on the differing node is detached",
        )


def _result_shape(reply: bytes, msgs: list[tuple[int, int, int]]) -> tuple[tuple[object, ...], ...] | None:
    """
    What the client decodes rows by, from the replies to a Describe of ours: each column's
    name, type, size, modifier and format; () for NoData, None if there is neither.  Not the
    table's oid and column number, nor the oid of a type that is not built in: in native
    replication every node gives its objects oids of its own.
    """
    for typ, start, end in msgs:
        if typ == _NO_DATA:
            return ()
        if typ == _ROW_DESCRIPTION:
            return tuple((f.name, f.type_oid if f.type_oid < _FIRST_NORMAL_OID else None, f.size, f.type_modifier,
                          f.format) for f in m.parse_row_description(reply[start + 5 : end]))
    return None


def _error(reply: bytes, msgs: list[tuple[int, int, int]]) -> bytes | None:
    """The ErrorResponse among replies, if any."""
    for typ, start, end in msgs:
        if typ == _E:
            return reply[start:end]
    return None


def _parse_text(prepared: Prepared) -> bytes:
    return m.parse_parse_bytes(prepared.parse)[1]


def _parse_with(parse: bytes, name: bytes, text: str) -> bytes:
    """A copy of a Parse message under another name, with another text, the same parameter types."""
    _name, old_text = m.parse_parse_bytes(parse)
    types = parse[5 + len(_name) + 1 + len(old_text) + 1 :]
    return m.frame(b"P", name + b"\0" + text.encode() + b"\0" + types)


def _rows(reply: bytes) -> list[list[str | None]]:
    """The DataRows of a reply to a query of ours (``Router._exchange``)."""
    return [m.parse_data_row(reply[start + 5 : end]) for typ, start, end in m.split_messages(reply)[0] if typ == _DATA_ROW]


def _without_counts(outcome: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(tag if tag.startswith("ERROR ") else _COUNTS.sub("", tag) for tag in outcome)


_COUNTS: Final = re.compile(r"( \d+)+$")  # "INSERT 0 5", "UPDATE 2": the tuples a command affected


def _outcome(data: bytes) -> tuple[str, ...]:
    """CommandComplete tags and error codes of a batch's replies (native-mode comparison)."""
    out: list[str] = []
    msgs, _ = m.split_messages(data)
    for typ, start, end in msgs:
        if typ == _C:
            out.append(m.parse_query(data[start + 5 : end]))
        elif typ == _E:
            out.append("ERROR " + m.parse_error_fields(data[start + 5 : end]).get("C", ""))
    return tuple(out)


def _batch_bytes(buf: bytes | bytearray, batch: list[tuple[int, int, int]], interleaved: bool) -> bytes:
    """A batch's messages as one payload: usually they lie together in the buffer and one copy
    takes them all; COPY data the client sent between them is not part of it."""
    if interleaved:
        return b"".join([buf[start:end] for _typ, start, end in batch])
    return bytes(buf[batch[0][1] : batch[-1][2]])


def _describe(payload: bytes) -> str:
    if payload[:1] == b"Q":
        return m.parse_query(memoryview(payload)[5:])
    kinds = {"P": "Parse", "B": "Bind", "D": "Describe", "E": "Execute", "C": "Close", "S": "Sync", "H": "Flush"}
    msgs, _ = m.split_messages(payload)
    return " ".join(kinds.get(chr(t), chr(t)) for t, _s, _e in msgs)


def weighted_choice(weights: dict[int, float], rng: random.Random) -> int:
    """pgpool-II's weighted random pick of the load-balance node."""
    total = sum(weights.values())
    if total <= 0:
        return min(weights)
    point = rng.random() * total
    for node in sorted(weights):
        point -= weights[node]
        if point < 0:
            return node
    return max(weights)


_PREF_ITEM: Final = re.compile(r"^\s*(?P<pattern>.+?)\s*:\s*(?P<node>primary|standby|\d+)\s*(?:\(\s*(?P<weight>[0-9.]+)\s*\))?\s*$")


def parse_redirect_list(items: tuple[str, ...]) -> list[tuple[re.Pattern[str], str, float]]:
    """``database_redirect_preference_list`` items: ``pattern:node(weight)``."""
    out = []
    for item in items:
        match = _PREF_ITEM.match(item)
        if match is None:
            log.warning('invalid redirect preference entry "%s"', item)
            continue
        try:
            pattern = re.compile("^" + match.group("pattern") + "$")
        except re.error:
            log.warning('invalid regular expression in redirect preference entry "%s"', item)
            continue
        out.append((pattern, match.group("node"), float(match.group("weight") or 1.0)))
    return out

