"""pidfile.py with real processes: live holders, zombies, pids reused by other programs."""

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


def test_a_live_pgpool_holder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pgpool.pid"
    # A process whose command line names pgpool, as every pgpool-py process's does.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "pgpool"]) as holder:
        try:
            path.write_text(f"{holder.pid}\n")
            assert pidfile.running_pid(str(path)) == holder.pid
            with pytest.raises(ServerHalt, match=rf"process {holder.pid} is running; is another pgpool-py"):
                pidfile.create(str(path))
            assert path.read_text() == f"{holder.pid}\n"
        finally:
            holder.kill()


def test_zombies_and_other_programs_leave_a_stale_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run" / "pgpool.pid"
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not pidfile.pid_alive(zombie.pid)  # exited, not yet reaped
        with subprocess.Popen(["sleep", "30"]) as other:
            try:
                for pid in (zombie.pid, other.pid):
                    path.parent.mkdir(exist_ok=True)
                    path.write_text(f"{pid}\n")
                    assert pidfile.running_pid(str(path)) is None
                    with caplog.at_level(logging.INFO, logger="pgpool_py.pidfile"):
                        pidfile.create(str(path))
                    assert f'removing stale pid file "{path}" (process {pid} is not running)' in caplog.text
                    assert path.read_text() == f"{os.getpid()}\n"
                    pidfile.remove(str(path))
                    assert not path.exists()
            finally:
                other.kill()
    finally:
        zombie.wait()
