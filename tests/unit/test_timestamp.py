"""Native replication's clock rewrite (pgpool_py.routing.timestamp), after pgpool-II's
regression test 010.rewrite_timestamp: the same statements, with a table whose c2 and c4
default to the clock."""

from __future__ import annotations

import time

import pytest

from pgpool_py.routing import timestamp

TS = "2009-01-01 23:59:59.123456+00"
NOW = f"CAST('{TS}' AS timestamp with time zone)"


def _as(type_sql: str) -> str:
    return f"CAST({NOW} AS {type_sql})"


REL1 = timestamp.table_clock([["c1", None], ["c2", "now()"], ["c3", "nextval('s'::regclass)"],
                              ["c4", "('now'::text)::date"]])
C4 = f"CAST({NOW} AS date)"  # c4's default, the clock made a constant


def _rewrite(sql: str) -> str | None:
    asked: list[str] = []

    def clock() -> str:
        asked.append(TS)
        return TS

    result = timestamp.rewrite(sql, clock, lambda table: REL1 if table == ("rel1",) else timestamp.NO_CLOCK)
    assert len(asked) <= 1, "the timestamp is read once per statement text"
    return result


@pytest.mark.parametrize(("sql", "expected"), [
    ("INSERT INTO rel1 DEFAULT VALUES", f"INSERT INTO rel1 VALUES (DEFAULT, {NOW}, DEFAULT, {C4})"),
    ("INSERT INTO rel2 DEFAULT VALUES", None),
    ("INSERT INTO rel2(c1) VALUES(1)", None),
    ("INSERT INTO rel1 VALUES(1, now(), 2, CURRENT_DATE)", f"INSERT INTO rel1 VALUES (1, {NOW}, 2, {_as('pg_catalog.date')})"),
    ("INSERT INTO rel1 VALUES(3, CURRENT_TIMESTAMP, 4, CURRENT_TIME)",
     f"INSERT INTO rel1 VALUES (3, {NOW}, 4, {_as('time with time zone')})"),
    ("INSERT INTO rel1 VALUES(5, CURRENT_TIMESTAMP(0), 6, CURRENT_TIME(0))",
     f"INSERT INTO rel1 VALUES (5, {_as('timestamp(0) with time zone')}, 6, {_as('time(0) with time zone')})"),
    ("INSERT INTO rel1 VALUES(7, LOCALTIMESTAMP, 8, LOCALTIME)",
     f"INSERT INTO rel1 VALUES (7, {_as('timestamp')}, 8, {_as('time')})"),
    ("INSERT INTO rel1 VALUES(11, DEFAULT)", f"INSERT INTO rel1 VALUES (11, {NOW}, DEFAULT, {C4})"),
    ("INSERT INTO rel1(c3) VALUES(1)", f"INSERT INTO rel1 (c3, c2, c4) VALUES (1, {NOW}, {C4})"),
    ("INSERT INTO rel1(c2, c1) VALUES(DEFAULT, 3), (DEFAULT, 4), ('2009-1-1', 5)",
     f"INSERT INTO rel1 (c2, c1, c4) VALUES ({NOW}, 3, {C4}), ({NOW}, 4, {C4}), ('2009-1-1', 5, {C4})"),
    ("INSERT INTO rel1(c1, c2, c4) VALUES(1, '2009-1-1', '2009-2-2')", None),
    ("INSERT INTO rel1 (c1) SELECT g FROM generate_series(1, 2) g",
     f"INSERT INTO rel1 (c1, c2, c4) SELECT g, {NOW}, {C4} FROM generate_series(1, 2) AS g"),
    ("INSERT INTO rel1 (c1) SELECT 1 UNION SELECT 2", None),  # as pgpool-II: left to each node
    ("UPDATE rel1 SET c1 = DEFAULT, c2 = DEFAULT", f"UPDATE rel1 SET c1 = DEFAULT, c2 = {NOW}"),
    ("UPDATE rel1 SET c4 = 'now'::text::date WHERE c2 < now() - interval '1 day'",
     f"UPDATE rel1 SET c4 = {C4} WHERE c2 < {NOW} - CAST('1 day' AS interval)"),
    ("DELETE FROM rel1 WHERE c1 = CURRENT_DATE", f"DELETE FROM rel1 WHERE c1 = {_as('pg_catalog.date')}"),
    ("EXECUTE q (pg_catalog.now())", f"EXECUTE q({NOW})"),
    ("WITH w AS (INSERT INTO rel1 (c1) VALUES (1) RETURNING c2) SELECT * FROM w",
     f"WITH w AS (INSERT INTO rel1 (c1, c2, c4) VALUES (1, {NOW}, {C4}) RETURNING c2) SELECT * FROM w"),
    ("CREATE TABLE t1 AS SELECT now()", f"CREATE TABLE t1 AS SELECT {NOW}"),
    ("EXPLAIN ANALYZE DELETE FROM rel1 WHERE c2 < now()", f"EXPLAIN (analyze) DELETE FROM rel1 WHERE c2 < {NOW}"),
    # Definitions keep reading the clock when they run.
    ("CREATE TABLE t2 (a timestamptz DEFAULT now())", None),
    ("ALTER TABLE rel1 ALTER c2 SET DEFAULT now()", None),
    ("CREATE MATERIALIZED VIEW v AS SELECT now()", None),
    ("PREPARE q AS INSERT INTO rel1 VALUES (1, now())", None),
    ("EXPLAIN DELETE FROM rel1 WHERE c2 < now()", None),
    ("SELECT statement_timestamp() INTO t3", None),  # only the transaction's own time is made constant
    ("INSERT INTO rel1 VALUES (now(", None),  # PostgreSQL reports the syntax error
])
def test_rewrite_like_pgpool_ii(sql: str, expected: str | None) -> None:
    assert _rewrite(sql) == expected


def test_the_timestamp_is_asked_only_when_the_clock_is_read() -> None:
    def clock() -> str:
        raise AssertionError("asked for the timestamp")

    assert timestamp.rewrite("INSERT INTO rel2 VALUES (1)", clock, lambda table: timestamp.NO_CLOCK) is None


def test_no_rewrite_when_the_timestamp_cannot_be_read() -> None:
    assert timestamp.rewrite("INSERT INTO rel2 VALUES (now())", lambda: None, lambda table: timestamp.NO_CLOCK) is None


def test_table_clock_keeps_only_defaults_that_read_the_clock() -> None:
    clock = timestamp.table_clock([["id", "nextval('t_id_seq'::regclass)"], ["at", "CURRENT_TIMESTAMP"],
                                   ["n", "0"], ["g", None]])
    assert clock.columns == ("id", "at", "n", "g") and clock.clock_defaults == {"at": "CURRENT_TIMESTAMP"}
    assert timestamp.table_clock([["id", None]]) is timestamp.NO_CLOCK


def test_clock_cache_expires_and_keeps_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = timestamp.ClockCache()
    cache.put("db", ("a",), REL1, size=2)
    cache.put("db", ("b",), timestamp.NO_CLOCK, size=2)
    assert cache.get("db", ("a",), expire=0) is REL1 and cache.get("other", ("a",), expire=0) is None
    cache.put("db", ("c",), REL1, size=2)
    assert cache.get("db", ("a",), expire=0) is None, "the oldest goes first"
    later = time.monotonic() + 61
    monkeypatch.setattr(timestamp.time, "monotonic", lambda: later)
    assert cache.get("db", ("b",), expire=60) is None and cache.get("db", ("b",), expire=0) is timestamp.NO_CLOCK
