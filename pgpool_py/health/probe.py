"""
One short side connection to a backend under a deadline: connect, run one query, close.

Health checks, the sr_check worker and the primary search all come through here.  It drives
libpq (psycopg's ``pq`` layer) in non-blocking mode and polls its socket itself, so the
deadline bounds the whole exchange (name resolution aside) and no process ever sits blocked in
libpq.  A process with a signal doorbell passes it as ``wakeup_fd``: a signal then calls
``on_wakeup`` at once, which may raise to abandon the probe (a shutdown request).
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, replace
from typing import Callable

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from psycopg.pq.abc import PGconn

from pgpool_py.errors import PgError
from pgpool_py.tls import TLS_NOT_SUPPORTED

Row = tuple["str | None", ...]
# libpq treats a connect_timeout below 2 s as 2 s; our deadline is the real bound anyway.
MIN_LIBPQ_CONNECT_TIMEOUT = 2


class ProbeFailed(PgError):
    """The node could not be reached, refused us, or did not answer before the deadline."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message, sqlstate="08006")
        self.timed_out = timed_out


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    password: str
    database: str
    tls: tuple[tuple[str, str], ...] = ()  # libpq's TLS parameters (tls.libpq_params)

    def conninfo(self, timeout: float) -> bytes:
        params: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.database or "postgres",  # pgpool: an empty database means postgres
            "application_name": "pgpool-py",
            "connect_timeout": max(MIN_LIBPQ_CONNECT_TIMEOUT, int(timeout + 0.999)),
        }
        if self.user:
            params["user"] = self.user
        if self.password:
            params["password"] = self.password
        params.update(self.tls)
        return make_conninfo("", **params).encode()


@dataclass(frozen=True)
class Waker:
    """A doorbell fd to watch besides the socket, and what to do when it rings."""

    fd: int
    on_wakeup: Callable[[], None]


def query(target: Target, sql: str, timeout: float, waker: Waker | None = None) -> list[Row]:
    """
    The rows of ``sql`` (text values) run on ``target``.

    Raises ProbeFailed when the node cannot be reached within ``timeout`` seconds, PgError when
    it answers with an error.
    """
    try:
        return _query(target, sql, timeout, waker)
    except ProbeFailed as exc:
        if target.tls and TLS_NOT_SUPPORTED in exc.message:
            return _query(replace(target, tls=()), sql, timeout, waker)
        raise


def _query(target: Target, sql: str, timeout: float, waker: Waker | None) -> list[Row]:
    deadline = time.monotonic() + timeout
    conn = pq.PGconn.connect_start(target.conninfo(timeout))
    try:
        status: int = pq.PollingStatus.WRITING
        while status != pq.PollingStatus.OK:
            if status == pq.PollingStatus.FAILED or conn.status == pq.ConnStatus.BAD:
                raise ProbeFailed(_message(conn))
            _wait(conn.socket, select.POLLOUT if status == pq.PollingStatus.WRITING else select.POLLIN,
                  deadline, waker)
            status = conn.connect_poll()
        conn.nonblocking = 1
        conn.send_query(sql.encode())
        while conn.flush() == 1:
            _wait(conn.socket, select.POLLOUT, deadline, waker)
        rows: list[Row] = []
        error = ""
        while True:
            while conn.is_busy():
                _wait(conn.socket, select.POLLIN, deadline, waker)
                conn.consume_input()
            res = conn.get_result()
            if res is None:
                break
            if res.status == pq.ExecStatus.TUPLES_OK:
                for r in range(res.ntuples):
                    rows.append(tuple(_text(res.get_value(r, c)) for c in range(res.nfields)))
            elif res.status != pq.ExecStatus.COMMAND_OK:
                error = _text(res.error_message) or "query failed"
        if error:
            raise PgError(error.strip())
        return rows
    except psycopg.OperationalError:  # the connection broke while reading or writing
        raise ProbeFailed(_message(conn)) from None
    finally:
        conn.finish()


def _wait(fd: int, event: int, deadline: float, waker: Waker | None) -> None:
    """Wait until ``fd`` is ready for ``event``; raise ProbeFailed at the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProbeFailed("timed out", timed_out=True)
        poller = select.poll()
        poller.register(fd, event)
        if waker is not None:
            poller.register(waker.fd, select.POLLIN)
        ready = poller.poll(max(1, int(left * 1000)))
        if waker is not None and any(rfd == waker.fd for rfd, _ in ready):
            waker.on_wakeup()
        if any(rfd == fd for rfd, _ in ready):
            return


def _message(conn: PGconn) -> str:
    return (_text(conn.error_message) or "").strip() or "connection failed"


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode(errors="replace")
