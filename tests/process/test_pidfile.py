"""pidfile.py with real processes: live holders (in pgpool-II's format too), zombies, other programs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgpool_py import pidfile
from pgpool_py.errors import ServerHalt


# Popen returns once the exec has closed its close-on-exec pipe, a moment before the kernel
# sets the new program's command line and name (/proc/PID/cmdline, comm): a test that reads
# them waits for the program to run.
EXEC_BOUND = 5.0


def _pgpool_named_holder() -> subprocess.Popen[bytes]:
    """A process whose command line names pgpool, as every pgpool-py process's does; running."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)",
                               "pgpool"], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
    return holder


def test_a_live_pgpool_holder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pgpool.pid"
    with _pgpool_named_holder() as holder:
        try:
            path.write_text(f"{holder.pid}\n")
            assert pidfile.running_pid(str(path)) == holder.pid
            with pytest.raises(ServerHalt, match=rf"found\. is another pgpool\({holder.pid}\) is running\?$"):
                pidfile.create(str(path))
            assert path.read_text() == f"{holder.pid}\n"
        finally:
            holder.kill()


@pytest.mark.parametrize("contents", [b"%d\0", b"%d", b" %d\n", b"\0%d\0garbage"])
def test_pgpool_ii_pid_files_are_read_as_atoi_reads_them(tmp_path: Path, contents: bytes) -> None:
    """pgpool-II writes "15383\\0": a file it holds is never taken for stale and removed."""
    path = tmp_path / "pgpool.pid"
    with _pgpool_named_holder() as holder:
        try:
            path.write_bytes(contents % holder.pid)
            assert pidfile.read_pid(str(path)) == holder.pid
            assert pidfile.running_pid(str(path)) == holder.pid
            with pytest.raises(ServerHalt, match=rf"is another pgpool\({holder.pid}\) is running\?"):
                pidfile.create(str(path))
            pidfile.remove(str(path))
            assert path.read_bytes() == contents % holder.pid
        finally:
            holder.kill()


@pytest.mark.parametrize("contents", [b"", b"\0", b"abc\n", b"0\0", b"-5\n"])
def test_pid_files_without_a_pid(tmp_path: Path, contents: bytes) -> None:
    path = tmp_path / "pgpool.pid"
    path.write_bytes(contents)
    assert pidfile.read_pid(str(path)) is None
    assert pidfile.running_pid(str(path)) is None
    pidfile.create(str(path))
    assert path.read_text() == f"{os.getpid()}\n"


def test_a_live_process_of_another_program_keeps_its_file(tmp_path: Path) -> None:
    """Never removed while its process lives; stop and reload do not signal it either."""
    path = tmp_path / "pgpool.pid"
    with subprocess.Popen(["sleep", "30"]) as other:
        try:
            deadline = time.monotonic() + EXEC_BOUND
            while Path(f"/proc/{other.pid}/comm").read_text().strip() != "sleep":
                assert time.monotonic() < deadline
                time.sleep(0.01)
            path.write_text(f"{other.pid}\n")
            assert pidfile.running_pid(str(path)) is None
            with pytest.raises(ServerHalt, match=rf'is another pgpool\({other.pid}\) is running\? \(process '
                                                 rf'{other.pid} is "sleep", not pgpool: remove the file if it is stale\)'):
                pidfile.create(str(path))
            assert path.read_text() == f"{other.pid}\n"
        finally:
            other.kill()


def test_a_zombie_leaves_a_stale_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run" / "pgpool.pid"
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not pidfile.pid_alive(zombie.pid)  # exited, not yet reaped
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"{zombie.pid}\n")
        assert pidfile.running_pid(str(path)) is None
        with caplog.at_level(logging.INFO, logger="pgpool_py.pidfile"):
            pidfile.create(str(path))
        assert f'removing stale pid file "{path}" (process {zombie.pid} is not running)' in caplog.text
        assert path.read_text() == f"{os.getpid()}\n"
        pidfile.remove(str(path))
        assert not path.exists()
    finally:
        zombie.wait()
