"""Query classification (pgpool_py.routing.classify)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpool_py.routing import (
    POOL_SHOW_NAMES,
    Classifier,
    Dest,
    RoutingSettings,
    StatementKind,
    is_pool_command,
    parse_pool_command,
)
from pgpool_py.routing import classify as classify_module
from pgpool_py.routing.classify import literal_key

K = StatementKind
PRIMARY, BOTH, EITHER = Dest.PRIMARY, Dest.BOTH, Dest.EITHER

# pg_proc.provolatile of the functions the tests call, as a backend would answer.
VOLATILITY = {
    "f_vol": "v", "public.f_vol": "v", "f_stab": "s", "public.f_stab": "s",
    "f1": "v", "public.f1": "v", "f2": "v", "public.f2": "v",
    "f3": "s", "public.f3": "s", "f4": "s", "public.f4": "s",
    "count": "i", "now": "s", "pg_catalog.now": "s", "txid_current": "s",
    "currval": "v", "lastval": "v", "random": "v", "pg_terminate_backend": "v",
}


def classifier(**kw: object) -> Classifier:
    return Classifier(RoutingSettings(**kw), function_volatility=VOLATILITY.get)  # type: ignore[arg-type]


# Where pgpool-II 4.3.5 sent each query, observed on this machine (streaming mode, node 0
# primary with weight 0, node 1 a "standby" with weight 1, log_per_node_statement, default
# settings, f_vol VOLATILE and f_stab STABLE). Only node 0 → PRIMARY; only node 1 → EITHER;
# both → BOTH. COMMIT/ROLLBACK/ROLLBACK TO reached only node 0 there because the probe
# session had no transaction on node 1; pgpool's send_to_where() says BOTH for them.
PGPOOL_435 = [
    ("SELECT 1", EITHER, K.SELECT),
    ("select 1", EITHER, K.SELECT),
    ("  SELECT 1", EITHER, K.SELECT),
    ("(SELECT 1)", EITHER, K.SELECT),
    ("TABLE t1", EITHER, K.SELECT),
    ("WITH x AS (SELECT 1) SELECT * FROM x", EITHER, K.SELECT),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 3) SELECT * FROM r",
     EITHER, K.SELECT),
    ("SELECT 1 UNION SELECT 2", EITHER, K.SELECT),
    ("SELECT * FROM t1 t JOIN t1 u ON true", EITHER, K.SELECT),
    ("SELECT 1 -- trailing comment", EITHER, K.SELECT),
    ("SELECT count(*) FROM t1", EITHER, K.SELECT),
    ("SELECT now()", EITHER, K.SELECT),
    ("SELECT pg_catalog.now()", EITHER, K.SELECT),
    ("SELECT f_stab(1)", EITHER, K.SELECT),
    ("SELECT public.f_stab(1)", EITHER, K.SELECT),
    ("SELECT nosuchfunc(1)", EITHER, K.SELECT),
    ("SELECT 'x'::text", EITHER, K.SELECT),
    ("SELECT * FROM information_schema.tables LIMIT 1", EITHER, K.SELECT),
    ("SHOW work_mem", EITHER, K.SHOW),
    ("SHOW ALL", EITHER, K.SHOW),
    ("COPY t1 TO STDOUT", EITHER, K.COPY_TO),
    ("COPY (SELECT 1) TO STDOUT", EITHER, K.COPY_TO),
    ("VALUES (1)", PRIMARY, K.SELECT),
    ("/*NO LOAD BALANCE*/ SELECT 1", PRIMARY, K.SELECT),
    ("-- leading\nSELECT 1", PRIMARY, K.SELECT),
    ("SELECT * FROM t1 FOR UPDATE", PRIMARY, K.SELECT),
    ("SELECT * FROM t1 FOR SHARE", PRIMARY, K.SELECT),
    ("SELECT * FROM (SELECT * FROM t1 FOR UPDATE) s", PRIMARY, K.SELECT),
    ("SELECT * INTO t9 FROM t1", PRIMARY, K.SELECT),
    ("WITH x AS (INSERT INTO t1 VALUES (1) RETURNING *) SELECT * FROM x", PRIMARY, K.SELECT),
    ("WITH x AS (SELECT 1) INSERT INTO t1 SELECT * FROM x", PRIMARY, K.INSERT),
    ("SELECT f_vol(1)", PRIMARY, K.SELECT),
    ('SELECT "f_vol"(1)', PRIMARY, K.SELECT),
    ("SELECT public.f_vol(1)", PRIMARY, K.SELECT),
    ("SELECT f_stab(f_vol(1))", PRIMARY, K.SELECT),
    ("SELECT * FROM t1 WHERE i IN (SELECT f_vol(1))", PRIMARY, K.SELECT),
    ("SELECT nextval('s1')", PRIMARY, K.SELECT),
    ("SELECT setval('s1', 5)", PRIMARY, K.SELECT),
    ("SELECT currval('s1')", PRIMARY, K.SELECT),
    ("SELECT lastval()", PRIMARY, K.SELECT),
    ("SELECT random()", PRIMARY, K.SELECT),
    ("SELECT pg_terminate_backend(999999)", PRIMARY, K.SELECT),
    ("SELECT * FROM pg_class LIMIT 1", PRIMARY, K.SELECT),
    ("SELECT * FROM pg_catalog.pg_class LIMIT 1", PRIMARY, K.SELECT),
    ("SELECT count(*) FROM pg_stat_activity", PRIMARY, K.SELECT),
    ("SELECT 1; SELECT 2", PRIMARY, K.SELECT),
    ("SELEC 1", PRIMARY, K.OTHER),
    ("INSERT INTO t1 VALUES (1)", PRIMARY, K.INSERT),
    ("UPDATE t1 SET i = 2", PRIMARY, K.UPDATE),
    ("DELETE FROM t1 WHERE false", PRIMARY, K.DELETE),
    ("TRUNCATE t9", PRIMARY, K.DDL),
    ("CREATE TABLE t8(i int)", PRIMARY, K.DDL),
    ("DROP TABLE t8", PRIMARY, K.DDL),
    ("REFRESH MATERIALIZED VIEW mv", PRIMARY, K.DDL),
    ("DO $$BEGIN END$$", PRIMARY, K.OTHER),
    ("CALL p()", PRIMARY, K.OTHER),
    ("COPY t1 FROM STDIN", PRIMARY, K.COPY_FROM),
    ("COPY t1 TO '/tmp/x.out'", PRIMARY, K.COPY_TO),
    ("COPY (INSERT INTO t1 VALUES (1) RETURNING i) TO STDOUT", PRIMARY, K.COPY_TO),
    ("EXPLAIN INSERT INTO t1 VALUES (1)", PRIMARY, K.EXPLAIN),
    ("EXPLAIN ANALYZE INSERT INTO t1 VALUES (1)", PRIMARY, K.EXPLAIN),
    ("DECLARE c CURSOR FOR SELECT 1", PRIMARY, K.CURSOR),
    ("FETCH c", PRIMARY, K.CURSOR),
    ("CLOSE c", PRIMARY, K.CURSOR),
    ("LISTEN ch", PRIMARY, K.LISTEN),
    ("NOTIFY ch", PRIMARY, K.NOTIFY),
    ("UNLISTEN ch", PRIMARY, K.UNLISTEN),
    ("VACUUM t1", PRIMARY, K.VACUUM),
    ("ANALYZE t1", PRIMARY, K.VACUUM),
    ("CHECKPOINT", PRIMARY, K.CHECKPOINT),
    ("EXECUTE p1", PRIMARY, K.EXECUTE),
    ("LOCK t1 IN ROW EXCLUSIVE MODE", PRIMARY, K.LOCK),
    ("LOCK t1", PRIMARY, K.LOCK),
    ("PREPARE TRANSACTION 'x'", PRIMARY, K.TX_2PC),
    ("COMMIT PREPARED 'x'", PRIMARY, K.TX_2PC),
    ("ROLLBACK PREPARED 'x'", PRIMARY, K.TX_2PC),
    ("SET transaction_read_only = off", PRIMARY, K.SET),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", PRIMARY, K.SET),
    ("SET TRANSACTION READ WRITE", PRIMARY, K.SET),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", PRIMARY, K.SET),
    ("SET default_transaction_isolation TO 'serializable'", PRIMARY, K.SET),
    ("SET transaction_read_only = on", BOTH, K.SET),
    ("SET TRANSACTION READ ONLY", BOTH, K.SET),
    ("SET search_path TO public", BOTH, K.SET),
    ("SET LOCAL work_mem = '1MB'", BOTH, K.SET),
    ("SET work_mem = '4MB'", BOTH, K.SET),
    ("RESET ALL", BOTH, K.SET),
    ("DISCARD ALL", BOTH, K.DISCARD),
    ("LOCK t1 IN ACCESS SHARE MODE", BOTH, K.LOCK),
    ("LOCK t1 IN ROW SHARE MODE", BOTH, K.LOCK),
    ("BEGIN", BOTH, K.TX_BEGIN),
    ("BEGIN READ ONLY", BOTH, K.TX_BEGIN),
    ("START TRANSACTION READ WRITE", BOTH, K.TX_BEGIN),
    ("SAVEPOINT a", BOTH, K.SAVEPOINT),
    ("RELEASE SAVEPOINT a", BOTH, K.RELEASE_SAVEPOINT),
    ("DEALLOCATE p1", BOTH, K.DEALLOCATE),
    ("DEALLOCATE ALL", BOTH, K.DEALLOCATE),
    ("COMMIT", BOTH, K.TX_COMMIT),
    ("END", BOTH, K.TX_COMMIT),
    ("ROLLBACK", BOTH, K.TX_ROLLBACK),
    ("ABORT", BOTH, K.TX_ROLLBACK),
    ("ROLLBACK TO SAVEPOINT a", BOTH, K.ROLLBACK_TO_SAVEPOINT),
]


@pytest.mark.parametrize(("sql", "dest", "kind"), PGPOOL_435)
def test_routes_like_pgpool_435(sql: str, dest: Dest, kind: StatementKind) -> None:
    verdict = classifier().classify(sql)
    assert (verdict.dest, verdict.kind) == (dest, kind)
    assert verdict.load_balance_ok == (dest is EITHER)


@pytest.mark.parametrize(("sql", "is_read", "is_write"), [
    # is_select_query() and "writing transaction" bookkeeping (pool_proto_modules.c).
    ("SELECT 1", True, False),
    ("SHOW work_mem", True, False),
    ("COPY t1 TO STDOUT", True, False),
    ("SELECT f_vol(1)", False, True),
    ("SELECT * FROM t1 FOR UPDATE", False, True),
    ("/*comment*/ SELECT 1", False, True),
    ("SELECT * FROM pg_class", True, False),       # not balanced, still a read
    ("EXPLAIN INSERT INTO t1 VALUES (1)", True, False),
    ("EXPLAIN ANALYZE INSERT INTO t1 VALUES (1)", False, True),
    ("EXPLAIN ANALYZE SELECT f_vol(1)", False, True),
    ("EXPLAIN SELECT f_vol(1)", True, False),       # plain EXPLAIN runs nothing
    ("INSERT INTO t1 VALUES (1)", False, True),
    ("BEGIN", False, False),
    ("COMMIT", False, False),
    ("ROLLBACK", False, False),
    ("ROLLBACK TO SAVEPOINT a", False, False),
    ("SAVEPOINT a", False, True),
    ("SET work_mem = '4MB'", False, True),
    ("SET TRANSACTION READ ONLY", False, False),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", False, False),
    ("SET transaction_read_only = on", False, False),
    ("SET transaction_read_only = off", False, True),
    ("LOCK t1 IN ACCESS SHARE MODE", False, True),
    ("EXECUTE p1", False, True),
    ("DEALLOCATE p1", False, True),
    ("SELEC 1", False, True),
])
def test_read_and_write_flags(sql: str, is_read: bool, is_write: bool) -> None:
    verdict = classifier().classify(sql)
    assert (verdict.is_read, verdict.is_write) == (is_read, is_write)


# -- deliberate differences from 4.3.5 (see the module docstring) ---------------------------

@pytest.mark.parametrize(("sql", "dest"), [
    ("EXPLAIN SELECT * FROM t1", EITHER),
    ("EXPLAIN ANALYZE SELECT * FROM t1", EITHER),
    ("EXPLAIN (ANALYZE off) SELECT f_vol(1)", PRIMARY),
    ("EXPLAIN SELECT * FROM t1 FOR UPDATE", PRIMARY),
    ("EXPLAIN SELECT * FROM pg_class", PRIMARY),
    ("PREPARE p1 AS SELECT 1", EITHER),
    ("PREPARE p1 AS SELECT f_vol(1)", PRIMARY),
    ("PREPARE p1 AS INSERT INTO t1 VALUES (1)", PRIMARY),
    ("COPY (SELECT f_vol(1)) TO STDOUT", PRIMARY),
    ("SET transaction_read_only = 1", BOTH),
    ("SET transaction_read_only = 0", PRIMARY),
    ("SELECT txid_current()", PRIMARY),  # 4.3.5 sent it to the standby, where it fails
])
def test_deliberate_differences(sql: str, dest: Dest) -> None:
    assert classifier().classify(sql).dest is dest


def test_explain_analyze_option_values() -> None:
    c = classifier()
    assert c.classify("EXPLAIN (ANALYZE true) SELECT f_vol(1)").is_write
    assert not c.classify("EXPLAIN (ANALYZE false) SELECT f_vol(1)").is_write


def test_prepare_takes_the_inner_statement_and_names() -> None:
    c = classifier()
    read = c.classify("PREPARE p2(int) AS SELECT f3($1)")
    assert (read.kind, read.dest, read.prepared_name, read.is_write) == (K.PREPARE, EITHER, "p2", False)
    write = c.classify("PREPARE p1 AS SELECT f1(1)")
    assert (write.dest, write.is_write) == (PRIMARY, True)
    assert c.classify("EXECUTE p2(1)").prepared_name == "p2"
    assert c.classify("DEALLOCATE p2").prepared_name == "p2"
    assert c.classify("DEALLOCATE PREPARE p2").prepared_name == "p2"
    assert c.classify("DEALLOCATE ALL").prepared_name is None


def test_prepare_skips_the_leading_character_rule() -> None:
    # The inner SELECT does not start the text, which begins with PREPARE (pgpool 4.5+).
    assert classifier().classify("PREPARE p AS SELECT 1").dest is EITHER
    assert classifier().classify("/*x*/ PREPARE p AS SELECT 1").dest is EITHER


# -- 001.load_balance ---------------------------------------------------------------------

def test_001_write_function_list() -> None:
    c = classifier(write_function_list=["f1", "public.f2"])
    assert c.classify("SELECT * FROM t1;").dest is EITHER
    assert c.classify("SELECT f1(1);").dest is PRIMARY
    assert c.classify("SELECT public.f2(1);").dest is PRIMARY
    # Not listed: a read, whatever its volatility.
    assert c.classify("SELECT f_vol(1);").dest is EITHER
    # Only the listed spelling counts: "f2" is not "public.f2".
    assert c.classify("SELECT f2(1);").dest is EITHER


def test_001_read_only_function_list_after_reload() -> None:
    c = classifier(write_function_list=["f1", "public.f2"])
    assert c.classify("SELECT f1(1);").dest is PRIMARY
    c.reconfigure(RoutingSettings(read_only_function_list=["f1", "public.f2"]))
    assert c.classify("SELECT f1(1);").dest is EITHER
    assert c.classify("SELECT public.f2(1);").dest is EITHER
    # Anything not in the read-only list writes.
    assert c.classify("SELECT f3(1);").dest is PRIMARY
    assert c.classify("SELECT public.f1(1);").dest is PRIMARY


def test_001_primary_routing_query_pattern_list() -> None:
    # The test's value after pgpool's splitter: split at unescaped ';', "\'" turned into "'".
    patterns = ["SELECT 'a'\\;", "SELECT 1\\;", "SELECT ';'\\;", "SELECT \\* FROM t1\\;",
                "^.*t2.*\\;$", "^.*f1.*$"]
    c = classifier(primary_routing_query_pattern_list=patterns,
                   read_only_function_list=["f1", "public.f2"])
    for sql in ["SELECT * FROM t1;", "SELECT 'a';", "SELECT 1;", "SELECT ';';",
                "SELECT * FROM t2;", "SELECT f1(1);"]:
        verdict = c.classify(sql)
        assert verdict.dest is PRIMARY, sql
        assert "primary_routing_query_pattern_list" in verdict.reason
    assert c.classify("SELECT 2;").dest is EITHER
    assert c.classify("SELECT 1").dest is EITHER       # the patterns are anchored
    assert c.classify('select * from "t1";').dest is PRIMARY   # case-insensitive, quotes stripped


def test_001_volatility_when_both_lists_are_empty() -> None:
    c = classifier()
    assert c.classify("SELECT f1(1);").dest is PRIMARY
    assert c.classify("SELECT public.f2(1);").dest is PRIMARY
    assert c.classify("SELECT f3(1);").dest is EITHER
    assert c.classify("SELECT public.f4(1);").dest is EITHER
    assert c.classify("PREPARE p1 AS SELECT f1(1);").dest is PRIMARY
    assert c.classify("PREPARE p2 AS SELECT f3(1);").dest is EITHER


def test_001_multi_statement_begin() -> None:
    c = classifier()
    verdict = c.classify("BEGIN;SELECT 1;")
    assert (verdict.kind, verdict.dest, verdict.statement_count) == (K.TX_BEGIN, PRIMARY, 2)
    assert verdict.tx_start and not verdict.tx_end
    assert not verdict.is_write and not verdict.is_read
    assert c.classify("BEGIN;INSERT INTO t1 VALUES(1);").is_write
    both = c.classify("BEGIN;SELECT 1;ROLLBACK;")
    assert both.tx_start and both.tx_end and both.statement_count == 3
    broken = c.classify("BEGIN;SELECT 1;FOO;")
    assert broken.parse_error and broken.dest is PRIMARY and not broken.tx_start


def test_001_temp_table_shadowing_a_table() -> None:
    temps: set[str] = set()
    c = Classifier(temp_tables=lambda: temps)
    assert c.classify("SELECT * FROM t1;").dest is EITHER
    created = c.classify("CREATE TEMP TABLE t1(i int);")
    assert created.created_temp_tables == ("t1",) and created.creates_temp_table
    temps.add("t1")
    shadowed = c.classify("SELECT * FROM t1;")
    assert (shadowed.dest, shadowed.uses_temp_table) == (PRIMARY, True)
    assert c.classify("SELECT * FROM public.t1;").dest is EITHER
    assert c.classify("DROP TABLE t1;").dropped_tables == ("t1",)
    temps.discard("t1")
    assert c.classify("SELECT * FROM t1;").dest is EITHER


# -- temporary tables, catalogs, tables ----------------------------------------------------

@pytest.mark.parametrize(("sql", "created"), [
    ("CREATE TEMP TABLE tt(i int)", ("tt",)),
    ("CREATE TEMPORARY TABLE tt AS SELECT 1", ("tt",)),
    ("CREATE TABLE pg_temp.tt(i int)", ("tt",)),
    ("SELECT 1 INTO TEMP tt", ("tt",)),
    ("CREATE TEMP VIEW tv AS SELECT 1", ("tv",)),
    ("CREATE TEMP SEQUENCE ts", ("ts",)),
    ("CREATE TABLE tt(i int)", ()),
    ("SELECT 1 INTO tt", ()),
])
def test_created_temp_tables(sql: str, created: tuple[str, ...]) -> None:
    assert classifier().classify(sql).created_temp_tables == created


def test_dropped_tables() -> None:
    assert classifier().classify("DROP TABLE IF EXISTS a, s.b").dropped_tables == ("a", "s.b")
    assert classifier().classify("DROP FUNCTION f()").dropped_tables == ()


def test_pg_temp_schema_goes_to_the_primary_without_lookup() -> None:
    verdict = Classifier().classify("SELECT * FROM pg_temp.tt")
    assert verdict.dest is PRIMARY and verdict.is_read


def test_tables_are_listed_once_with_their_schema() -> None:
    verdict = classifier().classify(
        "SELECT * FROM t1 JOIN s.t2 ON true WHERE EXISTS (SELECT 1 FROM t1) AND x IN (SELECT y FROM t3)")
    assert sorted(verdict.tables) == ["s.t2", "t1", "t3"]
    assert sorted(classifier().classify("UPDATE a SET x = (SELECT y FROM b)").tables) == ["a", "b"]
    assert sorted(classifier().classify("LOCK t1, t2").tables) == ["t1", "t2"]


def test_temp_table_lookup_is_outside_the_cache() -> None:
    calls: list[int] = []

    def temps() -> set[str]:
        calls.append(1)
        return {"t1"} if len(calls) > 1 else set()

    c = Classifier(temp_tables=temps)
    assert c.classify("SELECT * FROM t1").dest is EITHER
    assert c.classify("SELECT * FROM t1").dest is PRIMARY
    c.classify("SELECT 1")          # names no relation: no lookup
    c.classify("INSERT INTO t1 VALUES (1)")   # not balanceable: no lookup
    assert len(calls) == 2


# -- function lists and volatility ---------------------------------------------------------

@pytest.mark.parametrize(("write", "read_only", "sql", "dest"), [
    (["f"], [], "SELECT f1(1)", EITHER),            # anchored: f does not match f1
    (["F1"], [], "SELECT f1(1)", PRIMARY),          # case-insensitive
    (["set_.*"], [], "SELECT set_x(1)", PRIMARY),
    (["set_.*"], [], "SELECT get_x(1)", EITHER),
    ([], ["get_.*"], "SELECT get_x(1), get_y(2)", EITHER),
    ([], ["get_.*"], "SELECT get_x(1), other(2)", PRIMARY),
    (["f1"], ["f1"], "SELECT f1(1)", EITHER),       # the read-only list wins
    ([], ["nextval"], "SELECT nextval('s')", PRIMARY),   # nextval always writes
    ([], ["txid_current"], "SELECT txid_current()", PRIMARY),  # assigns a transaction id
    ([], ["pg_current_xact_id"], "SELECT pg_catalog.pg_current_xact_id()", PRIMARY),
    ([], ["pg_catalog.setval"], "SELECT pg_catalog.setval('s', 1)", PRIMARY),
    (["x"], [], "SELECT nextval('s')", PRIMARY),
    (["^f1$"], [], "SELECT f1(1)", PRIMARY),
    (["cat.f1"], [], "SELECT db.cat.f1(1)", PRIMARY),     # catalog.schema.f → schema.f
    (["f1"], [], "INSERT INTO t SELECT f1(1)", PRIMARY),
    (["f1"], [], "SELECT count(*) FROM t WHERE x = f1(2)", PRIMARY),
])
def test_function_lists(write: list[str], read_only: list[str], sql: str, dest: Dest) -> None:
    c = Classifier(RoutingSettings(write_function_list=write, read_only_function_list=read_only))
    assert c.classify(sql).dest is dest


def test_quoted_function_name_keeps_its_case() -> None:
    # pgpool strips the double quotes and matches case-insensitively.
    c = Classifier(RoutingSettings(write_function_list=["f1"]))
    assert c.classify('SELECT "F1"(1)').dest is PRIMARY


def test_volatility_lookup_gets_the_name_as_written() -> None:
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return "s"

    c = Classifier(function_volatility=lookup)
    assert c.classify("SELECT f(1), public.g(2), db.s.h(3)").dest is EITHER
    assert sorted(asked) == ["f", "public.g", "s.h"]


def test_without_volatility_lookup_functions_count_as_writes() -> None:
    c = Classifier()
    assert c.classify("SELECT count(*) FROM t").dest is PRIMARY
    assert c.classify("SELECT 1 FROM t").dest is EITHER


def test_a_verdict_on_a_volatility_not_known_yet_is_not_kept() -> None:
    # The router cannot ask pg_proc while the primary connection is busy: the call counts as
    # writing that once, and the text is classified again when it comes back.
    answers = ["?", "s", "?", "s"]
    c = Classifier(function_volatility=lambda name: answers.pop(0))
    for classify, sql in ((c.classify, "SELECT count(*) FROM t"),
                          (lambda text: c.classify_bytes(text.encode()), "SELECT max(x) FROM u")):
        first = classify(sql)
        assert first.dest is PRIMARY and c.guessed
        second = classify(sql)
        assert second.dest is EITHER and not c.guessed
        assert classify(sql).dest is EITHER  # kept now: not asked again
    assert answers == []


def test_unknown_function_is_not_volatile() -> None:
    # pgpool's pg_proc query finds no VOLATILE function of that name: a read.
    assert Classifier(function_volatility=lambda name: None).classify("SELECT nosuch(1)").dest is EITHER


def test_invalid_pattern_is_reported_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pgpool_py.routing.classify"):
        c = Classifier(RoutingSettings(write_function_list=["f1(", "f2"]))
    assert 'invalid pattern: "^f1($"' in caplog.text
    assert c.classify("SELECT f2(1)").dest is PRIMARY
    assert c.classify("SELECT f3(1)").dest is EITHER


# -- transaction control and SET ------------------------------------------------------------

@pytest.mark.parametrize(("sql", "flags"), [
    ("BEGIN", {"tx_start"}),
    ("START TRANSACTION", {"tx_start"}),
    ("BEGIN READ ONLY", {"tx_start", "read_only_tx"}),
    ("BEGIN READ WRITE", {"tx_start", "begin_default_on_standby"}),
    ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
     {"tx_start", "serializable", "begin_default_on_standby"}),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ", {"tx_start"}),
    ("COMMIT", {"tx_end"}),
    ("END", {"tx_end"}),
    ("ROLLBACK", {"tx_end"}),
    ("ABORT", {"tx_end"}),
    ("COMMIT AND CHAIN", {"tx_start", "tx_end"}),
    ("PREPARE TRANSACTION 'g'", {"tx_end"}),
    ("COMMIT PREPARED 'g'", set()),
    ("SAVEPOINT a", set()),
    ("SET TRANSACTION READ ONLY", {"read_only_tx"}),
    ("SET transaction_read_only TO true", {"read_only_tx"}),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", {"serializable"}),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", {"serializable"}),
    ("SET transaction_isolation = 'serializable'", {"serializable"}),
    ("SET transaction_isolation = 'read committed'", set()),
])
def test_transaction_flags(sql: str, flags: set[str]) -> None:
    verdict = classifier().classify(sql)
    names = ("tx_start", "tx_end", "read_only_tx", "serializable", "begin_default_on_standby")
    assert {name for name in names if getattr(verdict, name)} == flags


@pytest.mark.parametrize(("sql", "session"), [
    ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", True),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ", False),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", None),
    ("SET default_transaction_isolation = 'serializable'", True),
    ("SET default_transaction_isolation TO 'read committed'", False),
    ("SET LOCAL default_transaction_isolation = 'serializable'", None),
    ("RESET default_transaction_isolation", False),
    ("SET default_transaction_isolation TO DEFAULT", False),
    ("RESET ALL", False),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
    ("SET transaction_isolation = 'serializable'", None),
])
def test_session_default_isolation(sql: str, session: bool | None) -> None:
    assert classifier().classify(sql).session_serializable is session


# -- comments, white space, empty queries -------------------------------------------------

@pytest.mark.parametrize(("sql", "allow_sql_comments", "ignore_leading_white_space", "dest"), [
    ("/*x*/ SELECT 1", False, True, PRIMARY),
    ("/*x*/ SELECT 1", True, True, EITHER),
    ("-- x\nSELECT 1", True, True, EITHER),
    ("/*NO LOAD BALANCE*/ SELECT 1", True, True, PRIMARY),
    ("  /* no load balance */SELECT 1", True, True, PRIMARY),
    ("SELECT 1 /*NO LOAD BALANCE*/", False, True, EITHER),    # only at the start
    ("  SELECT 1", False, True, EITHER),
    ("  SELECT 1", False, False, PRIMARY),
    ("\n\tSELECT 1", False, True, EITHER),
    ("WITH a AS (SELECT 1) SELECT * FROM a", False, False, EITHER),
    ("/*x*/ SHOW work_mem", False, True, EITHER),              # the rule is for SELECTs only
    ("/*x*/ COPY t1 TO STDOUT", False, True, EITHER),
])
def test_comments_and_white_space(sql: str, allow_sql_comments: bool,
                                  ignore_leading_white_space: bool, dest: Dest) -> None:
    c = classifier(allow_sql_comments=allow_sql_comments,
                   ignore_leading_white_space=ignore_leading_white_space)
    assert c.classify(sql).dest is dest


@pytest.mark.parametrize(("sql", "dest"), [
    ("", EITHER), (";", EITHER), ("   ", EITHER), (" ; ;", EITHER), ("-- ping", PRIMARY),
])
def test_empty_query_is_a_read(sql: str, dest: Dest) -> None:
    verdict = classifier().classify(sql)
    assert verdict.kind is K.EMPTY and verdict.dest is dest and verdict.statement_count == 1


def test_empty_query_with_comments_allowed() -> None:
    assert classifier(allow_sql_comments=True).classify("/* ping */").dest is EITHER


@pytest.mark.parametrize("sql", [
    "SELECT FROM WHERE (",
    "SELECT '\udcff'",                          # a non-UTF-8 byte decoded with surrogateescape
    "SELECT " + "1+" * 5000 + "1",              # nested deeper than json's recursion limit
    "SHOW pool_\udcff",
])
def test_unparsable_sql_goes_to_the_primary_as_a_write(sql: str) -> None:
    verdict = classifier().classify(sql)
    assert verdict.parse_error and verdict.dest is PRIMARY and verdict.is_write
    assert verdict.kind is K.OTHER and verdict.kind.stats_counter == "ddl"
    assert not is_pool_command(sql)


# -- multi-statement queries ----------------------------------------------------------------

def test_multi_statement_combination() -> None:
    c = classifier()
    reads = c.classify("SELECT 1 FROM a; SELECT 2 FROM b")
    assert (reads.dest, reads.is_read, reads.is_write) == (PRIMARY, True, False)
    assert sorted(reads.tables) == ["a", "b"] and reads.reason == "multi-statement query"
    mixed = c.classify("PREPARE a AS SELECT 1; PREPARE b AS INSERT INTO t VALUES (1)")
    assert (mixed.kind, mixed.prepared_name, mixed.is_read, mixed.is_write) == (K.PREPARE, "a", False, True)
    temp = c.classify("CREATE TEMP TABLE x(i int); DROP TABLE y")
    assert (temp.created_temp_tables, temp.dropped_tables) == (("x",), ("y",))


# -- pgpool's own commands ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(POOL_SHOW_NAMES))
def test_show_pool_commands(name: str) -> None:
    for sql in (f"SHOW {name}", f"show {name.upper()};", f"/* x */ SHOW {name}"):
        verdict = classifier().classify(sql)
        assert verdict.kind is K.POOL_COMMAND and verdict.pool_command == ("SHOW", name)
        assert is_pool_command(sql)


@pytest.mark.parametrize(("sql", "command"), [
    ("PGPOOL SHOW port", ("PGPOOL SHOW", "port")),
    ("pgpool show ALL", ("PGPOOL SHOW", "all")),
    ("PGPOOL SHOW backend_hostname0;", ("PGPOOL SHOW", "backend_hostname0")),
    ("PGPOOL SET client_idle_limit = 10", ("PGPOOL SET", "client_idle_limit", "10")),
    ("PGPOOL SET log_min_messages TO 'debug1'", ("PGPOOL SET", "log_min_messages", "debug1")),
    ("PGPOOL SET allow_sql_comments TO on", ("PGPOOL SET", "allow_sql_comments", "on")),
    ("PGPOOL SET x = 1, 'a'", ("PGPOOL SET", "x", "1, a")),
    ("PGPOOL SET client_idle_limit TO DEFAULT", ("PGPOOL RESET", "client_idle_limit")),
    ("PGPOOL RESET client_idle_limit", ("PGPOOL RESET", "client_idle_limit")),
    ("PGPOOL RESET ALL", ("PGPOOL RESET", "all")),
    ("-- c\n  PgPool\n SET x = 1", ("PGPOOL SET", "x", "1")),
])
def test_pgpool_commands(sql: str, command: tuple[str, ...]) -> None:
    assert parse_pool_command(sql) == command
    verdict = classifier().classify(sql)
    assert verdict.kind is K.POOL_COMMAND and verdict.pool_command == command
    assert not verdict.is_write and verdict.kind.stats_counter is None


@pytest.mark.parametrize("sql", [
    'SHOW "POOL_NODES"', "SHOW pool_foo", "SELECT 'SHOW pool_nodes'", "PGPOOL SHOW",
    "PGPOOL SET x", "PGPOOL RESET x = 1", "PGPOOL SET LOCAL x = 1", "PGPOOL FOO", "pgpoolx show port",
    "SELECT 1; SHOW pool_nodes",
])
def test_not_pool_commands(sql: str) -> None:
    assert not is_pool_command(sql)
    assert classifier().classify(sql).kind is not K.POOL_COMMAND


def test_pool_command_first_statement_counts() -> None:
    # pgpool looks at the first statement only and answers it.
    assert parse_pool_command("SHOW pool_nodes; SELECT 1") == ("SHOW", "pool_nodes")


def test_other_show_goes_to_a_backend() -> None:
    verdict = classifier().classify("SHOW pool_foo")
    assert verdict.kind is K.SHOW and verdict.dest is EITHER


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(
    ["SHOW ", "PGPOOL ", "SET ", "pool_nodes", "x", " = ", "1", "'a'", ";", "/*", "*/", "--", "\n",
     "SELECT ", "BEGIN", "(", ")", '"', "ALL", "RESET ", "TO ", "DEFAULT"])).map("".join))
def test_pool_command_helper_agrees_with_classify(sql: str) -> None:
    verdict = classifier().classify(sql)
    assert is_pool_command(sql) == (verdict.kind is K.POOL_COMMAND)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(
    ["SHOW ", "show", "Sh", "sH", "PGPOOL ", "pg", "PG", "pool_nodes", " ", "\t", "\x0b", "\x0c", "\r", "\n",
     "/*", "*/", "--", "-", "/", "p", "s", "S", "P", "x", "SELECT 1", "\x00", "\xa0", "\x85", "\x1c"]
)).map(lambda parts: "".join(parts).encode()))
def test_pool_prefix_bytes_fast_path_agrees_with_the_pattern(text: bytes) -> None:
    # The first bytes are compared as integers before the regular expression runs: they
    # must never turn away a text the expression matches.
    expected = classify_module._POOL_PREFIX_BYTES.match(text) is not None
    assert classify_module.addressed_to_pgpool_bytes(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_classify_never_raises(sql: str) -> None:
    verdict = classifier().classify(sql)
    assert verdict.statement_count >= 1


# -- misc ----------------------------------------------------------------------------------

def test_terminate_backend_pid() -> None:
    assert classifier().classify("SELECT pg_terminate_backend(4321)").terminate_backend_pid == 4321
    assert classifier().classify("SELECT pg_terminate_backend(4321, 100)").terminate_backend_pid == 4321
    assert classifier().classify("SELECT pg_terminate_backend(pid) FROM x").terminate_backend_pid is None
    assert classifier().classify("SELECT 1").terminate_backend_pid is None


@pytest.mark.parametrize(("kind", "counter"), [
    (K.SELECT, "select"), (K.EMPTY, "select"), (K.INSERT, "insert"), (K.UPDATE, "update"),
    (K.DELETE, "delete"), (K.DDL, "ddl"), (K.COPY_FROM, "ddl"), (K.CURSOR, "ddl"),
    (K.TX_BEGIN, "other"), (K.SET, "other"), (K.SHOW, "other"), (K.EXPLAIN, "other"),
    (K.LOCK, "other"), (K.VACUUM, "other"), (K.POOL_COMMAND, None),
])
def test_stats_counter(kind: StatementKind, counter: str | None) -> None:
    assert kind.stats_counter == counter


# -- caching --------------------------------------------------------------------------------

def test_cache_hit_returns_the_cached_verdict() -> None:
    c = classifier()
    assert c.classify("SELECT 1") is c.classify("SELECT 1")


def test_cache_is_bounded_and_least_recently_used() -> None:
    c = Classifier(cache_size=2)
    a = c.classify("SELECT 1 FROM a")
    c.classify("SELECT 1 FROM b")
    assert c.classify("SELECT 1 FROM a") is a      # a is now the most recent
    c.classify("SELECT 1 FROM c")                  # evicts b
    assert c.classify("SELECT 1 FROM a") is a
    assert len(c._cache) == 2 and "SELECT 1 FROM b" not in c._cache


def test_reconfigure_clears_the_cache() -> None:
    c = classifier()
    before = c.classify("SELECT f3(1)")
    assert before.dest is EITHER
    c.reconfigure(RoutingSettings(write_function_list=["f3"]))
    assert c.classify("SELECT f3(1)").dest is PRIMARY


def test_texts_differing_in_literals_share_one_parse() -> None:
    asked: list[str] = []

    def lookup(name: str) -> str:
        asked.append(name)
        return "s"

    c = Classifier(function_volatility=lookup)
    for aid in range(5):
        verdict = c.classify(f"SELECT abalance, f(1) FROM pgbench_accounts WHERE aid = {aid}")
        assert verdict.dest is EITHER and verdict.tables == ("pgbench_accounts",)
    assert asked == ["f"]


def test_text_rules_apply_to_a_shared_shape() -> None:
    c = classifier(primary_routing_query_pattern_list=["SELECT 2"])
    assert c.classify("SELECT 1").dest is EITHER
    assert c.classify("SELECT 2").dest is PRIMARY
    assert c.classify("/*NO LOAD BALANCE*/ SELECT 3").dest is PRIMARY
    assert c.classify("/*x*/ SELECT 4").is_write


@pytest.mark.parametrize(("first", "second", "dest"), [
    ("SET transaction_read_only = on", "SET transaction_read_only = off", PRIMARY),
    ("SET transaction_isolation = 'read committed'", "SET transaction_isolation = 'serializable'", PRIMARY),
    ("SELECT pg_terminate_backend(1)", "SELECT pg_terminate_backend(2)", PRIMARY),
])
def test_literal_dependent_verdicts_are_not_shared(first: str, second: str, dest: Dest) -> None:
    c = classifier()
    c.classify(first)
    assert c.classify(second).dest is dest
    if "terminate" in second:
        assert c.classify(second).terminate_backend_pid == 2


@pytest.mark.parametrize(("text", "key"), [
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 482913;",
     "SELECT abalance FROM pgbench_accounts WHERE aid = $i;"),
    ("SELECT 'a''b', 1.5, .5, 1e10, 12345678901", "SELECT $s, $f, $f, $f, $l"),
    ("SELECT t1.c2, x1, 5abc, 1.5.3 FROM t2", "SELECT t1.c2, x1, 5abc, 1.5.3 FROM t2"),  # not numbers
    ("SELECT 1::numeric(10,2)", "SELECT $i::numeric($i,$i)"),
    ("SELECT ٣ FROM é1", "SELECT ٣ FROM é1"),   # a non-ASCII digit is a name character
    ('SELECT "a1" FROM t', None), ("SELECT E'x'", None), ("SELECT U&'x'", None),
    ("SELECT 1 -- note", None), ("/* x */ SELECT 1", None), ("SELECT $1", None),
    ("SELECT $$x$$", None), ("SELECT \\x", None),
    ("SELECT 'a\\'", "SELECT $s"),  # standard_conforming_strings, as the parser reads it
])
def test_literal_key(text: str, key: str | None) -> None:
    assert literal_key(text) == key


def test_texts_differing_in_literals_skip_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    normalized: list[str] = []
    normalize = classify_module._pg_parser.normalize
    monkeypatch.setattr(classify_module._pg_parser, "normalize", lambda sql: normalized.append(sql) or normalize(sql))
    c = classifier()
    first = c.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
    assert c.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 2") is first
    c.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 'x'")   # a string, not an integer
    c.classify("/* c */ SELECT abalance FROM pgbench_accounts WHERE aid = 3")
    assert normalized == ["SELECT abalance FROM pgbench_accounts WHERE aid = 1",
                          "SELECT abalance FROM pgbench_accounts WHERE aid = 'x'",
                          "/* c */ SELECT abalance FROM pgbench_accounts WHERE aid = 3"]


_FRAGMENTS = st.sampled_from([
    "SELECT", "INSERT INTO t1 VALUES", "UPDATE t1 SET a =", "DELETE FROM", "FROM", "WHERE", "AND",
    "t1", "t2", "pg_temp.t", "pg_class", "f_vol(", "f_stab(", "nextval(", "pg_terminate_backend(",
    ")", "(", ",", "=", "+", "-", ";", "::int", "::numeric(", "FOR UPDATE", "INTO x", "WITH w AS (",
    "1", "2", "10", "1.5", ".5", "1e3", "12345678901", "'a'", "'b'", "'a''b'", "E'x'", "'--'",
    "x1", "\"t1\"", "$1", "-- c\n", "/* NO LOAD BALANCE */", "٣", "é",
])


_OTHER_DIGITS = str.maketrans("0123456789", "7395102864")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_FRAGMENTS, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=6))
def test_a_cached_verdict_is_the_verdict_of_the_text_itself(texts: list[str]) -> None:
    shared = classifier()
    for text in texts:
        # Other literal values, and other digits in the same places (one digit key).
        for variant in (text, text.replace("1", "7"), text.replace("'a'", "'zz'"), text.translate(_OTHER_DIGITS)):
            expected = classifier().classify(variant)
            assert shared.classify(variant) == expected, variant
            assert shared.classify_bytes(variant.encode()) == expected, variant


def test_a_digit_key_is_shared_only_by_texts_whose_digits_are_literals(monkeypatch: pytest.MonkeyPatch) -> None:
    masked: list[str] = []
    pattern = classify_module._MASKED_TOKEN  # literal_key's: what it masks passes through it

    class Recording:
        def sub(self, repl: Callable[[re.Match[str]], str], sql: str) -> str:
            masked.append(sql)
            return pattern.sub(repl, sql)

    # The module's attribute, as a compiled (mypyc) module reads its globals but calls its
    # functions directly.
    monkeypatch.setattr(classify_module, "_MASKED_TOKEN", Recording())
    c = classifier(write_function_list=["f2"])
    assert c.classify_bytes(b"SELECT abalance FROM pgbench_accounts WHERE aid = 1234").dest is EITHER
    assert c.classify_bytes(b"SELECT abalance FROM pgbench_accounts WHERE aid = 5678").dest is EITHER
    assert c.classify_bytes(b"SELECT f1(5)").dest is EITHER
    assert c.classify_bytes(b"SELECT f2(5)").dest is PRIMARY     # a digit in a name: its own entry
    assert c.classify_bytes(b"SELECT f2(7)").dest is PRIMARY
    assert masked == ["SELECT abalance FROM pgbench_accounts WHERE aid = 1234", "SELECT f1(5)",
                      "SELECT f2(5)", "SELECT f2(7)"]
