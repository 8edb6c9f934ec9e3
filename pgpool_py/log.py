"""
Logging in PostgreSQL's style: ``<prefix>LEVEL:  message`` then ``DETAIL:``/``HINT:`` lines.

``log_line_prefix`` escapes (pgpool-II's): %t time, %m time with ms, %p pid, %a application
name (``main``, ``child``, ``pcp_main``, … or the client's application_name), %P process name
(``MAIN``, ``CHILD``, …), %u user, %d database (``[No Connection]`` outside a client session),
%l line number in this process, %% a percent sign; PostgreSQL's %r host(port) and %h host
besides.  A number after the % pads the value (``%-10a``); other escapes print nothing.
Pass ``extra={"detail": ..., "hint": ...}`` for the DETAIL/HINT lines.

``client_min_messages``: in a child serving a client, records at or above it (below ERROR)
also go to that client as NoticeResponse, as pgpool-II sends its own messages (``set_client``).

Destinations (``configure(cfg)``): ``log_destination`` stderr and/or syslog, and with
``logging_collector = on`` the stderr stream goes to files in ``log_directory`` named by
``log_filename``, rotated by ``log_rotation_age``/``log_rotation_size``.  There is no
separate logger process: every process appends to the current file itself (O_APPEND makes
each line one atomic write) and follows rotations through ``<log_directory>/current_logfiles``
(PostgreSQL's name), so handlers inherited across fork stay correct without signals.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import sys
import time
from typing import TYPE_CHECKING, Callable

from pgpool_py import process
from pgpool_py.errors import PgError
from pgpool_py.protocol import messages as m

if TYPE_CHECKING:
    from pgpool_py.config import Config

LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "LOG",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}

# PostgreSQL ranks LOG between ERROR and FATAL for the server log: log_min_messages = error
# still shows LOG lines, fatal hides them.  Python's INFO carries LOG.
_LOG_RANK = 45
_MIN_RANKS = {
    "debug5": logging.DEBUG, "debug4": logging.DEBUG, "debug3": logging.DEBUG,
    "debug2": logging.DEBUG, "debug1": logging.DEBUG, "debug": logging.DEBUG,
    "info": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING,
    "error": logging.ERROR, "log": _LOG_RANK, "fatal": logging.CRITICAL, "panic": logging.CRITICAL,
}

# client_min_messages: PostgreSQL's order for clients, where LOG ranks below NOTICE (INFO and
# NOTICE messages pgpool-py has none of).  Errors reach the client as ErrorResponse, never here.
_CLIENT_RANKS = {
    "debug5": logging.DEBUG, "debug4": logging.DEBUG, "debug3": logging.DEBUG,
    "debug2": logging.DEBUG, "debug1": logging.DEBUG, "debug": logging.DEBUG,
    "log": logging.INFO, "info": 25, "notice": 25, "warning": logging.WARNING,
    "error": logging.ERROR, "fatal": logging.ERROR, "panic": logging.ERROR,
}
_NOTICE_SQLSTATES = {logging.WARNING: "01000"}  # PostgreSQL's warning class; others 00000

# syslog severities for our levels, as PostgreSQL maps them (WARNING → NOTICE, ERROR → WARNING).
_SYSLOG_SEVERITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 5, logging.ERROR: 4, logging.CRITICAL: 3}
_SYSLOG_LOCAL0 = 16
DEFAULT_SYSLOG_ADDRESS = "/dev/log"

DEFAULT_PREFIX = "%m: %a pid %p: "
CURRENT_LOGFILES = "current_logfiles"


class SessionContext:
    """What %a %u %d %r %h print in a child while it serves a client.  The names are kept as
    the client sent them (set once per session, by compiled code) and made printable when a
    line is written."""

    application_name = ""
    user = ""
    database = ""
    host = ""
    port = ""
    client = False  # the startup packet was read: %u and %d name the client's (pgpool-II's frontend)


session = SessionContext()

_NOT_ASCII_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, ascii_only: bool = False) -> str:
    """
    A name the client chose, as the log prefix shows it: control characters become '?' (a
    newline in it would forge a log line).  ``ascii_only``: anything outside printable ASCII,
    PostgreSQL's rule for application_name (pg_clean_ascii).
    """
    return (_NOT_ASCII_PRINTABLE if ascii_only else _CONTROL).sub("?", text)


def clear_session() -> None:
    session.application_name = session.user = session.database = session.host = session.port = ""
    session.client = False


NO_CONNECTION = "[No Connection]"  # %u and %d outside a client session, as pgpool-II prints them
# %P: pgpool-II's process names (a health check process has none).
_PROCESS_NAMES = {
    process.ProcessKind.MAIN: "MAIN", process.ProcessKind.CHILD: "CHILD", process.ProcessKind.WORKER: "WORKER",
    process.ProcessKind.HEALTH_CHECK: "", process.ProcessKind.PCP: "PCP CHILD",
    process.ProcessKind.PCP_WORKER: "PCP WORKER", process.ProcessKind.FOLLOW_CHILD: "UTILITY",
}
_PREFIX_ESCAPE = re.compile(r"%(-?[0-9]*)(.?)", re.S)


def _session_name(value: str) -> str:
    if not session.client:
        return NO_CONNECTION
    return value or "[unknown]"


def _parse_prefix(prefix: str) -> list[str | tuple[str, int]]:
    """log_line_prefix as literal strings and (escape, padding) pairs, once per formatter."""
    parts: list[str | tuple[str, int]] = []
    pos = 0
    for match in _PREFIX_ESCAPE.finditer(prefix):
        if match.start() > pos:
            parts.append(prefix[pos : match.start()])
        pos = match.end()
        padding, escape = match.groups()
        if escape == "%" and not padding:
            parts.append("%")
        elif escape:  # unknown escapes, and a lone % at the end, print nothing (pgpool-II)
            parts.append((escape, int(padding) if padding not in ("", "-") else 0))
    if pos < len(prefix):
        parts.append(prefix[pos:])
    return parts


_line_count = 0
_line_pid = 0


def _line_number(record: logging.LogRecord) -> int:
    """%l: the record's number among this process's records, the same for every destination."""
    global _line_count, _line_pid
    number = getattr(record, "pg_line", None)
    if number is None:
        if _line_pid != os.getpid():  # a forked child counts its own lines
            _line_pid, _line_count = os.getpid(), 0
        _line_count += 1
        number = record.pg_line = _line_count
    return int(number)


class PgFormatter(logging.Formatter):
    def __init__(self, prefix: str = DEFAULT_PREFIX, verbosity: str = "default") -> None:
        super().__init__()
        self.prefix = prefix
        self.verbosity = verbosity
        self._parts = _parse_prefix(prefix)

    def _render_prefix(self, record: logging.LogRecord) -> str:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            esc, padding = part
            if esc == "t":  # pgpool-II's %t: no time zone
                value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
            elif esc == "m":
                ms = int(record.msecs)
                value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)) + f".{ms:03d}"
            elif esc == "p":
                value = str(record.process)
            elif esc == "a":
                value = (printable(session.application_name, ascii_only=True)
                         or process.app_name(process.current_kind, process.current_slot))
            elif esc == "P":
                value = _PROCESS_NAMES.get(process.current_kind, "")
            elif esc == "u":
                value = _session_name(printable(session.user))
            elif esc == "d":
                value = _session_name(printable(session.database))
            elif esc == "r":
                value = f"{session.host}({session.port})" if session.port else session.host
            elif esc == "h":
                value = session.host
            elif esc == "l":
                value = str(_line_number(record))
            else:
                continue
            if padding:
                value = value.ljust(-padding) if padding < 0 else value.rjust(padding)
            out.append(value)
        return "".join(out)

    def format_lines(self, record: logging.LogRecord) -> list[str]:
        """The record as its lines: message, then DETAIL/HINT (not when terse), LOCATION (verbose)."""
        prefix = self._render_prefix(record)
        level = LEVEL_NAMES.get(record.levelno, record.levelname)
        lines = [f"{prefix}{level}:  {record.getMessage()}"]
        if self.verbosity != "terse":
            for key, label in (("detail", "DETAIL"), ("hint", "HINT")):
                value = getattr(record, key, None)
                if value:
                    lines.append(f"{prefix}{label}:  {value}")
        if self.verbosity == "verbose":
            lines.append(f"{prefix}LOCATION:  {record.funcName}, {record.filename}:{record.lineno}")
        if record.exc_info:
            lines.append(self.formatException(record.exc_info))
        return lines

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(self.format_lines(record))


class MinMessagesFilter(logging.Filter):
    """``log_min_messages`` with PostgreSQL's order, where LOG ranks above ERROR."""

    def __init__(self, min_messages: str) -> None:
        super().__init__()
        self.threshold = _MIN_RANKS.get(min_messages.lower(), logging.WARNING)

    def filter(self, record: logging.LogRecord) -> bool:
        rank = _LOG_RANK if record.levelno == logging.INFO else record.levelno
        return rank >= self.threshold


def syslog_facility(name: str) -> int:
    """``LOCAL0``..``LOCAL7`` as a syslog facility number."""
    return _SYSLOG_LOCAL0 + int(name.upper().removeprefix("LOCAL"))


class SyslogHandler(logging.Handler):
    """
    One datagram per line to a Unix syslog socket: ``<PRI>Mmm dd hh:mm:ss ident[pid]: line``.

    Each process opens its own socket (a socket inherited across fork is reopened), and a
    missing syslog daemon drops messages instead of failing, as syslog(3) does.
    """

    def __init__(self, address: str, facility: str, ident: str) -> None:
        super().__init__()
        self.address = address
        self.facility = syslog_facility(facility)
        self.ident = ident
        self._sock: socket.socket | None = None
        self._pid = 0

    def _socket(self) -> socket.socket:
        if self._sock is None or self._pid != os.getpid():
            if self._sock is not None and self._pid == os.getpid():
                self._sock.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            self._sock, self._pid = sock, os.getpid()
        return self._sock

    def unreachable(self) -> str | None:
        """Why the syslog socket cannot be used now, or None when it can.  A throwaway socket:
        one kept from here would be inherited by the daemon and every child."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(self.address)
            except OSError as exc:
                return exc.strerror or str(exc)
        return None

    def emit(self, record: logging.LogRecord) -> None:
        formatter = self.formatter
        lines = formatter.format_lines(record) if isinstance(formatter, PgFormatter) else [self.format(record)]
        pri = self.facility * 8 + _SYSLOG_SEVERITY.get(record.levelno, 6)
        stamp = time.localtime(record.created)
        head = f"<{pri}>{time.strftime('%b', stamp)} {stamp.tm_mday:2d} {time.strftime('%H:%M:%S', stamp)} " \
               f"{self.ident}[{os.getpid()}]: "
        try:
            sock = self._socket()
            for line in lines:
                sock.send((head + line).encode("utf-8", "replace"))
        except OSError:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None and self._pid == os.getpid():
            self._sock.close()
        self._sock = None

    def close(self) -> None:
        self._drop()
        super().close()


class CollectorHandler(logging.Handler):
    """
    ``logging_collector``: append to ``log_directory/strftime(log_filename)`` and rotate.

    Rotation by age happens at multiples of ``log_rotation_age`` from local midnight, and
    every process computes the same file name for it; rotation by size (or ``rotate()``)
    names the file by the current time and records it in ``current_logfiles``, which the
    other processes follow.  A file moved away (logrotate) is reopened on the next line.
    """

    def __init__(self, directory: str, pattern: str, mode: int, rotation_age_min: int,
                 rotation_size_kb: int, truncate_on_rotation: bool) -> None:
        super().__init__()
        self.directory = directory
        self.pattern = pattern
        self.mode = mode
        self.age = rotation_age_min * 60
        self.size = rotation_size_kb * 1024
        self.truncate_on_rotation = truncate_on_rotation
        self.capture_stderr = False
        self.pointer = os.path.join(directory, CURRENT_LOGFILES)
        self.path = ""
        self._fd = -1
        self._ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open file
        self._pointer_seen: tuple[int, int] = (0, 0)  # (st_ino, st_mtime_ns) of current_logfiles
        self._next_age = 0.0
        # A size rotation that gets the same name (a coarse log_filename) keeps appending;
        # the limit then counts from this size, so that not every line rotates again.
        self._size_floor = 0
        os.makedirs(directory, exist_ok=True)
        now = time.time()
        self._set_next_age(now)
        self._open(self._file_name(now))
        self._write_pointer()

    def settings(self) -> tuple[object, ...]:
        return (self.directory, self.pattern, self.mode, self.age, self.size, self.truncate_on_rotation)

    def fileno(self) -> int:
        return self._fd

    # -------------------------------------------------------------- files

    def _file_name(self, when: float) -> str:
        return os.path.join(self.directory, time.strftime(self.pattern, time.localtime(when)))

    def _set_next_age(self, now: float) -> None:
        if self.age <= 0:
            self._next_age = float("inf")
            return
        lt = time.localtime(now)
        midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
        self._next_age = midnight + ((now - midnight) // self.age + 1) * self.age

    def _open(self, path: str, truncate_older_than: float | None = None) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, self.mode)
        if truncate_older_than is not None:
            # Several processes reach the boundary together: the lock lets one truncate.
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st = os.fstat(fd)
                if st.st_size and st.st_mtime < truncate_older_than:
                    os.ftruncate(fd, 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.path, self._size_floor = fd, path, 0
        st = os.fstat(fd)
        self._ident = (st.st_dev, st.st_ino)
        if self.capture_stderr:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(fd, 1)
            os.dup2(fd, 2)

    def _write_pointer(self) -> None:
        tmp = f"{self.pointer}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"stderr {self.path}\n")
        os.replace(tmp, self.pointer)
        self._pointer_seen = self._stat_pointer()

    def _stat_pointer(self) -> tuple[int, int]:
        try:
            st = os.stat(self.pointer)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def _read_pointer(self) -> str:
        try:
            with open(self.pointer) as f:
                words = f.read().split(None, 1)
        except FileNotFoundError:
            return ""
        return words[1].strip() if len(words) == 2 else ""

    def _rotate_by_size(self, now: float) -> None:
        lock = os.open(self.pointer + ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self._read_pointer()
            # Another process may have rotated already: join its file while it has room.
            if current and current != self.path and os.path.exists(current) \
                    and os.path.getsize(current) < self.size:
                self._open(current)
                self._pointer_seen = self._stat_pointer()
                return
            name = self._file_name(now)
            self._open(name)
            if name == current:
                self._size_floor = os.fstat(self._fd).st_size
            self._write_pointer()
        finally:
            os.close(lock)

    def rotate(self) -> None:
        """Switch to a file named by the current time now (``pcp_log_rotate``)."""
        with self.lock:  # type: ignore[union-attr]
            self._open(self._file_name(time.time()))
            self._write_pointer()

    def reopen(self) -> None:
        """Reopen the current file by name, e.g. after an external rotation (SIGHUP)."""
        with self.lock:  # type: ignore[union-attr]
            self._open(self.path)

    def _follow(self, now: float) -> None:
        """Before each line: rotate when due, or follow a rotation made by another process."""
        if now >= self._next_age:
            boundary = self._next_age
            self._set_next_age(now)
            self._open(self._file_name(boundary), boundary if self.truncate_on_rotation else None)
            self._write_pointer()
            return
        if self.size > 0 and os.fstat(self._fd).st_size - self._size_floor >= self.size:
            self._rotate_by_size(now)
            return
        seen = self._stat_pointer()
        if seen != self._pointer_seen:
            self._pointer_seen = seen
            current = self._read_pointer()
            if current and current != self.path:
                self._open(current)
                return
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self._ident
        except FileNotFoundError:
            moved = True
        if moved:
            self._open(self.path)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            self._follow(record.created)
            os.write(self._fd, data)
        except OSError as exc:
            if exc.errno != errno.EINTR:
                self.handleError(record)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1
        super().close()


class ClientNoticeHandler(logging.Handler):
    """
    ``client_min_messages``: records at or above it, below ERROR, as NoticeResponse messages
    handed to ``deliver`` (the session's, which sends them between two messages of the
    stream).  Installed in every process; without a client it returns at once, and it is
    reached only by records that are logged anyway (or by DEBUG ones while a client asks for
    them): no cost per statement otherwise.
    """

    def __init__(self) -> None:
        super().__init__()
        self.deliver: Callable[[bytes], None] | None = None
        self.threshold = logging.ERROR
        self._busy = False  # delivering: a record logged meanwhile is not sent (no recursion)

    def emit(self, record: logging.LogRecord) -> None:
        deliver = self.deliver
        level = record.levelno
        if deliver is None or level < self.threshold or level >= logging.ERROR or self._busy:
            return
        self._busy = True
        try:
            deliver(m.notice_response(
                record.getMessage(), severity=LEVEL_NAMES.get(level, record.levelname),
                sqlstate=_NOTICE_SQLSTATES.get(level, "00000"),
                detail=getattr(record, "detail", None) or None, hint=getattr(record, "hint", None) or None,
            ))
        except Exception:  # a logging call never fails its caller; the relay sees a dead client itself
            pass
        finally:
            self._busy = False


# ---------------------------------------------------------------------- configuration

_ROOT = "pgpool_py"
_root = logging.getLogger(_ROOT)  # kept: getLogger takes logging's module lock, twice per session
_stderr: logging.Handler | None = None
_syslog: SyslogHandler | None = None
_collector: CollectorHandler | None = None
_client = ClientNoticeHandler()
_server_level = logging.INFO  # what the destinations need; a client may ask for DEBUG too
_debug = False
_syslog_warned = False  # the unreachable syslog socket was reported (once, not by every process)
syslog_address = DEFAULT_SYSLOG_ADDRESS  # the socket syslog lines go to; tests point it elsewhere


def _install(handlers: list[logging.Handler], formatter: PgFormatter, min_messages: str, debug: bool) -> None:
    global _server_level
    _root.propagate = False
    for old in list(_root.handlers):
        if old not in handlers and old is not _client:
            _root.removeHandler(old)
    level_filter = MinMessagesFilter("debug5" if debug else min_messages)
    for handler in handlers:
        handler.setFormatter(formatter)
        for old_filter in list(handler.filters):
            handler.removeFilter(old_filter)
        handler.addFilter(level_filter)
        if handler not in _root.handlers:
            _root.addHandler(handler)
    if _client not in _root.handlers:
        _root.addHandler(_client)
    _server_level = logging.DEBUG if level_filter.threshold <= logging.DEBUG else logging.INFO
    _set_root_level()


def _set_root_level() -> None:
    client = _client.threshold if _client.deliver is not None else logging.ERROR
    level = min(_server_level, client)
    if _root.level != level:  # setLevel empties every logger's level cache: not twice per session
        _root.setLevel(level)


def set_client(deliver: Callable[[bytes], None] | None, min_messages: str = "notice") -> None:
    """
    A child's session: from now on, records at or above ``min_messages`` (client_min_messages,
    below ERROR) go to its client as NoticeResponse bytes through ``deliver``; None when the
    session ends.  Called at the start of the relay and again when PGPOOL SET changes it.
    """
    _client.deliver = deliver
    _client.threshold = _CLIENT_RANKS.get(min_messages.lower(), 25)
    _set_root_level()


def setup(min_messages: str = "warning", prefix: str = DEFAULT_PREFIX, debug: bool = False) -> None:
    """Log to stderr only: before the configuration is read, and in tools."""
    global _stderr
    if _stderr is None:
        _stderr = logging.StreamHandler(sys.stderr)
    _install([_stderr], PgFormatter(prefix), min_messages, debug)


def configure(cfg: Config, debug: bool | None = None) -> None:
    """
    Log as ``cfg`` says; called at start and again on reload (the collector's settings need a
    restart, so its file stays open).  ``debug`` (``-d``) is kept from the previous call when None.
    """
    global _stderr, _syslog, _collector, _debug, _syslog_warned
    if debug is not None:
        _debug = debug
    handlers: list[logging.Handler] = []
    if cfg.logging_collector:
        wanted = (cfg.config_path(cfg.log_directory), cfg.log_filename, cfg.log_file_mode,
                  cfg.log_rotation_age * 60, cfg.log_rotation_size * 1024, cfg.log_truncate_on_rotation)
        if _collector is None or _collector.settings() != wanted:
            if _collector is not None:
                _collector.close()
            _collector = CollectorHandler(
                cfg.config_path(cfg.log_directory), cfg.log_filename, cfg.log_file_mode, cfg.log_rotation_age,
                cfg.log_rotation_size, cfg.log_truncate_on_rotation,
            )
        if "stderr" in cfg.log_destination:
            handlers.append(_collector)
    elif "stderr" in cfg.log_destination:
        if _stderr is None:
            _stderr = logging.StreamHandler(sys.stderr)
        handlers.append(_stderr)
    if "syslog" in cfg.log_destination:
        if _syslog is None or (_syslog.address, _syslog.ident) != (syslog_address, cfg.syslog_ident):
            _syslog = SyslogHandler(syslog_address, cfg.syslog_facility, cfg.syslog_ident)
        _syslog.facility = syslog_facility(cfg.syslog_facility)
        syslog_error = _syslog.unreachable()
        # With syslog as the only destination and no syslog daemon every line would be lost,
        # start-up errors included: use stderr as well until a reload finds the socket.
        fallback = syslog_error is not None and not handlers
        if fallback:
            if _stderr is None:
                _stderr = logging.StreamHandler(sys.stderr)
            handlers.append(_stderr)
        handlers.append(_syslog)
    else:
        syslog_error = None
    _install(handlers, PgFormatter(cfg.log_line_prefix, cfg.log_error_verbosity), cfg.log_min_messages, _debug)
    if syslog_error is None:
        _syslog_warned = False
    elif not _syslog_warned:
        _syslog_warned = True
        logging.getLogger(__name__).warning(
            'could not connect to the syslog socket "%s": %s%s', syslog_address, syslog_error,
            "; logging to stderr instead" if fallback else "",
        )


def capture_output() -> None:
    """
    With the collector on, point fds 1 and 2 at its file (and at each new file after a
    rotation), so tracebacks and other raw output of every process land in the log too.
    """
    if _collector is not None:
        _collector.capture_stderr = True
        _collector.reopen()


def reopen() -> None:
    """SIGHUP: reopen the log file by its name, for log rotation done by an outside tool."""
    if _collector is not None:
        _collector.reopen()


def rotate() -> None:
    """``pcp_log_rotate``: start a new log file now; the other processes follow it."""
    if _collector is not None:
        _collector.rotate()


def open_fds() -> list[int]:
    """File descriptors logging holds, which daemonizing must keep open."""
    return [_collector.fileno()] if _collector is not None else []


def current_log_file() -> str | None:
    return _collector.path if _collector is not None else None


# ---------------------------------------------------------------------- session events
# Called by the session code; each checks its own parameter so that callers stay one line.

_log_session = logging.getLogger("pgpool_py.session")


def client_host(address: str, cfg: Config) -> str:
    """The client as %h and the connection lines show it: a host name with ``log_hostname``."""
    if not cfg.log_hostname or not address or address == "[local]":
        return address
    try:
        return socket.gethostbyaddr(address)[0]
    except OSError:
        return address


def log_connection(cfg: Config, host: str, port: str) -> None:
    """``log_connections``: a client connected (before authentication)."""
    if cfg.log_connections:
        _log_session.info("new connection received",
                          extra={"detail": f"connecting host={host}" + (f" port={port}" if port else "")})


def log_disconnection(cfg: Config, started: float, user: str, database: str, host: str, port: str) -> None:
    """``log_disconnections``: the session that began at ``started`` (time.time()) ended."""
    if not cfg.log_disconnections:
        return
    elapsed_ms = max(int((time.time() - started) * 1000), 0)
    hours, rest = divmod(elapsed_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, ms = divmod(rest, 1000)
    _log_session.info(
        "frontend disconnection: session time: %d:%02d:%02d.%03d user=%s database=%s host=%s%s",
        hours, minutes, seconds, ms, printable(user), printable(database), host, f" port={port}" if port else "",
    )


def log_statement(cfg: Config, query: str) -> None:
    """``log_statement``: a statement from the client, before it is routed."""
    if cfg.log_statement:
        _log_session.info("statement: %s", query)


def log_node_statement(cfg: Config, node_id: int, backend_pid: int, query: str) -> None:
    """``log_per_node_statement``: a statement as sent to one node."""
    if cfg.log_per_node_statement:
        _log_session.info("DB node id: %d backend pid: %d statement: %s", node_id, backend_pid, query)


_FRONTEND_MESSAGES = {
    ord("Q"): "Query", ord("P"): "Parse", ord("B"): "Bind", ord("E"): "Execute", ord("D"): "Describe",
    ord("C"): "Close", ord("S"): "Sync", ord("H"): "Flush", ord("F"): "FunctionCall", ord("d"): "CopyData",
    ord("c"): "CopyDone", ord("f"): "CopyFail", ord("X"): "Terminate",
}


def log_frontend(cfg: Config, buf: bytes | bytearray, msgs: list[tuple[int, int, int]]) -> None:
    """``log_statement`` and ``log_client_messages`` for messages a client sent: (type, start,
    end) in ``buf``.  The relays call it only while one of the two is on."""
    for typ, start, end in msgs:
        detail = None
        if typ in (0x51, 0x50):  # Query, Parse: the statement
            body = bytes(buf[start:end])
            if typ == 0x51:
                text = m.query_bytes(body).decode(errors="replace")
                detail = f'query: "{text}"'
            else:
                try:
                    name, raw = m.parse_parse_bytes(body)
                except PgError:
                    name, raw = b"", b""
                text = raw.decode(errors="replace")
                detail = f'statement: "{name.decode(errors="replace")}", query: "{text}"'
            log_statement(cfg, text)
        log_client_message(cfg, _FRONTEND_MESSAGES.get(typ, repr(chr(typ))), detail)


def log_client_message(cfg: Config, kind: str, detail: str | None = None) -> None:
    """``log_client_messages``: one protocol message from the client, e.g. ("Parse", 'statement: "S1"')."""
    if cfg.log_client_messages:
        _log_session.info("%s message from frontend.", kind, extra={"detail": detail})
