"""
The one fork helper, process kinds and exit codes.

Every process pgpool-py starts is made here: signals blocked around ``os.fork()``, handlers
reset in the child, a process title set, the target run inside ``try/finally: os._exit()`` so
that a child never returns into the parent's code.  The exit code tells main whether to
respawn (pgpool-II's POOL_EXIT_* contract).
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import signal
import sys
import traceback
from typing import Callable, Iterator

from pgpool_py import proctitle
from pgpool_py.errors import ProcessFatal

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1

# Signals any pgpool-py process may handle; blocked around fork so none lands in the gap
# between fork and the child installing its own handlers.
HANDLED_SIGNALS = (
    signal.SIGCHLD,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# Signals pgpool-py does not use whose default action terminates: main logs and ignores them
# (a stray SIGALRM killed it silently); every other process keeps the default.  Handled, not
# SIG_IGN, so that commands main runs get the default back at exec.  SIGPIPE is ignored by
# Python itself.
STRAY_SIGNALS = (
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
)


class ProcessKind(enum.IntEnum):
    MAIN = 0
    CHILD = 1
    WORKER = 2  # sr_check worker
    HEALTH_CHECK = 3
    PCP = 4
    PCP_WORKER = 5
    FOLLOW_CHILD = 6


class ExitCode(enum.IntEnum):
    NO_RESTART = 0  # POOL_EXIT_NO_RESTART: done, do not respawn
    RESTART = 1  # POOL_EXIT_AND_RESTART: respawn me
    FATAL = 3  # POOL_EXIT_FATAL: stop the whole server


# Set in each process right after fork: what kind it is and which slot it owns (child index,
# node id) — used by the log prefix (%a) and by code that must know where it runs.
current_kind: ProcessKind = ProcessKind.MAIN
current_slot: int = -1
main_pid: int = os.getpid()


def app_name(kind: ProcessKind, slot: int) -> str:
    """pgpool-II's ``%a`` names for non-client processes."""
    return {
        ProcessKind.MAIN: "main",
        ProcessKind.CHILD: "child",
        ProcessKind.WORKER: "sr_check_worker",
        ProcessKind.HEALTH_CHECK: f"health_check{slot}",
        ProcessKind.PCP: "pcp_main",
        ProcessKind.PCP_WORKER: "pcp_child",
        ProcessKind.FOLLOW_CHILD: "follow_child",
    }[kind]


def spawn(
    kind: ProcessKind,
    target: Callable[[], int | None],
    *,
    title: str,
    slot: int = -1,
    before_run: Callable[[], None] | None = None,
) -> int:
    """
    Fork a process that runs ``target()`` and exits with its return value.

    ``before_run`` runs first in the child (e.g. to close the parent's private fds).  Returns
    the child's pid in the parent.
    """
    global current_kind, current_slot
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS + STRAY_SIGNALS)
    # Flush so buffered output is not written twice, once by each process.
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        return pid
    code = int(ExitCode.RESTART)
    try:
        signal.set_wakeup_fd(-1)
        # Until the target installs its own handlers: stop signals keep their default
        # (terminate), and the wake-up/reload/close-idle signals are ignored — a new process
        # has nothing to wake, reload or close yet, and must not die of them.
        for sig in HANDLED_SIGNALS:
            ignore = sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
            signal.signal(sig, signal.SIG_IGN if ignore else signal.SIG_DFL)
        for sig in STRAY_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        current_kind, current_slot = kind, slot
        proctitle.set_title(title)
        if before_run is not None:
            before_run()
        result = target()
        code = int(ExitCode.NO_RESTART) if result is None else int(result)
    except ProcessFatal as exc:
        log.error("%s", exc)
        code = exc.exit_code
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(ExitCode.RESTART)
    except KeyboardInterrupt:
        code = int(ExitCode.NO_RESTART)
    except BaseException:
        try:
            log.critical("unhandled exception in %s process:\n%s", app_name(kind, slot), traceback.format_exc())
        except BaseException:
            pass
        code = int(ExitCode.RESTART)
    finally:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    raise AssertionError("unreachable")  # pragma: no cover


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to signal us when main dies, so no orphan keeps the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the getppid() check still catches it
        pass


def reap() -> Iterator[tuple[int, int | None, int | None]]:
    """Every child process that has exited, without blocking: (pid, exit code, killing signal)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code, sig = describe_status(status)
        yield pid, code, sig


def describe_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, killing signal) of a ``waitpid`` status."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return None, None
