"""log.py: the prefix escapes, levels, verbosity, syslog datagrams and the collector's files."""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgpool_py import log as pglog
from pgpool_py.config import Config, load_config
from pgpool_py.protocol import messages as m

BACKEND = {"backend_hostname0": "localhost", "backend_port0": "5432"}


def make_cfg(tmp_path: Path, **params: str) -> Config:
    return load_config(None, {**BACKEND, **params})


def record(level: int = logging.INFO, msg: str = "hello %s", args: tuple[object, ...] = ("world",),
           **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("pgpool_py.test", level, "/src/pgpool_py/thing.py", 42, msg, args, None, "do_it")
    rec.__dict__.update(extra)
    return rec


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    """Leave the pgpool_py logger as other tests (caplog) expect it: propagating, no handlers."""
    root = logging.getLogger("pgpool_py")
    level, propagate = root.level, root.propagate
    yield
    root.setLevel(level)
    root.propagate = propagate
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler is not pglog._stderr:
            handler.close()
    pglog._collector = None
    pglog._syslog = None
    pglog._syslog_warned = False
    pglog.clear_session()


def test_every_prefix_escape_renders_as_documented() -> None:
    pglog.session.application_name, pglog.session.user, pglog.session.database = "psql", "alice", "shop"
    pglog.session.host, pglog.session.port = "127.0.0.1", "51000"
    pglog.session.client = True
    # As pgpool-II 4.3.5: %t has no time zone, an unknown escape (%q) and a lone % print nothing.
    fmt = pglog.PgFormatter("[%t|%m|%p|%a|%P|%u|%d|%r|%h|%l|%%|%q]%")
    rec = record()
    rec.created, rec.msecs = 1_700_000_000.25, 250.0
    lt = time.localtime(rec.created)
    t = time.strftime("%Y-%m-%d %H:%M:%S", lt)
    ms = t + ".250"
    line = fmt.format(rec)
    match = re.fullmatch(rf"\[{t}\|{ms}\|{os.getpid()}\|psql\|MAIN\|alice\|shop\|127\.0\.0\.1\(51000\)\|"
                         r"127\.0\.0\.1\|(\d+)\|%\|\]LOG:  hello world", line)
    assert match, line
    number = int(match.group(1))
    # %l: the same record keeps its number in every destination; the next one gets the next.
    assert pglog.PgFormatter("%l").format(rec) == f"{number}LOG:  hello world"
    assert pglog.PgFormatter("%l").format(record()) == f"{number + 1}LOG:  hello world"


def test_prefix_outside_a_session_names_the_process() -> None:
    fmt = pglog.PgFormatter("%a pid %p: %r%u.")
    assert fmt.format(record(logging.WARNING)) == f"main pid {os.getpid()}: [No Connection].WARNING:  hello world"


def test_user_and_database_before_and_during_a_session() -> None:
    """pgpool-II's %u/%d: [No Connection] until the client's startup packet is read (e.g. the
    log_connections line), [unknown] for a name the client left empty."""
    fmt = pglog.PgFormatter("%u@%d: ")
    pglog.session.host, pglog.session.port = "127.0.0.1", "51000"
    assert fmt.format(record()) == "[No Connection]@[No Connection]: LOG:  hello world"
    pglog.session.client, pglog.session.user = True, "alice"
    assert fmt.format(record()) == "alice@[unknown]: LOG:  hello world"
    pglog.clear_session()
    assert fmt.format(record()) == "[No Connection]@[No Connection]: LOG:  hello world"


def test_names_from_the_client_are_made_printable_when_written(tmp_path: Path) -> None:
    # A newline in a name would forge a log line; escapes would colour a terminal.
    pglog.session.client = True
    pglog.session.user, pglog.session.database = "al\nice", "sh\x1bop"
    pglog.session.application_name = "app\nLOG:  FORGED\u00e9"
    assert pglog.PgFormatter("%u@%d %a: ").format(record()) == "al?ice@sh?op app?LOG:  FORGED?: LOG:  hello world"
    pglog.configure(collector_cfg(tmp_path, log_disconnections="on"), debug=False)
    pglog.log_disconnection(collector_cfg(tmp_path, log_disconnections="on"), time.time(), "al\nice", "sh\rop",
                            "127.0.0.1", "")
    (line,) = Path(str(pglog.current_log_file())).read_text().splitlines()
    assert line.endswith("user=al?ice database=sh?op host=127.0.0.1")


def test_prefix_padding() -> None:
    fmt = pglog.PgFormatter("[%-6a|%6a|%3l|%5%]")
    assert fmt.format(record()).startswith("[main  |  main|")
    assert fmt.format(record()).endswith("|]LOG:  hello world")


def test_error_verbosity_controls_detail_hint_and_location() -> None:
    rec = record(logging.ERROR, "bad thing", (), detail="the detail", hint="the hint")
    default = pglog.PgFormatter("", "default").format(rec).splitlines()
    assert default == ["ERROR:  bad thing", "DETAIL:  the detail", "HINT:  the hint"]
    assert pglog.PgFormatter("", "terse").format(rec).splitlines() == ["ERROR:  bad thing"]
    verbose = pglog.PgFormatter("> ", "verbose").format(rec).splitlines()
    assert verbose[-1] == "> LOCATION:  do_it, thing.py:42"
    assert len(verbose) == 4


@pytest.mark.parametrize(
    ("min_messages", "shown"),
    [
        ("debug1", {"DEBUG", "LOG", "WARNING", "ERROR", "FATAL"}),
        ("warning", {"LOG", "WARNING", "ERROR", "FATAL"}),
        ("error", {"LOG", "ERROR", "FATAL"}),  # LOG ranks above ERROR, as in PostgreSQL
        ("fatal", {"FATAL"}),
    ],
)
def test_log_min_messages_uses_postgresql_order(min_messages: str, shown: set[str]) -> None:
    f = pglog.MinMessagesFilter(min_messages)
    levels = {"DEBUG": logging.DEBUG, "LOG": logging.INFO, "WARNING": logging.WARNING,
              "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}
    assert {name for name, lvl in levels.items() if f.filter(record(lvl))} == shown


@pytest.fixture
def syslog_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_syslog_gets_one_datagram_per_line_with_facility_and_ident(
    tmp_path: Path, syslog_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = syslog_socket
    monkeypatch.setattr(pglog, "syslog_address", path)
    cfg = make_cfg(tmp_path, log_destination="syslog", syslog_facility="LOCAL3", syslog_ident="pgtest",
                   log_line_prefix="%a: ")
    pglog.configure(cfg, debug=False)
    logging.getLogger("pgpool_py.x").error("it broke", extra={"detail": "why"})
    first, second = sock.recv(4096).decode(), sock.recv(4096).decode()
    # LOCAL3 = 19; ERROR → syslog warning (4): 19*8+4 = 156.
    assert re.fullmatch(rf"<156>\w{{3}} [ \d]\d \d\d:\d\d:\d\d pgtest\[{os.getpid()}\]: main: ERROR:  it broke", first)
    assert second.endswith("pgtest[%d]: main: DETAIL:  why" % os.getpid())


def test_syslog_without_a_daemon_drops_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pglog, "syslog_address", str(tmp_path / "nobody"))
    pglog.configure(make_cfg(tmp_path, log_destination="syslog"), debug=False)
    logging.getLogger("pgpool_py.x").error("lost")  # must not raise or print a traceback


def test_syslog_only_without_a_daemon_falls_back_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nobody")
    monkeypatch.setattr(pglog, "syslog_address", missing)
    monkeypatch.setattr(pglog, "_stderr", None)  # a handler on the stderr pytest captures
    cfg = make_cfg(tmp_path, log_destination="syslog", log_line_prefix="")
    pglog.configure(cfg, debug=False)
    logging.getLogger("pgpool_py.x").critical("cannot start")
    pglog.configure(cfg, debug=False)  # a reload: no second warning
    assert capsys.readouterr().err == (
        f'WARNING:  could not connect to the syslog socket "{missing}": No such file or directory; '
        "logging to stderr instead\nFATAL:  cannot start\n"
    )


def collector_cfg(tmp_path: Path, **params: str) -> Config:
    params.setdefault("log_filename", "pgpool-%H%M%S.log")
    return make_cfg(tmp_path, logging_collector="on", log_directory=str(tmp_path / "logs"), log_line_prefix="",
                    **params)


def test_collector_writes_the_named_file_and_current_logfiles(tmp_path: Path) -> None:
    pglog.configure(collector_cfg(tmp_path), debug=False)
    logging.getLogger("pgpool_py.x").warning("to the file")
    path = pglog.current_log_file()
    assert path is not None and re.fullmatch(r"pgpool-\d{6}\.log", os.path.basename(path))
    assert Path(path).read_text() == "WARNING:  to the file\n"
    assert (tmp_path / "logs" / "current_logfiles").read_text() == f"stderr {path}\n"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_collector_rotates_by_size(tmp_path: Path) -> None:
    pglog.configure(collector_cfg(tmp_path, log_rotation_size="1"), debug=False)
    log = logging.getLogger("pgpool_py.x")
    first = pglog.current_log_file()
    assert first is not None
    time.sleep(1.05)  # the next file is named by the time of the rotation
    log.warning("x" * 1100)
    log.warning("after the limit")
    second = pglog.current_log_file()
    assert second is not None and second != first
    assert "after the limit" in Path(second).read_text()
    assert "after the limit" not in Path(first).read_text()


def test_collector_follows_an_external_rename_and_rotate(tmp_path: Path) -> None:
    pglog.configure(collector_cfg(tmp_path), debug=False)
    log = logging.getLogger("pgpool_py.x")
    path = pglog.current_log_file()
    assert path is not None
    log.warning("one")
    os.rename(path, path + ".old")  # what logrotate does
    log.warning("two")
    assert Path(path).read_text() == "WARNING:  two\n"
    time.sleep(1.05)
    pglog.rotate()
    log.warning("three")
    new = pglog.current_log_file()
    assert new != path and Path(str(new)).read_text() == "WARNING:  three\n"


def test_collector_truncates_on_time_rotation(tmp_path: Path) -> None:
    cfg = collector_cfg(tmp_path, log_filename="fixed.log", log_truncate_on_rotation="on")
    pglog.configure(cfg, debug=False)
    collector = pglog._collector
    assert collector is not None
    log = logging.getLogger("pgpool_py.x")
    log.warning("old period")
    os.utime(collector.path, (time.time() - 100, time.time() - 100))
    collector._next_age = time.time() - 1  # the rotation boundary has passed
    log.warning("new period")
    assert Path(collector.path).read_text() == "WARNING:  new period\n"


def test_session_event_helpers_follow_their_parameters(tmp_path: Path) -> None:
    pglog.configure(collector_cfg(tmp_path, log_connections="on", log_disconnections="on",
                                  log_statement="on", log_per_node_statement="on"), debug=False)
    cfg = collector_cfg(tmp_path, log_connections="on", log_disconnections="on",
                        log_statement="on", log_per_node_statement="on")
    pglog.log_connection(cfg, "127.0.0.1", "5000")
    pglog.log_statement(cfg, "SELECT 1")
    pglog.log_node_statement(cfg, 1, 4242, "SELECT 1")
    pglog.log_disconnection(cfg, time.time() - 3723.5, "alice", "shop", "127.0.0.1", "5000")
    off = collector_cfg(tmp_path)
    pglog.log_connection(off, "10.0.0.1", "1")
    pglog.log_statement(off, "SELECT 2")
    text = Path(str(pglog.current_log_file())).read_text()
    assert text.splitlines() == [
        "LOG:  new connection received",
        "DETAIL:  connecting host=127.0.0.1 port=5000",
        "LOG:  statement: SELECT 1",
        "LOG:  DB node id: 1 backend pid: 4242 statement: SELECT 1",
        "LOG:  frontend disconnection: session time: 1:02:03.500 user=alice database=shop host=127.0.0.1 port=5000",
    ]


def test_size_rotation_to_the_same_name_appends_without_rotating_each_line(tmp_path: Path) -> None:
    pglog.configure(collector_cfg(tmp_path, log_filename="fixed.log", log_rotation_size="1"), debug=False)
    log = logging.getLogger("pgpool_py.x")
    log.warning("x" * 1100)
    log.warning("one")
    collector = pglog._collector
    assert collector is not None and collector._size_floor > 1024
    log.warning("two")
    assert Path(collector.path).read_text().endswith("WARNING:  one\nWARNING:  two\n")


@pytest.mark.parametrize(
    ("min_messages", "sent"),
    [
        ("debug1", ["DEBUG", "LOG", "WARNING"]),
        ("log", ["LOG", "WARNING"]),  # for clients LOG ranks below NOTICE, as in PostgreSQL
        ("notice", ["WARNING"]),
        ("error", []),  # errors reach a client as ErrorResponse, never as a notice
    ],
)
def test_client_min_messages_sends_notices_in_postgresql_client_order(tmp_path: Path, min_messages: str,
                                                                      sent: list[str]) -> None:
    pglog.configure(make_cfg(tmp_path, log_min_messages="warning"), debug=False)
    root = logging.getLogger("pgpool_py")
    assert root.level == logging.INFO
    got: list[bytes] = []
    pglog.set_client(got.append, min_messages)
    try:
        # Only a client asking for DEBUG makes DEBUG records worth creating.
        assert root.level == (logging.DEBUG if sent[:1] == ["DEBUG"] else logging.INFO)
        log = logging.getLogger("pgpool_py.x")
        log.debug("d")
        log.info("l", extra={"detail": "more"})
        log.warning("w")
        log.error("e")
        log.critical("f")
    finally:
        pglog.set_client(None)
    assert root.level == logging.INFO
    fields = [m.parse_error_fields(data[5:]) for data in got]
    assert [f["S"] for f in fields] == sent
    assert all(data[:1] == b"N" for data in got)
    assert {f["S"]: f["C"] for f in fields} == {s: "01000" if s == "WARNING" else "00000" for s in sent}
    if "LOG" in sent:
        assert next(f for f in fields if f["S"] == "LOG")["D"] == "more"
