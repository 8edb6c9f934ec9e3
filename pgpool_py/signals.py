"""
Signal handling through a wakeup fd.

CPython's C-level handler writes each signal's number, one byte, to a non-blocking
socketpair (``signal.set_wakeup_fd``): every wait that watches that socket ends at once when
a signal arrives (PEP 475 would otherwise resume an interrupted ``select()``/``poll()`` until
its timeout), and ``drain`` turns the bytes into ``pending``.  The bytes are the record, not
the Python-level handler: that one runs only when the interpreter next checks for signals,
which compiled code (mypyc) may not do before it blocks again, so a signal it recorded could
wait behind a wait that had already consumed its byte.  All real work (logging, ``waitpid``,
locks, forks) happens in the loop that pops ``pending``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
from collections import deque
from typing import Final, Iterable

Sig = signal.Signals
_POLL_SETS_KEPT: Final = 64


class SignalQueue:
    """Per-process signal mailbox and doorbell.  Create one *after* a fork, never before."""

    def __init__(self, handled: Iterable[Sig]) -> None:
        self.pending: deque[int] = deque()
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self.wakeup_fd = self._rsock.fileno()
        # A poll set per tuple of fds waited on, made once: a connection's reads wait on the
        # same few.  A poll set is only an array of fd numbers (no kernel state, unlike epoll),
        # so one whose fd was closed and reused is as right as a new one.
        self._pollers: dict[tuple[int, ...], select.poll] = {}
        signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)
        for sig in handled:
            signal.signal(sig, _written_to_the_doorbell)

    def drain(self) -> None:
        """Move the signal numbers the doorbell holds to ``pending``."""
        try:
            while True:
                numbers = self._rsock.recv(4096)
                if not numbers:
                    return
                self.pending.extend(numbers)
        except (BlockingIOError, InterruptedError):
            pass

    def pop_all(self) -> list[int]:
        if not self.pending:
            # The doorbell is drained by the wait that sees it ring, not here: an empty
            # recv() raises, and this runs on every turn of a child's loop.  A signal whose
            # byte is still unread makes the caller's next wait return at once.
            return []
        self.drain()
        out: list[int] = []
        while self.pending:
            out.append(self.pending.popleft())
        return out

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self._rsock.close()
        self._wsock.close()

    def wait(self, fds: Iterable[int], timeout: float | None) -> list[int]:
        """
        Wait until one of ``fds`` is readable, a signal arrives, or ``timeout`` seconds pass.

        Returns the readable fds (never the doorbell).  An empty list means a timeout or a
        signal: the caller looks at ``pending``.
        """
        if self.pending:
            return []
        key = tuple(fds)
        poller = self._pollers.get(key)
        if poller is None:
            if len(self._pollers) >= _POLL_SETS_KEPT:
                self._pollers.clear()
            poller = self._pollers[key] = select.poll()
            for fd in key:
                poller.register(fd, select.POLLIN)
            poller.register(self.wakeup_fd, select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000))
        events = poller.poll(ms)
        ready = []
        for fd, _ev in events:
            if fd == self.wakeup_fd:
                self.drain()
            else:
                ready.append(fd)
        return ready

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on a signal (the seed's ``pause()`` with a bound)."""
        self.wait((), seconds)


def _written_to_the_doorbell(signum: int, frame: object) -> None:
    """The Python-level handler: nothing left to do (the C-level one wrote ``signum`` to the
    doorbell).  Installed so that the signal is caught at all: neither terminates the process
    nor is discarded, as SIG_DFL or SIG_IGN would."""


def reset_to_default(sigs: Iterable[Sig]) -> None:
    for sig in sigs:
        signal.signal(sig, signal.SIG_DFL)


def signal_name(signum: int) -> str:
    try:
        return Sig(signum).name
    except ValueError:
        return str(signum)


def send(pid: int, sig: Sig) -> bool:
    """Send ``sig``; return False when the process is already gone."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
