"""
Logging in PostgreSQL's style: ``<prefix>LEVEL:  message`` then ``DETAIL:``/``HINT:`` lines.

``log_line_prefix`` escapes (pgpool-II's): %t time, %m time with ms, %p pid, %a application
name (``main``, ``child``, ``pcp_main``, … or the client's application_name), %u user,
%d database, %r host:port, %h host, %l line number in this process, %% a percent sign.
Pass ``extra={"detail": ..., "hint": ...}`` for the DETAIL/HINT lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from pgpool_py import process

LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "LOG",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}

# log_min_messages → Python level.
MIN_MESSAGES = {
    "debug5": logging.DEBUG, "debug4": logging.DEBUG, "debug3": logging.DEBUG,
    "debug2": logging.DEBUG, "debug1": logging.DEBUG, "debug": logging.DEBUG,
    "info": logging.INFO, "notice": logging.INFO, "log": logging.INFO,
    "warning": logging.WARNING, "error": logging.ERROR, "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

DEFAULT_PREFIX = "%m: %a pid %p: "


class SessionContext:
    """What %a %u %d %r %h print in a child while it serves a client."""

    application_name = ""
    user = ""
    database = ""
    host = ""
    port = ""


session = SessionContext()


def clear_session() -> None:
    session.application_name = session.user = session.database = session.host = session.port = ""


class PgFormatter(logging.Formatter):
    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__()
        self.prefix = prefix
        self._line = 0

    def _render_prefix(self, record: logging.LogRecord) -> str:
        out: list[str] = []
        it = iter(self.prefix)
        for ch in it:
            if ch != "%":
                out.append(ch)
                continue
            esc = next(it, "")
            if esc == "t":
                out.append(time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(record.created)))
            elif esc == "m":
                ms = int(record.msecs)
                out.append(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)) + f".{ms:03d}")
            elif esc == "p":
                out.append(str(record.process))
            elif esc == "a":
                out.append(session.application_name or process.app_name(process.current_kind, process.current_slot))
            elif esc == "u":
                out.append(session.user)
            elif esc == "d":
                out.append(session.database)
            elif esc == "r":
                out.append(f"{session.host}({session.port})" if session.port else session.host)
            elif esc == "h":
                out.append(session.host)
            elif esc == "l":
                out.append(str(self._line))
            elif esc == "%":
                out.append("%")
            else:
                out.append("%" + esc)
        return "".join(out)

    def format(self, record: logging.LogRecord) -> str:
        self._line += 1
        prefix = self._render_prefix(record)
        level = LEVEL_NAMES.get(record.levelno, record.levelname)
        lines = [f"{prefix}{level}:  {record.getMessage()}"]
        for key, label in (("detail", "DETAIL"), ("hint", "HINT")):
            value = getattr(record, key, None)
            if value:
                lines.append(f"{prefix}{label}:  {value}")
        if record.exc_info:
            lines.append(self.formatException(record.exc_info))
        return "\n".join(lines)


_handler: logging.Handler | None = None


def setup(min_messages: str = "warning", prefix: str = DEFAULT_PREFIX, debug: bool = False) -> None:
    """Log to stderr with pgpool's format.  Called in main; children inherit the handler."""
    global _handler
    root = logging.getLogger("pgpool_py")
    if _handler is None:
        _handler = logging.StreamHandler(sys.stderr)
        root.addHandler(_handler)
        root.propagate = False
    _handler.setFormatter(PgFormatter(prefix))
    # LOG-level messages (INFO) are always shown unless log_min_messages is above them,
    # as PostgreSQL ranks LOG above WARNING for the server log.
    level = logging.DEBUG if debug else MIN_MESSAGES.get(min_messages.lower(), logging.WARNING)
    root.setLevel(min(level, logging.INFO))
    _handler.setLevel(logging.DEBUG if debug else min(level, logging.INFO))


def pid() -> int:
    return os.getpid()
