"""SignalQueue: the wait every blocking read of a process goes through."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import pytest

from pgpool_py.signals import SignalQueue


@pytest.fixture
def sigq() -> Iterator[SignalQueue]:
    queue = SignalQueue((signal.SIGUSR2,))
    yield queue
    queue.close()
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)


def test_wait_sees_data_a_signal_and_a_reused_fd(sigq: SignalQueue) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    assert sigq.wait((fd,), 0) == []
    b.send(b"x")
    assert sigq.wait((fd,), 1) == [fd]
    # The same fd number again, now another socket: the poll set kept for it must serve it.
    a.close()
    b.close()
    c, d = socket.socketpair()
    if c.fileno() != fd:
        c, d = d, c
    assert c.fileno() == fd
    assert sigq.wait((fd,), 0) == []
    d.send(b"y")
    assert sigq.wait((fd,), 1) == [fd]
    c.recv(1)
    # A signal rings the doorbell: the wait returns at once, and the signal is recorded.
    os.kill(os.getpid(), signal.SIGUSR2)
    assert sigq.wait((fd,), 5) == []
    assert list(sigq.pending) == [signal.SIGUSR2]
    c.close()
    d.close()


def test_a_signal_is_recorded_from_its_doorbell_byte_alone(sigq: SignalQueue) -> None:
    # What CPython's C-level handler does at once: the signal's number, one byte, to the
    # doorbell.  The Python-level handler may run much later in compiled code (not before the
    # next wait); the wait that consumes the byte must record the signal itself.
    sigq._wsock.send(bytes([signal.SIGINT]))
    assert sigq.wait((), 5) == []
    assert sigq.pop_all() == [signal.SIGINT]
    assert sigq.wait((), 0) == []  # nothing left: a timeout, not another wake-up
    assert sigq.pop_all() == []
