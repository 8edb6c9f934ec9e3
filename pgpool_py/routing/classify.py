"""
Query classification for routing: what pgpool-II's ``send_to_where()``, ``is_select_query()``
and ``pool_has_function_call()`` decide, computed with PostgreSQL's own parser (pglast).

Sans-IO and pure: the caller supplies the settings as plain values and, optionally, two
lookups (function volatility from pg_proc, the session's temporary tables). Verdicts are
cached per query text (a hit is a dict lookup) and per normalized text, so that a new text
differing only in literals (pgbench -S in simple protocol) skips the parse.

A ``Verdict`` says where a query may go in streaming-replication mode (``dest``), whether it
is a pure read that any one node may answer (``is_read``, what native replication mode needs)
and whether it counts as a write for ``disable_load_balance_on_write`` (``is_write``). The
session state (explicit transaction, writing transaction, SERIALIZABLE, the node a PREPARE
went to) is the caller's: see ``Dest``.

Where pgpool-py deliberately differs from 4.3.5 (verified against the installed 4.3.5):
- ``EXPLAIN`` of a load-balanceable SELECT may be load balanced, as pgpool-II's manual says
  (4.3.5's code sends every EXPLAIN to the primary).
- ``PREPARE name AS <stmt>`` takes the verdict of ``<stmt>`` (pgpool-II 4.5+; 4.3.5 sends
  every PREPARE to the primary).
- ``nextval()``/``setval()``, ``txid_current()`` and ``pg_current_xact_id()`` are writes whatever
  the function lists say: a standby can only fail them.
- ``/*NO LOAD BALANCE*/`` at the start keeps a query on the primary even with
  ``allow_sql_comments = on`` (pgpool gets that effect only from the leading-character rule).
- A function call disables load balancing in any balanceable statement (``COPY (SELECT f())
  TO STDOUT`` too), not only in a SELECT; ``SET transaction_read_only = 1`` is read-only
  (4.3.5 routes it as if it were ``off``).
- System catalogs are recognised by name (``pg_catalog.x``, or an unqualified ``pg_*``
  relation) where pgpool asks the backend; ``pg_temp.x`` is a temporary table without asking.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from pglast import parser as _pg_parser

log = logging.getLogger(__name__)

# A node of pglast's JSON parse tree (PostgreSQL's node names and field names).
_Node = dict[str, Any]

# pgpool's own SHOW commands (pool_proto_modules.c SimpleQuery); any other SHOW goes to a backend.
POOL_SHOW_NAMES: Final = frozenset({
    "pool_status", "pool_nodes", "pool_processes", "pool_pools", "pool_version",
    "pool_cache", "pool_health_check_stats", "pool_backend_stats",
})

# A pgpool command as classify() reports it:
# ("SHOW", "pool_nodes"), ("PGPOOL SHOW", "port" | "all"), ("PGPOOL SET", name, value),
# ("PGPOOL RESET", name | "all").
PoolCommand = tuple[str, ...]

# storage/lock.h: LOCK at or above this mode conflicts with a standby's recovery.
_ROW_EXCLUSIVE_LOCK: Final = 3

# Always writes: a standby can only answer "cannot execute nextval() in a read-only transaction".
# txid_current() and pg_current_xact_id() are STABLE, but assign a transaction id: "cannot
# execute pg_current_xact_id() during recovery".
_ALWAYS_WRITING_FUNCTIONS: Final = frozenset({"nextval", "setval", "txid_current", "pg_current_xact_id"})

_FALSE_WORDS: Final = frozenset({"off", "false", "f", "no", "n", "0"})
_TRUE_WORDS: Final = frozenset({"on", "true", "t", "yes", "y", "1"})

# Leading white space and comments, then the start of a pgpool command. Cheap enough to run
# on every simple query; a match is confirmed by the parser.
# (\s, not \s+: a repeated \s+ backtracks exponentially on a long run of blanks.)
_LEAD: Final = r"\A(?:\s|/\*.*?\*/|--[^\n]*(?:\n|\Z))*"
_POOL_PREFIX: Final = re.compile(_LEAD + r"(?:pgpool\s|show\s+pool_)", re.IGNORECASE | re.DOTALL)
# The same test on the raw bytes of a Query body, for the raw-mode relay.
_POOL_PREFIX_BYTES: Final = re.compile(_POOL_PREFIX.pattern.encode(), re.IGNORECASE | re.DOTALL)
# How much of a Query body the bytes test looks at: enough for leading comments, never the
# whole of a multi-megabyte query.
POOL_PREFIX_WINDOW: Final = 1024
# What may come first in a pgpool command's text: blanks (bytes.isspace's, and the
# regular expression's \s) or a comment before it.
_SPACE_OR_COMMENT: Final = (0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, ord("/"), ord("-"))
_PGPOOL_COMMAND: Final = re.compile(_LEAD + r"pgpool\s+(show|set|reset)\b", re.IGNORECASE | re.DOTALL)
_NO_LOAD_BALANCE: Final = re.compile(r"\A\s*/\*\s*NO LOAD BALANCE\s*\*/", re.IGNORECASE)

# Texts we cannot classify: syntax errors, lone surrogates (bytes that were not UTF-8, decoded
# with surrogateescape), and expressions nested deeper than the json module's recursion limit.
_UNPARSABLE: Final = (_pg_parser.ParseError, UnicodeEncodeError, RecursionError)


class Dest(enum.Enum):
    """Where a query may go in streaming-replication mode (pgpool's POOL_DEST).

    ``EITHER`` means load-balanceable as far as the query text goes; the caller still sends it
    to the primary inside a writing, failed or SERIALIZABLE transaction, on too much
    replication delay, or with load_balance_mode off. ``BOTH`` goes to every node that takes
    part in the session (transaction control, SET). EXECUTE and DEALLOCATE follow the node(s)
    their PREPARE went to when the caller knows it.
    """

    PRIMARY = "primary"
    BOTH = "both"
    EITHER = "either"


# How demanding a destination is: a batch of several statements goes where its most demanding one must.
DEST_RANK: Final = {Dest.EITHER: 0, Dest.BOTH: 1, Dest.PRIMARY: 2}


class StatementKind(enum.Enum):
    EMPTY = "empty"                     # "" or ";" — JBoss's ping; pgpool treats it as a read
    POOL_COMMAND = "pool_command"       # answered by pgpool-py itself, never sent to a backend
    SELECT = "select"                   # incl. SELECT INTO / FOR UPDATE / writing CTEs (see is_write)
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    MERGE = "merge"
    COPY_TO = "copy_to"
    COPY_FROM = "copy_from"
    TX_BEGIN = "tx_begin"               # BEGIN, START TRANSACTION
    TX_COMMIT = "tx_commit"             # COMMIT, END
    TX_ROLLBACK = "tx_rollback"         # ROLLBACK, ABORT
    SAVEPOINT = "savepoint"
    RELEASE_SAVEPOINT = "release_savepoint"
    ROLLBACK_TO_SAVEPOINT = "rollback_to_savepoint"
    TX_2PC = "tx_2pc"                   # PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED
    SET = "set"                         # SET, RESET, SET TRANSACTION ...
    SHOW = "show"
    DISCARD = "discard"
    PREPARE = "prepare"
    EXECUTE = "execute"
    DEALLOCATE = "deallocate"
    EXPLAIN = "explain"
    LOCK = "lock"
    LISTEN = "listen"
    NOTIFY = "notify"
    UNLISTEN = "unlisten"
    VACUUM = "vacuum"                   # VACUUM and ANALYZE
    CHECKPOINT = "checkpoint"
    LOAD = "load"
    CURSOR = "cursor"                   # DECLARE, FETCH, MOVE, CLOSE
    DDL = "ddl"                         # CREATE/ALTER/DROP/TRUNCATE/GRANT/...
    OTHER = "other"                     # CALL, DO, and unparsable SQL

    @property
    def stats_counter(self) -> str | None:
        """The SHOW POOL_BACKEND_STATS counter pgpool-II bumps (statistics.c stat_count_up)."""
        return _STATS_COUNTER.get(self, "ddl")


_STATS_COUNTER: Final[dict[StatementKind, str | None]] = {
    StatementKind.POOL_COMMAND: None,
    StatementKind.EMPTY: "select",      # pgpool runs a dummy SELECT tree for it
    StatementKind.SELECT: "select",
    StatementKind.INSERT: "insert",
    StatementKind.UPDATE: "update",
    StatementKind.DELETE: "delete",
    **{kind: "other" for kind in (
        StatementKind.TX_BEGIN, StatementKind.TX_COMMIT, StatementKind.TX_ROLLBACK,
        StatementKind.SAVEPOINT, StatementKind.RELEASE_SAVEPOINT,
        StatementKind.ROLLBACK_TO_SAVEPOINT, StatementKind.TX_2PC, StatementKind.SET,
        StatementKind.SHOW, StatementKind.DISCARD, StatementKind.PREPARE, StatementKind.EXECUTE,
        StatementKind.DEALLOCATE, StatementKind.EXPLAIN, StatementKind.LOCK, StatementKind.LISTEN,
        StatementKind.NOTIFY, StatementKind.UNLISTEN, StatementKind.VACUUM,
        StatementKind.CHECKPOINT, StatementKind.LOAD)},
}


_SQL_PREPARED_KINDS: Final = frozenset({StatementKind.PREPARE, StatementKind.EXECUTE, StatementKind.DEALLOCATE})


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one query string (which may hold several statements).

    For a multi-statement string, ``kind``, ``prepared_name``, ``pool_command`` and
    ``terminate_backend_pid`` describe the first statement (pgpool looks only at the first),
    ``dest`` is PRIMARY, ``is_read`` holds only if every statement is a read, and the other
    flags and names are combined over all statements.
    """

    kind: StatementKind
    dest: Dest
    is_read: bool = False           # pgpool's is_select_query() and no writing function
    is_write: bool = True           # sets the "writing transaction" (disable_load_balance_on_write)
    reason: str = ""                # why a SELECT-like query is not load balanced (for DEBUG logs)
    statement_count: int = 1
    tx_start: bool = False          # BEGIN / START TRANSACTION / COMMIT AND CHAIN
    tx_end: bool = False            # COMMIT / END / ROLLBACK / ABORT / PREPARE TRANSACTION
    read_only_tx: bool = False      # BEGIN READ ONLY, SET TRANSACTION READ ONLY, transaction_read_only = on
    serializable: bool = False      # starts or sets SERIALIZABLE isolation
    # Sets the session's default isolation: True to SERIALIZABLE, False to another level or
    # back to the default (SET SESSION CHARACTERISTICS, default_transaction_isolation, RESET).
    session_serializable: bool | None = None
    # BEGIN READ WRITE / BEGIN ... SERIALIZABLE: standbys get a plain BEGIN
    # (pool_need_to_treat_as_if_default_transaction).
    begin_default_on_standby: bool = False
    prepared_name: str | None = None    # PREPARE / EXECUTE / DEALLOCATE name; None for DEALLOCATE ALL
    pool_command: PoolCommand | None = None
    terminate_backend_pid: int | None = None    # SELECT pg_terminate_backend(<pid>)
    tables: tuple[str, ...] = ()                # relations named, "schema.rel" when qualified
    insert_table: tuple[str, ...] = ()          # an INSERT's target: (rel,) or (schema, rel); insert_lock
    created_temp_tables: tuple[str, ...] = ()   # for check_temp_table = trace
    dropped_tables: tuple[str, ...] = ()
    uses_temp_table: bool = False               # set from the temp_tables lookup, never cached
    # Runs code that may create or drop temporary tables unseen: DO, CALL, a writing function
    # (check_temp_table = catalog asks the primary afterwards).
    opaque: bool = False
    parse_error: bool = False                   # unparsable: pgpool sends it to the primary as a write
    # Derived once here rather than per query by the relay: whether the statement changes the
    # session's transaction state or its set of temporary tables, and the counter it bumps.
    changes_session: bool = field(init=False, repr=False, compare=False)
    marks_write: bool = field(init=False, repr=False, compare=False)  # a write the primary runs
    # Changes beyond BEGIN, COMMIT and a write: temporary tables, isolation, opaque code, DDL.
    other_effects: bool = field(init=False, repr=False, compare=False)
    stats_field: str | None = field(init=False, repr=False, compare=False)
    dest_rank: int = field(init=False, repr=False, compare=False)  # DEST_RANK[dest]
    sql_prepared: bool = field(init=False, repr=False, compare=False)  # PREPARE, EXECUTE or DEALLOCATE

    def __post_init__(self) -> None:
        marks_write = self.is_write and self.dest is Dest.PRIMARY
        other = (bool(self.created_temp_tables) or bool(self.dropped_tables) or self.session_serializable is not None
                 or self.serializable or self.opaque or self.kind is StatementKind.DDL)
        object.__setattr__(self, "changes_session", self.tx_start or self.tx_end or marks_write or other)
        object.__setattr__(self, "marks_write", marks_write)
        object.__setattr__(self, "other_effects", other)
        counter = self.kind.stats_counter
        object.__setattr__(self, "stats_field", None if counter is None else counter + "_cnt")
        # Enum members hash in Python code: dictionary and set lookups by them cost per query.
        object.__setattr__(self, "dest_rank", DEST_RANK[self.dest])
        object.__setattr__(self, "sql_prepared", self.kind in _SQL_PREPARED_KINDS)

    @property
    def load_balance_ok(self) -> bool:
        return self.dest is Dest.EITHER

    @property
    def creates_temp_table(self) -> bool:
        return bool(self.created_temp_tables)


@dataclass(frozen=True)
class RoutingSettings:
    """The routing parameters, with pgpool-II's names; lists already split into items."""

    write_function_list: Sequence[str] = ()
    read_only_function_list: Sequence[str] = ()
    primary_routing_query_pattern_list: Sequence[str] = ()
    allow_sql_comments: bool = False
    ignore_leading_white_space: bool = True


FunctionVolatility = Callable[[str], "str | None"]
# function_volatility's answer when it cannot ask now (the primary connection is busy): the
# call counts as writing, and the verdict is not cached, as the next asking may know better.
VOLATILITY_UNKNOWN: Final = "?"
TempTables = Callable[[], AbstractSet[str]]

# Statements whose verdict cannot depend on a literal, so that texts differing only in
# literals (pgbench's "... WHERE aid = 12345") share one verdict through their normalized form.
_SHAPE_SAFE_KINDS: Final = frozenset({
    StatementKind.EMPTY, StatementKind.SELECT, StatementKind.INSERT, StatementKind.UPDATE,
    StatementKind.DELETE, StatementKind.MERGE,
})


class Classifier:
    """Classifies query strings; one per process, reconfigured on reload.

    ``function_volatility(name)`` answers pg_proc.provolatile ('v', 's' or 'i') for a function
    name as written (``f`` or ``schema.f``), or None if there is no such function (pgpool then
    counts it as not volatile), or VOLATILITY_UNKNOWN when it cannot ask now (a verdict that
    depends on that is not cached). It is asked only when both function lists are empty; without
    it every function call counts as writing, since a wrong "read" fails on a standby.
    ``temp_tables()`` returns the session's temporary table names; it is asked on every call,
    outside the cache, for load-balanceable queries that name a relation.

    Five caches, each bounded by ``cache_size``: for ``classify_bytes``, the text's bytes →
    verdict, and the text with its digits zeroed → verdict, for texts whose digits all lie in
    literals; query text → verdict (a hit is a dict lookup); the text with its literals masked
    (``literal_key``) → verdict, so that a new text that differs only in literal values
    (pgbench -S in simple protocol) costs a regular expression instead of PostgreSQL's parser;
    and pglast's normalized text → verdict of the parse tree, for the texts ``literal_key``
    declines (comments, quoted names, $n, ...).  Under load the parser's code is cold in the
    CPU caches: a normalization costs ~12 µs there against ~2 µs in a loop, which is why the
    masked key comes first.
    """

    def __init__(
        self,
        settings: RoutingSettings | None = None,
        *,
        function_volatility: FunctionVolatility | None = None,
        temp_tables: TempTables | None = None,
        cache_size: int = 1024,
    ) -> None:
        self._function_volatility = function_volatility
        self.guessed = False  # the last verdict counted a function as writing without knowing
        self._temp_tables = temp_tables
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self._shapes: OrderedDict[str, Verdict] = OrderedDict()
        self._by_literals: dict[str, Verdict] = {}  # evicted oldest first
        self._by_digits: dict[bytes, Verdict] = {}  # evicted oldest first
        self._by_bytes: dict[bytes, Verdict] = {}  # evicted oldest first
        self.reconfigure(settings or RoutingSettings())

    def reconfigure(self, settings: RoutingSettings) -> None:
        """Apply new settings (a reload) and forget every cached verdict."""
        self.settings = settings
        self._write_functions = _compile_patterns("write_function_list", settings.write_function_list)
        self._read_only_functions = _compile_patterns(
            "read_only_function_list", settings.read_only_function_list)
        self._primary_patterns = _compile_patterns(
            "primary_routing_query_pattern_list", settings.primary_routing_query_pattern_list)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget cached verdicts, e.g. when a function's volatility may have changed."""
        self._cache.clear()
        self._shapes.clear()
        self._by_literals.clear()
        self._by_digits.clear()
        self._by_bytes.clear()

    def classify(self, sql: str) -> Verdict:
        return self._for_session(self._lookup(sql)[0])

    def classify_bytes(self, text: bytes) -> Verdict:
        """
        ``classify`` for a query text as it came from the client (UTF-8, without its NUL),
        decoded only when its digit key is not known yet.

        The digit key is the text with every digit turned into 0: a bytes.translate, ~20 times
        cheaper than ``literal_key``'s regular expression under load.  It is remembered only
        for a text whose digits all lie in literals (its masked key has none left); a text
        with the same digit key then has the same masked key, since masking looks at where
        the digits are and never at their values, and so the same verdict.
        """
        self.guessed = False
        key = text.translate(_DIGITS_AS_ZERO)
        verdict = self._by_digits.get(key)
        if verdict is None:
            verdict = self._by_bytes.get(text)
            if verdict is None:
                verdict, masked = self._lookup(text.decode(errors="replace"))
                if self.guessed:
                    pass  # asked again next time
                elif masked is None:
                    # Seen before as text, or no masked key ($n, comments, quoted names): by itself.
                    _add_bounded(self._by_bytes, text, verdict, self._cache_size)
                elif _DIGIT.search(masked) is None and _shareable(verdict):
                    _add_bounded(self._by_digits, key, verdict, self._cache_size)
        return self._for_session(verdict)

    def _lookup(self, sql: str) -> tuple[Verdict, str | None]:
        """The text's verdict from the caches or the parser, and its masked key (None when
        not computed: a cache hit, or a pattern list in use)."""
        self.guessed = False
        verdict = self._cache.get(sql)
        if verdict is not None:
            self._cache.move_to_end(sql)
            return verdict, None
        # The text rules run on the original text; with a pattern list they may depend on a
        # literal's value, so the masked key is only used without one.
        key = None if self._primary_patterns else literal_key(sql)
        verdict = self._by_literals.get(key) if key is not None else None
        if verdict is None:
            verdict = self._classify_uncached(sql)
            if self.guessed:
                return verdict, None
            _add_bounded(self._cache, sql, verdict, self._cache_size)
            if key is not None and _shareable(verdict):
                _add_bounded(self._by_literals, key, verdict, self._cache_size)
        return verdict, key

    def _for_session(self, verdict: Verdict) -> Verdict:
        """The cached verdict, sent to the primary if it reads one of the session's temporary tables."""
        if verdict.tables and verdict.dest is Dest.EITHER and self._temp_tables is not None:
            # Only unqualified names can be temporary tables (pg_temp.x is caught statically).
            if not self._temp_tables().isdisjoint(verdict.tables):
                return replace(verdict, dest=Dest.PRIMARY, uses_temp_table=True,
                               reason="temporary tables are used")
        return verdict

    def _classify_uncached(self, sql: str) -> Verdict:
        command = parse_pool_command(sql)
        if command is not None:
            return Verdict(StatementKind.POOL_COMMAND, Dest.PRIMARY, is_read=True, is_write=False,
                           pool_command=command)
        try:
            shape = _pg_parser.normalize(sql)
            verdict = self._shapes.get(shape)
            if verdict is None:
                verdict, shareable = self._classify_tree(_parse(sql))
                if shareable and not self.guessed:
                    _add_bounded(self._shapes, shape, verdict, self._cache_size)
            else:
                self._shapes.move_to_end(shape)
        except _UNPARSABLE:
            # pgpool treats it as a write ("Unable to parse the query"); the backend reports the error.
            return Verdict(StatementKind.OTHER, Dest.PRIMARY, parse_error=True,
                           reason="unable to parse the query")
        return self._text_rules(verdict, sql)

    def _classify_tree(self, stmts: list[_Node]) -> tuple[Verdict, bool]:
        """The verdict from the parse tree alone, and whether texts that differ from this one
        only in literals may share it."""
        if not stmts:
            # pgpool replaces an empty query with a dummy SELECT (JBoss pings with it).
            return Verdict(StatementKind.EMPTY, Dest.EITHER, is_read=True, is_write=False), True
        verdicts = [self._statement(stmt["stmt"]) for stmt in stmts]
        shareable = all(v.kind in _SHAPE_SAFE_KINDS and v.terminate_backend_pid is None
                        for v in verdicts)
        return (verdicts[0] if len(verdicts) == 1 else _combine(verdicts)), shareable

    def _text_rules(self, verdict: Verdict, sql: str) -> Verdict:
        """What depends on the text itself rather than on the parse tree."""
        if (verdict.kind in (StatementKind.SELECT, StatementKind.EMPTY) and verdict.is_read
                and verdict.statement_count == 1 and not self._looks_like_select(sql)):
            return replace(verdict, dest=Dest.PRIMARY, is_read=False, is_write=True,
                           reason="the query does not start like a SELECT")
        if verdict.dest is Dest.EITHER:
            if _NO_LOAD_BALANCE.match(sql):
                return replace(verdict, dest=Dest.PRIMARY, reason="/*NO LOAD BALANCE*/ comment")
            text = sql.replace('"', "")     # pgpool's strip_quote()
            if any(pattern.search(text) for pattern in self._primary_patterns):
                return replace(verdict, dest=Dest.PRIMARY,
                               reason="the query matches primary_routing_query_pattern_list")
        return verdict

    def _looks_like_select(self, sql: str) -> bool:
        """pgpool's leading-character rule: without allow_sql_comments a SELECT is load balanced
        only if the text starts with SELECT, WITH, TABLE or "(", so that a leading comment such
        as /*REPLICATION*/ keeps it on the primary."""
        if self.settings.allow_sql_comments:
            return True
        text = sql.lstrip() if self.settings.ignore_leading_white_space else sql
        return not text or text[0] in "sSwWtT(;"

    def _statement(self, stmt: _Node) -> Verdict:
        """One statement: send_to_where() plus is_select_query() and the load-balance checks."""
        ((tag, body),) = stmt.items()
        scan = _Scan(stmt)
        if tag == "SelectStmt":
            dest, is_read, reason = self._select(scan)
            into = body.get("intoClause")
            opaque = not is_read and any(parts[-1] not in _ALWAYS_WRITING_FUNCTIONS for parts in scan.functions)
            return Verdict(StatementKind.SELECT, dest, is_read=is_read, is_write=not is_read,
                           reason=reason, tables=scan.tables, opaque=opaque,
                           created_temp_tables=_temp_names(into["rel"]) if into else (),
                           terminate_backend_pid=scan.terminate_backend_pid)
        if tag == "TransactionStmt":
            return _transaction(body)
        if tag == "VariableSetStmt":
            return _set(body)
        if tag == "VariableShowStmt":
            return Verdict(StatementKind.SHOW, Dest.EITHER, is_read=True, is_write=False)
        if tag == "CopyStmt":
            return self._copy(body, scan)
        if tag == "ExplainStmt":
            return self._explain(body)
        if tag == "PrepareStmt":
            inner = self._statement(body["query"])
            return replace(inner, kind=StatementKind.PREPARE, prepared_name=body["name"],
                           terminate_backend_pid=None)
        if tag == "ExecuteStmt":
            # Provisional: the caller sends it where the PREPARE went (pool_where_to_send).
            return Verdict(StatementKind.EXECUTE, Dest.PRIMARY, prepared_name=body["name"])
        if tag == "DeallocateStmt":
            # DEALLOCATE ALL, or a name the caller does not know, goes to every node.
            return Verdict(StatementKind.DEALLOCATE, Dest.BOTH, prepared_name=body.get("name"))
        if tag == "LockStmt":
            dest = Dest.PRIMARY if body.get("mode", 0) >= _ROW_EXCLUSIVE_LOCK else Dest.BOTH
            return Verdict(StatementKind.LOCK, dest, tables=scan.tables)
        if tag == "DiscardStmt":
            return Verdict(StatementKind.DISCARD, Dest.BOTH)
        relation = body.get("relation", {}) if tag == "InsertStmt" else {}
        relation = relation.get("RangeVar", relation)
        return Verdict(_KIND_BY_TAG.get(tag, StatementKind.DDL), Dest.PRIMARY, tables=scan.tables,
                       opaque=tag in ("DoStmt", "CallStmt"),
                       insert_table=tuple(n for n in (relation.get("schemaname"), relation.get("relname")) if n),
                       created_temp_tables=_created_temp_tables(tag, body),
                       dropped_tables=_dropped_tables(tag, body))

    def _select(self, scan: _Scan) -> tuple[Dest, bool, str]:
        """(dest, is_read, reason) of a SELECT, also one inside PREPARE, EXPLAIN or COPY."""
        if scan.locking_or_into:
            return Dest.PRIMARY, False, "SELECT INTO or FOR UPDATE/SHARE"
        if scan.writing_cte:
            return Dest.PRIMARY, False, "a WITH clause holds a data-modifying statement"
        writing = self._writing_function(scan.functions)
        if writing is not None:
            return Dest.PRIMARY, False, f"writing function {writing} is used"
        if scan.system_catalog:
            return Dest.PRIMARY, True, "systems catalogs are used"
        if scan.pg_temp:
            return Dest.PRIMARY, True, "temporary tables are used"
        return Dest.EITHER, True, ""

    def _copy(self, body: _Node, scan: _Scan) -> Verdict:
        if body.get("is_from"):
            return Verdict(StatementKind.COPY_FROM, Dest.PRIMARY, tables=scan.tables)
        query = body.get("query")
        if "filename" in body or (query is not None and "SelectStmt" not in query):
            # COPY to a server file or program, or COPY (INSERT ... RETURNING) TO.
            return Verdict(StatementKind.COPY_TO, Dest.PRIMARY, tables=scan.tables,
                           reason="COPY TO a file or of a data-modifying statement")
        dest, is_read, reason = self._select(scan)
        return Verdict(StatementKind.COPY_TO, dest, is_read=is_read, is_write=not is_read,
                       reason=reason, tables=scan.tables)

    def _explain(self, body: _Node) -> Verdict:
        inner = self._statement(body["query"])
        analyze = any(_explain_option_on(option["DefElem"], "analyze")
                      for option in body.get("options", ()))
        if inner.kind is StatementKind.SELECT:
            # Plain EXPLAIN runs nothing; EXPLAIN ANALYZE runs the SELECT and its functions.
            is_read = inner.is_read or not analyze
            return Verdict(StatementKind.EXPLAIN, inner.dest, is_read=is_read, is_write=not is_read,
                           reason=inner.reason, tables=inner.tables)
        # EXPLAIN of anything else counts as a read (is_select_query) unless ANALYZE runs it.
        return Verdict(StatementKind.EXPLAIN, Dest.PRIMARY, is_read=not analyze, is_write=analyze,
                       reason="EXPLAIN of a statement other than SELECT", tables=inner.tables)

    def _writing_function(self, functions: Iterable[tuple[str, ...]]) -> str | None:
        """The first function call that writes per pgpool's function_call_walker, or None."""
        for parts in functions:
            name = ".".join(parts[-2:])     # catalog.schema.f → schema.f
            if parts[-1] in _ALWAYS_WRITING_FUNCTIONS:
                return name
            if self._read_only_functions:
                if not any(pattern.search(name) for pattern in self._read_only_functions):
                    return name
            elif self._write_functions:
                if any(pattern.search(name) for pattern in self._write_functions):
                    return name
            elif self._function_volatility is None:
                return name
            else:
                volatility = self._function_volatility(name)
                if volatility == VOLATILITY_UNKNOWN:
                    self.guessed = True
                    return name
                if volatility == "v":
                    return name
        return None


class _Unmaskable(Exception):
    pass


# Literal tokens, and what makes a text unsafe to mask (see literal_key).  Every match starts
# with one character of a class, which lets the regular expression engine skip to candidates
# at C speed (an alternation of the same tokens scanned three times slower); the lookbehinds
# pick the rest of the token by its first character.
_MASKED_TOKEN = re.compile(
    r"""[-'"$\\&/.0-9](?:"""
    r"""(?<=')(?:[^']|'')*'"""                                    # a standard string
    r"""|(?<=[0-9])[0-9]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?"""        # a number
    r"""|(?<=\.)[0-9]+(?:[eE][+-]?[0-9]+)?"""                       # a number starting with "."
    r"""|(?<=-)-|(?<=/)\*"""                                       # a comment
    r"""|(?<=["$\\&]))"""                                          # a quoted name, $, \\, U&''
)
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _touches_name(c: str) -> bool:
    """A character PostgreSQL's lexer may continue a name or number with."""
    return c in _NAME_CHARS or c >= "\x80"


def _mask(match: re.Match[str]) -> str:
    token = match.group()
    first = token[0]
    if first in "0123456789.":
        # Digits that touch a name or another token (t1, x.5, 1abc) are not a number of their own.
        text, start, end = match.string, match.start(), match.end()
        if (start and (_touches_name(text[start - 1]) or text[start - 1] == ".")) or \
                (end < len(text) and (_touches_name(text[end]) or text[end] in ".'")):
            return token
        if "." in token or "e" in token or "E" in token:
            return "$f"
        return "$i" if len(token) < 10 else "$l"  # 10+ digits may be too big for an integer
    if first == "'":
        start = match.start()
        if start and _touches_name(match.string[start - 1]):
            raise _Unmaskable  # E'', B'', X'', N'' strings follow other lexing rules
        return "$s"
    raise _Unmaskable  # a quoted name, dollar quote, backslash, U&'', or a comment


def literal_key(sql: str) -> str | None:
    """The text with every literal replaced by a marker of its kind ($s string, $i integer,
    $f decimal, $l long integer), or None when the text holds something that makes plain
    lexing unsafe: a quoted identifier, a dollar quote or $n parameter, a backslash outside a
    string, a prefixed string (E'', U&'', ...) or a comment.  Strings are read with
    standard_conforming_strings on, as the parser reads them.

    Without those, a quote always opens a standard string and a digit run standing alone is a
    number, and ``$`` appears nowhere else in the key: two texts with one key differ only in
    the values of literals of the same kinds, which no shape-safe verdict depends on.
    """
    try:
        return _MASKED_TOKEN.sub(_mask, sql)
    except _Unmaskable:
        return None


_K = TypeVar("_K", str, bytes)
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_DIGIT: Final = re.compile("[0-9]")


def _shareable(verdict: Verdict) -> bool:
    """Texts that differ only in literal values may share this verdict."""
    return verdict.kind in _SHAPE_SAFE_KINDS and not verdict.parse_error and verdict.terminate_backend_pid is None


def _add_bounded(cache: dict[_K, Verdict], key: _K, verdict: Verdict, limit: int) -> None:
    """Add, evicting the oldest entry (an OrderedDict's least recently used) past ``limit``."""
    cache[key] = verdict
    if len(cache) > limit:
        del cache[next(iter(cache))]


def addressed_to_pgpool_bytes(query_body: bytes) -> bool:
    """The Query's text starts like a pgpool command: pgpool-py answers it (perhaps with an
    error) rather than a backend. ``parse_pool_command`` says which command it is."""
    # Most texts start with a keyword that is not SHOW or PGPOOL: two bytes tell, compared as
    # integers (native in the compiled module), without the regular expression.
    if not query_body:
        return False
    first = query_body[0]
    if first not in _SPACE_OR_COMMENT:
        lower = first | 0x20  # an ASCII letter in lower case (only P, p, S, s give p or s)
        if lower == 0x70:  # p: "pgpool"
            second = 0x67
        elif lower == 0x73:  # s: "show"
            second = 0x68
        else:
            return False
        if len(query_body) < 2 or query_body[1] | 0x20 != second:
            return False
    return _POOL_PREFIX_BYTES.match(query_body[:POOL_PREFIX_WINDOW]) is not None


def is_pool_command(sql: str) -> bool:
    """True if pgpool-py answers this query itself; only a regex match for other queries."""
    return parse_pool_command(sql) is not None


def parse_pool_command(sql: str) -> PoolCommand | None:
    """pgpool's own commands (SHOW POOL_*, PGPOOL SHOW/SET/RESET), or None.

    PostgreSQL's grammar lacks the PGPOOL keyword: the rest of the command is parsed as
    the SHOW/SET/RESET it mirrors. As in pgpool, only the first statement counts.
    """
    if _POOL_PREFIX.match(sql) is None:
        return None
    pgpool = _PGPOOL_COMMAND.match(sql)
    try:
        stmts = _parse(sql if pgpool is None else sql[pgpool.start(1):])
    except _UNPARSABLE:
        return None
    if not stmts:
        return None
    ((tag, body),) = stmts[0]["stmt"].items()
    if pgpool is None:
        if tag == "VariableShowStmt" and body["name"] in POOL_SHOW_NAMES:
            return ("SHOW", body["name"])
        return None
    verb = pgpool.group(1).upper()
    if verb == "SHOW":
        return ("PGPOOL SHOW", body["name"]) if tag == "VariableShowStmt" else None
    if tag != "VariableSetStmt" or body.get("is_local"):
        return None
    kind = body["kind"]
    if kind == "VAR_RESET_ALL" and verb == "RESET":
        return ("PGPOOL RESET", "all")
    if (kind, verb) in (("VAR_RESET", "RESET"), ("VAR_SET_DEFAULT", "SET")):
        return ("PGPOOL RESET", body["name"])
    if kind == "VAR_SET_VALUE" and verb == "SET":
        values = [_const_text(arg) for arg in body.get("args", ())]
        if None not in values:
            return ("PGPOOL SET", body["name"], ", ".join(v for v in values if v is not None))
    return None


# -- helpers over pglast's JSON tree ---------------------------------------------------------

def _parse(sql: str) -> list[_Node]:
    # The JSON form is about 5x faster to get than pglast's Python AST objects.
    stmts: list[_Node] = json.loads(_pg_parser.parse_sql_json(sql))["stmts"]
    return stmts


class _Scan:
    """One walk over a statement's tree, collecting what routing asks about
    (pgpool's select walkers: relations, function calls, INTO/locking clauses, CTEs)."""

    __slots__ = ("tables", "functions", "locking_or_into", "writing_cte", "system_catalog",
                 "pg_temp", "terminate_backend_pid")

    def __init__(self, root: _Node) -> None:
        tables: dict[str, None] = {}
        self.functions: list[tuple[str, ...]] = []
        self.locking_or_into = self.writing_cte = self.system_catalog = self.pg_temp = False
        self.terminate_backend_pid: int | None = None
        stack: list[_Node] = [root]
        pop, push = stack.pop, stack.append
        while stack:
            node = pop()
            if "relname" in node:   # a RangeVar, wrapped or not
                schema, relname = node.get("schemaname"), node["relname"]
                tables[f"{schema}.{relname}" if schema else relname] = None
                if schema == "pg_catalog" or (schema is None and relname.startswith("pg_")):
                    self.system_catalog = True
                elif schema == "pg_temp":
                    self.pg_temp = True
            elif "FuncCall" in node:
                self._function(node["FuncCall"])
            elif "LockingClause" in node or "intoClause" in node:
                self.locking_or_into = True
            elif "CommonTableExpr" in node and "SelectStmt" not in node["CommonTableExpr"]["ctequery"]:
                self.writing_cte = True
            # pglast's JSON wraps every list element in a node, so lists hold only dicts.
            for value in node.values():
                if type(value) is dict:
                    push(value)
                elif type(value) is list:
                    for item in value:
                        push(item)
        self.tables = tuple(tables)

    def _function(self, call: _Node) -> None:
        parts = tuple(part["String"]["sval"] for part in call["funcname"])
        self.functions.append(parts)
        args = call.get("args", ())
        if (parts[-1] == "pg_terminate_backend" and self.terminate_backend_pid is None
                and 1 <= len(args) <= 2 and "A_Const" in args[0]):
            pid = args[0]["A_Const"].get("ival")
            if pid is not None:
                self.terminate_backend_pid = pid.get("ival", 0)


_KIND_BY_TAG: Final = {
    "InsertStmt": StatementKind.INSERT,
    "UpdateStmt": StatementKind.UPDATE,
    "DeleteStmt": StatementKind.DELETE,
    "MergeStmt": StatementKind.MERGE,
    "ListenStmt": StatementKind.LISTEN,
    "NotifyStmt": StatementKind.NOTIFY,
    "UnlistenStmt": StatementKind.UNLISTEN,
    "VacuumStmt": StatementKind.VACUUM,
    "CheckPointStmt": StatementKind.CHECKPOINT,
    "LoadStmt": StatementKind.LOAD,
    "DeclareCursorStmt": StatementKind.CURSOR,
    "FetchStmt": StatementKind.CURSOR,
    "ClosePortalStmt": StatementKind.CURSOR,
    "CallStmt": StatementKind.OTHER,
    "DoStmt": StatementKind.OTHER,
}

_TX_KIND: Final = {
    "TRANS_STMT_BEGIN": StatementKind.TX_BEGIN,
    "TRANS_STMT_START": StatementKind.TX_BEGIN,
    "TRANS_STMT_COMMIT": StatementKind.TX_COMMIT,
    "TRANS_STMT_ROLLBACK": StatementKind.TX_ROLLBACK,
    "TRANS_STMT_SAVEPOINT": StatementKind.SAVEPOINT,
    "TRANS_STMT_RELEASE": StatementKind.RELEASE_SAVEPOINT,
    "TRANS_STMT_ROLLBACK_TO": StatementKind.ROLLBACK_TO_SAVEPOINT,
    "TRANS_STMT_PREPARE": StatementKind.TX_2PC,
    "TRANS_STMT_COMMIT_PREPARED": StatementKind.TX_2PC,
    "TRANS_STMT_ROLLBACK_PREPARED": StatementKind.TX_2PC,
}


def _transaction(body: _Node) -> Verdict:
    kind = _TX_KIND[body["kind"]]
    if kind is StatementKind.TX_BEGIN:
        read_only, serializable = _transaction_modes(body.get("options", ()))
        return Verdict(kind, Dest.BOTH, is_write=False, tx_start=True,
                       read_only_tx=read_only is True, serializable=serializable,
                       begin_default_on_standby=read_only is False or serializable)
    if kind in (StatementKind.TX_COMMIT, StatementKind.TX_ROLLBACK):
        return Verdict(kind, Dest.BOTH, is_write=False, tx_end=True, tx_start=bool(body.get("chain")))
    if kind is StatementKind.ROLLBACK_TO_SAVEPOINT:
        return Verdict(kind, Dest.BOTH, is_write=False)
    if kind is StatementKind.TX_2PC:
        # Two-phase commit exists on the primary only; PREPARE TRANSACTION ends the transaction.
        return Verdict(kind, Dest.PRIMARY, tx_end=body["kind"] == "TRANS_STMT_PREPARE")
    return Verdict(kind, Dest.BOTH)     # SAVEPOINT, RELEASE: writes for pgpool's bookkeeping


def _set(body: _Node) -> Verdict:
    """SET goes to every node, except what only the primary can do (send_to_where)."""
    kind, name = body["kind"], body.get("name")
    read_only: bool | None = None
    serializable = False
    session: bool | None = None  # Verdict.session_serializable
    if kind == "VAR_RESET_ALL" or (kind in ("VAR_RESET", "VAR_SET_DEFAULT")
                                   and name == "default_transaction_isolation" and not body.get("is_local")):
        session = False
    elif kind == "VAR_SET_VALUE" and name == "transaction_read_only":
        values = {(_const_text(arg) or "").lower() for arg in body.get("args", ())}
        read_only = False if values & _FALSE_WORDS else True if values & _TRUE_WORDS else None
    elif kind == "VAR_SET_VALUE" and name in ("transaction_isolation", "default_transaction_isolation"):
        serializable = any((_const_text(arg) or "").lower() == "serializable"
                           for arg in body.get("args", ()))
        if name == "default_transaction_isolation" and not body.get("is_local"):
            session = serializable
    elif kind == "VAR_SET_MULTI" and name in ("TRANSACTION", "SESSION CHARACTERISTICS"):
        read_only, serializable = _transaction_modes(body.get("args", ()))
        if name == "SESSION CHARACTERISTICS" and any(
                arg["DefElem"]["defname"] == "transaction_isolation" for arg in body.get("args", ())):
            session = serializable
    dest = Dest.PRIMARY if read_only is False or serializable else Dest.BOTH
    # SET TRANSACTION READ ONLY and its variants do not make the transaction a writing one.
    return Verdict(StatementKind.SET, dest, is_write=read_only is not True,
                   read_only_tx=read_only is True, serializable=serializable, session_serializable=session)


def _transaction_modes(options: Iterable[_Node]) -> tuple[bool | None, bool]:
    """(READ ONLY → True / READ WRITE → False / neither → None, SERIALIZABLE?) of
    BEGIN/START TRANSACTION/SET TRANSACTION options."""
    read_only: bool | None = None
    serializable = False
    for option in options:
        elem = option["DefElem"]
        if elem["defname"] == "transaction_read_only":
            read_only = _const_text(elem["arg"]) not in _FALSE_WORDS
        elif elem["defname"] in ("transaction_isolation", "default_transaction_isolation"):
            serializable = (_const_text(elem["arg"]) or "").lower() == "serializable"
    return read_only, serializable


def _explain_option_on(elem: _Node, name: str) -> bool:
    if elem["defname"] != name:
        return False
    arg = elem.get("arg")
    return arg is None or (_const_text(arg) or "").lower() not in _FALSE_WORDS


def _const_text(node: _Node) -> str | None:
    """The text of a constant as SET would see it (flatten_set_variable_args), else None."""
    if "String" in node:    # EXPLAIN options carry bare String nodes
        return str(node["String"].get("sval", ""))
    const = node.get("A_Const")
    if const is None:
        return None
    # pglast's JSON leaves out zero and empty values.
    if "sval" in const:
        return str(const["sval"].get("sval", ""))
    if "ival" in const:
        return str(const["ival"].get("ival", 0))
    if "fval" in const:
        return str(const["fval"].get("fval", "0"))
    if "boolval" in const:
        return "true" if const["boolval"].get("boolval") else "false"
    return None


def _temp_names(relation: _Node) -> tuple[str, ...]:
    temporary = relation.get("relpersistence") == "t" or relation.get("schemaname") == "pg_temp"
    return (relation["relname"],) if temporary else ()


# The field holding the created relation, per statement.
_CREATED_RELATION: Final = {"CreateStmt": "relation", "ViewStmt": "view", "CreateSeqStmt": "sequence"}


def _created_temp_tables(tag: str, body: _Node) -> tuple[str, ...]:
    """CREATE TEMP TABLE/VIEW/SEQUENCE and CREATE TEMP TABLE ... AS (check_temp_table = trace)."""
    if tag == "CreateTableAsStmt":
        return _temp_names(body["into"]["rel"])
    field = _CREATED_RELATION.get(tag)
    return _temp_names(body[field]) if field else ()


def _dropped_tables(tag: str, body: _Node) -> tuple[str, ...]:
    if tag != "DropStmt" or body["removeType"] not in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_SEQUENCE"):
        return ()
    return tuple(".".join(part["String"]["sval"] for part in obj["List"]["items"])
                 for obj in body.get("objects", ()))


def _combine(verdicts: list[Verdict]) -> Verdict:
    """A multi-statement query goes to the primary as a whole (pool_where_to_send)."""
    first = verdicts[0]
    return Verdict(
        first.kind, Dest.PRIMARY,
        is_read=all(v.is_read for v in verdicts),
        is_write=any(v.is_write for v in verdicts),
        reason="multi-statement query",
        statement_count=len(verdicts),
        tx_start=any(v.tx_start for v in verdicts),
        tx_end=any(v.tx_end for v in verdicts),
        read_only_tx=any(v.read_only_tx for v in verdicts),
        serializable=any(v.serializable for v in verdicts),
        prepared_name=first.prepared_name,
        terminate_backend_pid=first.terminate_backend_pid,
        tables=tuple(dict.fromkeys(t for v in verdicts for t in v.tables)),
        created_temp_tables=tuple(t for v in verdicts for t in v.created_temp_tables),
        opaque=any(v.opaque for v in verdicts),
        dropped_tables=tuple(t for v in verdicts for t in v.dropped_tables),
    )


def _compile_patterns(parameter: str, items: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """pgpool's add_regex_pattern(): anchored with ^ and $ unless given, case-insensitive
    (POSIX extended regexes; Python's syntax agrees for the usual ones). A bad pattern is
    reported and skipped, as pgpool does."""
    patterns = []
    for item in items:
        if not item:
            continue
        text = ("" if item.startswith("^") else "^") + item + ("" if item.endswith("$") else "$")
        try:
            patterns.append(re.compile(text, re.IGNORECASE | re.DOTALL))
        except re.error:
            log.warning('unable to add regex pattern for "%s", invalid pattern: "%s"', parameter, text)
    return tuple(patterns)
