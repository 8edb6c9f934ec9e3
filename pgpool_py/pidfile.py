"""The pid file: refuse to start over a live pgpool-py, replace a stale file with a log line."""

from __future__ import annotations

import logging
import os

from pgpool_py.errors import ServerHalt

log = logging.getLogger(__name__)


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServerHalt(f'could not read pid file "{path}": {exc.strerror}') from exc
    first = text.split()[0] if text else ""
    return int(first) if first.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_pgpool(pid: int) -> bool:
    """After a reboot the pid may belong to another program: then the file is stale."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"pgpool" in f.read()
    except OSError:
        return True  # no /proc: trust the pid


def running_pid(path: str) -> int | None:
    """The pid of the live pgpool-py that holds ``path``, if any."""
    pid = read_pid(path)
    if pid is None or pid == os.getpid() or not pid_alive(pid) or not _is_pgpool(pid):
        return None
    return pid


def check(path: str) -> None:
    """Raise ServerHalt when a live pgpool-py holds ``path`` (run before detaching, too)."""
    pid = running_pid(path)
    if pid is not None:
        raise ServerHalt(
            f'pid file "{path}" exists and process {pid} is running; is another pgpool-py already running?'
        )


def create(path: str) -> None:
    """Write our pid; a live owner stops us, a stale file is replaced."""
    check(path)
    old = read_pid(path)
    if old != os.getpid() and os.path.exists(path):
        log.info('removing stale pid file "%s" (process %s is not running)', path, old if old is not None else "?")
    directory = os.path.dirname(path)
    try:
        if directory:
            os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ServerHalt(f'could not write pid file "{path}": {exc.strerror}') from exc


def remove(path: str) -> None:
    if read_pid(path) == os.getpid():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
