"""
The pid file: refuse to start while its process lives, replace a stale file with a log line.

pgpool-II writes the pid followed by a NUL byte ("15383\\0") and reads it back with atoi();
pgpool-py writes "15383\\n" and reads either, so one pid_file_name serves both programs and
neither starts over the other.
"""

from __future__ import annotations

import logging
import os

from pgpool_py.errors import ServerHalt

log = logging.getLogger(__name__)

_PID_FILE_MAX = 128  # pgpool-II reads this much


def read_pid_text(path: str) -> bytes | None:
    """The raw contents of the pid file, None when there is none; ServerHalt if unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read(_PID_FILE_MAX)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServerHalt(f'could not read pid file "{path}": {exc.strerror}') from exc


def parse_pid(data: bytes) -> int | None:
    """The pid as atoi() reads it: leading blanks and NULs skipped, then digits (anything
    after them, pgpool-II's NUL or our newline, ignored); None for no pid (0 included)."""
    text = data.lstrip(b" \t\n\r\f\v\0")
    end = 0
    while end < len(text) and 0x30 <= text[end] <= 0x39:
        end += 1
    pid = int(text[:end]) if end else 0
    return pid if pid > 0 else None


def read_pid(path: str) -> int | None:
    data = read_pid_text(path)
    return None if data is None else parse_pid(data)


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


def is_pgpool(pid: int) -> bool:
    """Whether ``pid`` is a pgpool (pgpool-II or pgpool-py), not some other program."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"pgpool" in f.read()
    except OSError:
        return True  # no /proc: trust the pid


def program(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def running_pid(path: str) -> int | None:
    """The pid of the live pgpool that holds ``path``, if any: the one stop and reload signal."""
    pid = read_pid(path)
    if pid is None or pid == os.getpid() or not pid_alive(pid) or not is_pgpool(pid):
        return None
    return pid


def check(path: str) -> None:
    """
    Raise ServerHalt when the process named in ``path`` is alive (run before detaching, too).
    As pgpool-II, any live process counts, a program other than pgpool included: the file is
    never taken from under its owner (after a reboot, /run is empty anyway).
    """
    pid = read_pid(path)
    if pid is None or pid == os.getpid() or not pid_alive(pid):
        return
    reason = f'pid file "{path}" found. is another pgpool({pid}) is running?'
    if not is_pgpool(pid):
        reason += f' (process {pid} is "{program(pid)}", not pgpool: remove the file if it is stale)'
    raise ServerHalt(reason)


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
    """Remove the pid file if it is still ours (never another server's)."""
    try:
        if read_pid(path) != os.getpid():
            return
    except ServerHalt:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
