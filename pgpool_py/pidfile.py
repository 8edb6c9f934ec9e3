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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create(path: str) -> None:
    """Write our pid; a live owner stops us, a stale file is replaced."""
    old = read_pid(path)
    if old is not None and old != os.getpid() and pid_alive(old):
        raise ServerHalt(
            f'pid file "{path}" exists and process {old} is running; is another pgpool-py already running?'
        )
    if old is not None or os.path.exists(path):
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
