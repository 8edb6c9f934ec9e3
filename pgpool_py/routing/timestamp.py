"""
Native replication: the current time made a constant before a statement reaches every node
(pgpool-II's rewrite_timestamp).

Each node evaluates ``now()``, ``CURRENT_TIMESTAMP``, ``'now'::date`` and the like at its own
moment, so ``INSERT INTO t VALUES (now())`` would store a different value on every node, and so
would an INSERT that leaves a ``DEFAULT now()`` column out.  The statement is rewritten with
the main node's transaction timestamp as a literal, and the defaults that read the clock are
written out with that literal in them.  Only statements whose effects are kept are rewritten:
INSERT, UPDATE, DELETE, MERGE, COPY, SELECT INTO and writing SELECTs, CREATE TABLE AS, CALL,
EXECUTE's parameters and EXPLAIN ANALYZE of those; never a definition (a column default, a
view, a PREPARE), where the clock must be read when it runs.

The rewritten text comes from pglast's deparser, so comments are dropped; a text that fails
to parse or deparse is sent as the client wrote it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast
from pglast.enums.primnodes import SQLValueFunctionOp
from pglast.stream import RawStream

log = logging.getLogger(__name__)

# Words one of which a text must contain to read the clock (CURRENT_TIMESTAMP includes
# "current_time"); checked on the lower-cased bytes before anything is parsed.
CLOCK_WORDS = (b"now", b"current_date", b"current_time", b"localtime", b"transaction_timestamp")

# The main node's transaction timestamp as an ISO 8601 literal in UTC: read the same way
# whatever each node's DateStyle and TimeZone.
TIMESTAMP_QUERY = ("SELECT pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', "
                   "'YYYY-MM-DD HH24:MI:SS.US') || '+00'")

# Stands for the timestamp in a rewritten text kept for later (a prepared statement's).
MARKER = "pgpool-py:clock"

_NOW_FUNCTIONS = {("now",), ("pg_catalog", "now"), ("transaction_timestamp",),
                  ("pg_catalog", "transaction_timestamp")}
_TIME_TYPES = frozenset({("date",), ("timestamp",), ("timestamptz",), ("time",), ("timetz",)})  # last name
# CURRENT_DATE and friends: the type their value has (SQLValueFunction's op).
_SVF_TYPES = {
    SQLValueFunctionOp.SVFOP_CURRENT_DATE: "date",
    SQLValueFunctionOp.SVFOP_CURRENT_TIME: "timetz",
    SQLValueFunctionOp.SVFOP_CURRENT_TIME_N: "timetz",
    SQLValueFunctionOp.SVFOP_CURRENT_TIMESTAMP: "timestamptz",
    SQLValueFunctionOp.SVFOP_CURRENT_TIMESTAMP_N: "timestamptz",
    SQLValueFunctionOp.SVFOP_LOCALTIME: "time",
    SQLValueFunctionOp.SVFOP_LOCALTIME_N: "time",
    SQLValueFunctionOp.SVFOP_LOCALTIMESTAMP: "timestamp",
    SQLValueFunctionOp.SVFOP_LOCALTIMESTAMP_N: "timestamp",
}


def columns_query(table: tuple[str, ...]) -> str:
    """A table's columns in order, each with its default expression (NULL: none, or generated)."""
    name = ".".join('"' + part.replace('"', '""') + '"' for part in table)
    return ("SELECT a.attname, CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END"
            " FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d"
            " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE a.attrelid = pg_catalog.to_regclass('" + name.replace("'", "''") + "')"
            " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")


@dataclass(frozen=True)
class TableClock:
    """What an INSERT or UPDATE of a table needs: its columns in order, and for those whose
    default reads the clock, the default expression."""

    columns: tuple[str, ...]
    clock_defaults: dict[str, str]


NO_CLOCK = TableClock((), {})


def table_clock(rows: list[list[str | None]]) -> TableClock:
    """A TableClock from the rows of ``columns_query``."""
    columns: list[str] = []
    defaults: dict[str, str] = {}
    for name, default in rows:
        assert name is not None
        columns.append(name)
        if default is not None and may_read_clock(default.lower().encode()):
            defaults[name] = default
    return TableClock(tuple(columns), defaults) if defaults else NO_CLOCK


def may_read_clock(lowered: bytes) -> bool:
    """Whether a statement's lower-cased text may read the clock (a cheap test before parsing)."""
    return any(word in lowered for word in CLOCK_WORDS)


TableKey = tuple[str, ...]
# pglast's AST nodes: their attributes are all Optional in its type hints, whatever the node
# kind guarantees, so the walk below takes them as Any.
Tree = Any


class _Rewrite:
    """One rewrite: the timestamp asked for at most once, when first needed."""

    def __init__(self, timestamp: Callable[[], str | None], clock_of: Callable[[TableKey], TableClock]) -> None:
        self._timestamp = timestamp
        self._ts: str | None = None
        self.clock_of = clock_of
        self.changed = False
        self.failed = False

    def constant(self, type_name: str, typmods: tuple[ast.Node, ...] | None = None) -> ast.Node | None:
        """The timestamp as a literal of a time type: 'ts'::timestamptz, cast on to ``type_name``."""
        if self._ts is None:
            self._ts = self._timestamp()
            if self._ts is None:
                self.failed = True
                return None
        value: ast.Node = ast.TypeCast(arg=ast.A_Const(val=ast.String(sval=self._ts)),
                                       typeName=_type("timestamptz", None))
        if type_name != "timestamptz" or typmods:
            value = ast.TypeCast(arg=value, typeName=_type(type_name, typmods))
        self.changed = True
        return value

    # --------------------------------------------------------------- the walk

    def expression(self, node: object) -> object:
        """``node`` with every reading of the clock in it replaced (lists and tuples walked)."""
        if isinstance(node, tuple):
            return tuple(self.expression(item) for item in node)
        if not isinstance(node, ast.Node):
            return node
        replaced = self._replacement(node)
        if replaced is not None:
            return replaced
        self._children(node)
        return node

    def _children(self, node: Tree) -> None:
        for name in node:  # a Node iterates over its attribute names
            value = getattr(node, name)
            if isinstance(value, (ast.Node, tuple)):
                setattr(node, name, self.expression(value))

    def _replacement(self, node: Tree) -> Tree:
        kind = type(node)
        if kind is ast.InsertStmt:  # also in a WITH
            self.insert(node)
            return node
        if kind is ast.UpdateStmt:
            self._children(node)
            self.update_defaults(node)
            return node
        if kind is ast.FuncCall:
            if not node.args and _names(node.funcname) in _NOW_FUNCTIONS:
                return self.constant("timestamptz")
        elif kind is ast.SQLValueFunction:
            type_name = _SVF_TYPES.get(node.op)
            if type_name is not None:
                typmods = (ast.A_Const(val=ast.Integer(ival=node.typmod)),) if node.typmod >= 0 else None
                return self.constant(type_name, typmods)
        elif kind is ast.TypeCast and _type_name(node) in _TIME_TYPES:
            inner: Tree = node.arg
            if type(inner) is ast.TypeCast and _type_name(inner) == ("text",):
                inner = inner.arg
            if _is_now_string(inner):
                # 'now'::date, 'now'::text::timestamp: the constant, cast to the same type.
                value = self.constant("timestamptz")
                if value is not None:
                    node.arg = value
                return node
        return None

    # --------------------------------------------------------------- statements

    def statement(self, stmt: Tree) -> None:
        if isinstance(stmt, _REWRITTEN):
            self.expression(stmt)
        elif isinstance(stmt, ast.CreateTableAsStmt):
            if stmt.objtype == pglast.enums.ObjectType.OBJECT_TABLE:  # a materialized view keeps its query
                self.expression(stmt.query)
        elif isinstance(stmt, ast.ExplainStmt):
            if any(isinstance(opt, ast.DefElem) and opt.defname == "analyze" for opt in stmt.options or ()):
                self.statement(stmt.query)

    def insert(self, stmt: Tree) -> None:
        for name in ("withClause", "onConflictClause", "returningClause", "selectStmt"):
            value = getattr(stmt, name)
            if value is not None:
                setattr(stmt, name, self.expression(value))
        select = stmt.selectStmt
        from_query = select is not None and not (isinstance(select, ast.SelectStmt) and select.valuesLists)
        if from_query and not stmt.cols:
            return  # INSERT INTO t SELECT ...: which columns it fills is not known here
        table = self.clock_of(_table_key(stmt.relation))
        if not table.clock_defaults:
            return
        if from_query:
            # INSERT INTO t (a) SELECT ...: the query's rows get the left-out columns' defaults
            # as extra output columns (pgpool-II leaves them to each node).  Not around a UNION
            # and the like: as a subquery, its untyped literals would turn into text.
            if not isinstance(select, ast.SelectStmt) or select.targetList is None:
                return
            named = [target.name for target in stmt.cols]
            added = [col for col in table.columns if col in table.clock_defaults and col not in named]
            if added:
                stmt.cols = tuple(stmt.cols) + tuple(ast.ResTarget(name=col) for col in added)
                select.targetList = tuple(select.targetList) + tuple(
                    ast.ResTarget(val=self._default(col, ast.SetToDefault(), table)) for col in added)
            return
        if select is None:  # DEFAULT VALUES
            select = stmt.selectStmt = ast.SelectStmt(valuesLists=((),))
            stmt.cols = None
        if stmt.cols:
            named = [target.name for target in stmt.cols]
            added = [col for col in table.columns if col in table.clock_defaults and col not in named]
            stmt.cols = tuple(stmt.cols) + tuple(ast.ResTarget(name=col) for col in added)
        else:
            # Values fill the columns in order; those left out (the last ones) take defaults.
            last = max(table.columns.index(col) for col in table.clock_defaults)
            named = list(table.columns)
            added = []
            rows = select.valuesLists
            width = max(len(row) for row in rows) if rows else 0
            if width <= last:
                added = named[width : last + 1]
                named = named[:width]
        rows = []
        for row in select.valuesLists:
            values = [self._default(col, value, table) for col, value in zip(named, row)]
            values.extend(self._default(col, ast.SetToDefault(), table) for col in added)
            rows.append(tuple(values))
        select.valuesLists = tuple(rows)

    def update_defaults(self, stmt: Tree) -> None:
        if not any(isinstance(target.val, ast.SetToDefault) for target in stmt.targetList):
            return
        table = self.clock_of(_table_key(stmt.relation))
        for target in stmt.targetList:
            if isinstance(target.val, ast.SetToDefault):
                target.val = self._default(target.name, target.val, table)

    def _default(self, column: str, value: Tree, table: TableClock) -> Tree:
        """A DEFAULT of a column whose default reads the clock: the default, with the constant."""
        default = table.clock_defaults.get(column)
        if default is None or not isinstance(value, ast.SetToDefault):
            return value
        self.changed = True
        select: Tree = pglast.parse_sql("SELECT " + default)[0].stmt
        return self.expression(select.targetList[0].val)


def rewrite(sql: str, timestamp: Callable[[], str | None],
            clock_of: Callable[[TableKey], TableClock]) -> str | None:
    """
    ``sql`` with the clock read once, on the main node: ``timestamp()`` gives the literal
    (None if it could not be read), ``clock_of(table)`` a table's clock defaults.  None when
    nothing needs to change or the text cannot be rewritten.
    """
    try:
        stmts = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None  # PostgreSQL reports the error
    work = _Rewrite(timestamp, clock_of)
    for raw in stmts:
        work.statement(raw.stmt)
    if not work.changed or work.failed:
        return None
    try:
        return RawStream()(stmts)
    except Exception as exc:  # the deparser lacks a construct: keep the client's text
        log.warning("could not rewrite the timestamps of a statement (%s); it is sent as written", exc)
        return None


# Statements rewritten throughout (a SELECT is sent to every node only when it writes: SELECT
# INTO, a writing function).  CREATE TABLE AS and EXPLAIN ANALYZE: see _Rewrite.statement.
_REWRITTEN = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.CallStmt, ast.ExecuteStmt,
              ast.CopyStmt, ast.SelectStmt)


def _table_key(relation: Tree) -> TableKey:
    schema: str | None = relation.schemaname
    name: str = relation.relname
    return (schema, name) if schema else (name,)


def _type_name(cast: Tree) -> tuple[str, ...]:
    """A TypeCast's type, its last name only ((), if it has none)."""
    return _names(cast.typeName.names)[-1:]


def _names(names: Tree) -> tuple[str, ...]:
    return tuple(str(part.sval) for part in names or () if type(part) is ast.String)


def _type(name: str, typmods: tuple[ast.Node, ...] | None) -> ast.TypeName:
    return ast.TypeName(names=(ast.String(sval="pg_catalog"), ast.String(sval=name)), typmods=typmods)


def _is_now_string(node: Tree) -> bool:
    value: Tree = node.val if type(node) is ast.A_Const else None
    return type(value) is ast.String and str(value.sval).strip().lower() == "now"


class ClockCache:
    """Each child's tables and their clock defaults, kept across sessions like pgpool-II's
    relation cache: for ``relcache_expire`` seconds (0: until a DDL statement passes through
    this child), at most ``relcache_size`` tables."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, TableKey], tuple[float, TableClock]] = {}

    def get(self, database: str, table: TableKey, expire: int) -> TableClock | None:
        entry = self._entries.get((database, table))
        if entry is None or (expire > 0 and time.monotonic() - entry[0] > expire):
            return None
        return entry[1]

    def put(self, database: str, table: TableKey, clock: TableClock, size: int) -> None:
        entries = self._entries
        entries.pop((database, table), None)
        while entries and len(entries) >= max(size, 1):
            del entries[next(iter(entries))]  # the oldest
        entries[(database, table)] = (time.monotonic(), clock)

    def clear(self) -> None:
        self._entries.clear()
