"""
``pgpool-py --daemon``: detach from the terminal with python-daemon.

Everything that can fail for a reason the user must see (a live server on the pid file, a
log directory that cannot be created) is checked before detaching, while the terminal still
shows errors.  Sockets and shared memory are created afterwards by Main.run, in the daemon.

The command returns only when the daemon accepts connections (exit 0) or has died trying
(exit 1), so init scripts need not guess: the daemon and every process it forks hold the
write end of a pipe, and the waiting command sees end-of-file when they are all gone.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time

import daemon

from pgpool_py import log as pglog
from pgpool_py import pidfile, process
from pgpool_py.config import Config

# Files the daemon creates (pid file, status file, sockets) are readable by all but writable
# by the owner only; log files get log_file_mode regardless.
DAEMON_UMASK = 0o022
START_TIMEOUT = 60.0  # seconds the command waits for the daemon to accept connections
_PROBE_INTERVAL = 0.1
_SETTLE_SECONDS = 0.5  # after a probe succeeds, time for a failed bind to show as our exit


def detach(cfg: Config, pid_path: str) -> int | None:
    """
    Become a daemon: double fork, new session, working directory = the configuration's
    directory (so relative paths in pgpool.conf keep their meaning), stdin/stdout/stderr on
    /dev/null — or on the collector's log file, so tracebacks are not lost.

    Returns None in the daemon; in the original process, the exit status for the command.
    Raises ServerHalt, before detaching, when a live pgpool-py holds ``pid_path``.
    """
    pidfile.check(pid_path)
    alive_r, alive_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not process.spawn: this child does not run a target and exit, it goes on to become the
    # server; the parent only waits for the outcome.
    first = os.fork()
    if first:
        os.close(alive_w)
        try:
            return _wait_started(cfg, pid_path, alive_r)
        finally:
            os.waitpid(first, 0)  # python-daemon's intermediate process exits at once
    os.close(alive_r)
    context = daemon.DaemonContext(
        working_directory=cfg.config_dir,
        umask=DAEMON_UMASK,
        detach_process=True,
        # Main installs its own handlers through the signal doorbell; python-daemon's
        # defaults (SIGTERM raising SystemExit, SIGTSTP ignored...) would get in its way.
        signal_map={},
        # alive_w is never written: it only has to stay open while the server lives.
        files_preserve=[*pglog.open_fds(), alive_w],
    )
    context.open()
    process.main_pid = os.getpid()
    pglog.capture_output()
    return None


def _wait_started(cfg: Config, pid_path: str, alive_r: int) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    probe_ok = False
    while True:
        readable, _, _ = select.select([alive_r], [], [], _SETTLE_SECONDS if probe_ok else _PROBE_INTERVAL)
        if readable and not os.read(alive_r, 1):
            print("pgpool-py: the server exited during start-up; see its log for why", file=sys.stderr)
            return 1
        if probe_ok:
            return 0
        # Our pid in the pid file means Main.run began, so the answering socket is ours — unless
        # another server holds the port, and then ours dies within the settle time.
        probe_ok = pidfile.running_pid(pid_path) is not None and _accepting(cfg)
        if time.monotonic() > deadline:
            print(f"pgpool-py: the server does not accept connections after {START_TIMEOUT:.0f} s; "
                  "it keeps starting in the background, see its log", file=sys.stderr)
            return 1


def _accepting(cfg: Config) -> bool:
    """Whether a listen socket of ``cfg`` takes connections (a bare connect, never a session)."""
    targets: list[tuple[int, str | tuple[str, int]]] = []
    # TCP first: TCP_DEFER_ACCEPT keeps a probe that sends nothing away from the children.
    for addr in (a.strip() for a in cfg.listen_addresses.split(",")):
        if addr:
            host = "127.0.0.1" if addr == "*" else addr
            targets.append((socket.AF_INET6 if ":" in host else socket.AF_INET, (host, cfg.port)))
    for directory in cfg.unix_socket_directories:
        targets.append((socket.AF_UNIX, os.path.join(cfg.config_path(directory), f".s.PGSQL.{cfg.port}")))
    for family, address in targets:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(address)
                return True
            except OSError:
                continue
    return False
