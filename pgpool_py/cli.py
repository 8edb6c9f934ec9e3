"""
``pgpool-py`` command line, with pgpool-II's options:

    pgpool-py [-f pgpool.conf] [-F pcp.conf] [-a pool_hba.conf] [-k key_file] [-n | --daemon] [-D] [-d]
              [-C] [-x]     (accepted for pgpool-II's command lines, without effect)
    pgpool-py [-f pgpool.conf] [-m smart|fast|immediate] stop
    pgpool-py [-f pgpool.conf] reload
    pgpool-py [-f pgpool.conf] status      (not in pgpool-II; LSB exit codes)

Options may also come from the environment (``PGPOOL_CONFIG_FILE``, ...), through configargparse.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Sequence

import configargparse

from pgpool_py import __version__, log as pglog, pidfile, relay_build
from pgpool_py.config import load_config
from pgpool_py.errors import ConfigError, ServerHalt

if TYPE_CHECKING:
    from pgpool_py.child.child import RuntimePaths

DEFAULT_CONFIG = "/etc/pgpool2/pgpool.conf"
STOP_SIGNALS = {"smart": signal.SIGTERM, "s": signal.SIGTERM, "fast": signal.SIGINT, "f": signal.SIGINT,
                "immediate": signal.SIGQUIT, "i": signal.SIGQUIT}
# LSB exit codes of `status`.
STATUS_RUNNING, STATUS_DEAD_WITH_PIDFILE, STATUS_STOPPED, STATUS_UNKNOWN = 0, 1, 3, 4
# pgpool-II's exit codes when stop (a FATAL: 3) or reload (1) finds no server to signal.
STOP_FAILED, RELOAD_FAILED = 3, 1
STOP_RESEND_SECONDS = 5.0  # pgpool-II re-sends the stop signal every 5 s until the pid is gone

log = logging.getLogger("pgpool_py.cli")


def build_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(
        prog="pgpool-py",
        description="PostgreSQL connection pool server, a drop-in for pgpool-II.",
        auto_env_var_prefix="PGPOOL_",
        args_for_setting_config_path=[],
    )
    p.add_argument("-f", "--config-file", default=DEFAULT_CONFIG, help="pgpool.conf to read (default: %(default)s)")
    p.add_argument("-F", "--pcp-file", default=None, help="pcp.conf (default: beside pgpool.conf)")
    p.add_argument("-a", "--hba-file", default=None, help="pool_hba.conf (default: beside pgpool.conf)")
    p.add_argument("-k", "--key-file", default=None,
                   help="key file for AES passwords in pool_passwd (default: $PGPOOLKEYFILE or ~/.pgpoolkey)")
    detach = p.add_mutually_exclusive_group()
    detach.add_argument("-n", "--dont-detach", action="store_true", help="stay in the foreground (the default)")
    detach.add_argument("--daemon", action="store_true", help="detach and run in the background")
    p.add_argument("-D", "--discard-status", action="store_true", help="discard the pgpool_status file")
    p.add_argument("-d", "--debug", action="store_true", help="debug logging")
    # pgpool-II's other start options, so that a unit file or OPTS written for it still starts.
    p.add_argument("-C", "--clear-oidmaps", action="store_true",
                   help="accepted for pgpool-II compatibility, no effect: it clears the query cache's "
                        "oid maps, and pgpool-py has no query cache")
    p.add_argument("-x", "--debug-assertions", action="store_true",
                   help="accepted for pgpool-II compatibility, no effect (pgpool-II's assertion checks)")
    p.add_argument("-m", "--mode", choices=sorted(STOP_SIGNALS), default="smart", help="shutdown mode for stop")
    p.add_argument("--syslog-socket", default=pglog.DEFAULT_SYSLOG_ADDRESS, metavar="PATH",
                   help="Unix socket of the syslog daemon (default: %(default)s)")
    p.add_argument("-v", "--version", action="version", version=f"pgpool-py {__version__} ({relay_build()})")
    p.add_argument("command", nargs="?", choices=("stop", "reload", "status"),
                   help="act on a running server through the pid file")
    return p


def runtime_paths(args: configargparse.Namespace) -> RuntimePaths:
    from pgpool_py.child.child import RuntimePaths  # the server's side only: stop/status stay quick

    config_file = os.path.abspath(args.config_file)
    base = os.path.dirname(config_file)
    return RuntimePaths(
        config_file=config_file,
        pcp_file=os.path.abspath(args.pcp_file or os.path.join(base, "pcp.conf")),
        hba_file=os.path.abspath(args.hba_file or os.path.join(base, "pool_hba.conf")),
        key_file=os.path.abspath(args.key_file) if args.key_file else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_file = os.path.abspath(args.config_file)
    pglog.setup("debug1" if args.debug else "warning", debug=args.debug)
    try:
        cfg = load_config(config_file)
    except ConfigError as exc:
        print(f"pgpool-py: {exc}", file=sys.stderr)
        return STATUS_UNKNOWN if args.command == "status" else 1
    except FileNotFoundError:
        print(f'pgpool-py: configuration file "{config_file}" does not exist (use -f)', file=sys.stderr)
        return STATUS_UNKNOWN if args.command == "status" else 1
    pid_path = cfg.config_path(cfg.pid_file_name)
    if args.command in ("stop", "reload"):
        # Their errors are log lines, as pgpool-II prints them: FATAL with the configured prefix.
        pglog.setup("debug1" if args.debug else "warning", prefix=cfg.log_line_prefix, debug=args.debug)
    if args.command == "stop":
        return stop(pid_path, args.mode)
    if args.command == "reload":
        return reload(pid_path)
    if args.command == "status":
        return status(pid_path)
    # Imported late: stop, reload and status need none of it.
    from pgpool_py import daemon
    from pgpool_py.main import Main

    paths = runtime_paths(args)
    pglog.syslog_address = args.syslog_socket
    try:
        pglog.configure(cfg, debug=args.debug)
        if args.daemon:
            if "stderr" in cfg.log_destination and not cfg.logging_collector:
                print("pgpool-py: WARNING:  log_destination is stderr and logging_collector is off: "
                      "a daemon's log messages are discarded", file=sys.stderr)
            started = daemon.detach(cfg, pid_path)
            if started is not None:
                return started  # the command's side: the daemon is up, or failed to start
        else:
            pglog.capture_output()
    except ServerHalt as exc:
        print(f"pgpool-py: {exc.reason}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:
        print(f"pgpool-py: could not set up logging: {exc}", file=sys.stderr)
        return 1
    try:
        return Main(cfg, paths, discard_status=args.discard_status).run()
    except ServerHalt as exc:
        log.critical("%s", exc.reason)
        return exc.exit_status


def server_pid(pid_path: str, what: str) -> int | None:
    """
    The pid of the server that ``stop`` or ``reload`` (``what``) is to signal; None when there
    is none, after logging why in pgpool-II's words ("could not read pid file", "could not
    stop process with pid: N" / "No such process").  A live process that is no pgpool is
    not signalled.
    """
    try:
        data = pidfile.read_pid_text(pid_path)
    except ServerHalt as exc:
        log.critical("could not read pid file", extra={"detail": exc.reason})
        return None
    if data is None:
        log.critical("could not read pid file", extra={"detail": f'pid file "{pid_path}" does not exist'})
        return None
    if not data:
        log.critical('EOF detected while reading pid file "%s"', pid_path)
        return None
    pid = pidfile.parse_pid(data)
    if pid is None:
        log.critical("could not read pid file", extra={"detail": f'pid file "{pid_path}" holds no process id'})
        return None
    if not pidfile.pid_alive(pid):
        log.critical("could not %s pid: %d", what, pid, extra={"detail": "No such process"})
        return None
    if pid == os.getpid() or not pidfile.is_pgpool(pid):
        log.critical("could not %s pid: %d", what, pid,
                     extra={"detail": f'process {pid} is "{pidfile.program(pid)}", not pgpool; '
                                      f'the pid file "{pid_path}" is stale'})
        return None
    return pid


def reload(pid_path: str) -> int:
    pid = server_pid(pid_path, "reload configuration file")
    if pid is None:
        return RELOAD_FAILED
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        log.critical("could not reload configuration file pid: %d", pid, extra={"detail": exc.strerror})
        return RELOAD_FAILED
    return 0


def status(pid_path: str) -> int:
    pid = pidfile.running_pid(pid_path)
    if pid is not None:
        print(f"pgpool-py is running (pid {pid})")
        return STATUS_RUNNING
    if os.path.exists(pid_path):
        print(f'pgpool-py is not running, but pid file "{pid_path}" exists')
        return STATUS_DEAD_WITH_PIDFILE
    print("pgpool-py is not running")
    return STATUS_STOPPED


def stop(pid_path: str, mode: str) -> int:
    sig = STOP_SIGNALS[mode]
    pid = server_pid(pid_path, "stop process with")
    if pid is None:
        return STOP_FAILED
    print(f"stop request sent to pgpool-py (pid {pid}). waiting for termination...", end="", flush=True)
    sent = 0.0
    while pidfile.pid_alive(pid):
        now = time.monotonic()
        if now - sent >= STOP_RESEND_SECONDS:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            except OSError as exc:
                print()
                log.critical("could not stop process with pid: %d", pid, extra={"detail": exc.strerror})
                return STOP_FAILED
            sent = now
        time.sleep(0.1)
    print("done.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
