"""
``pgpool-py`` command line, with pgpool-II's options:

    pgpool-py [-f pgpool.conf] [-F pcp.conf] [-a pool_hba.conf] [-n] [-D] [-d]
    pgpool-py [-f pgpool.conf] [-m smart|fast|immediate] stop
    pgpool-py [-f pgpool.conf] reload

Options may also come from the environment (``PGPOOL_CONFIG_FILE``, ...), through configargparse.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Sequence

import configargparse

from pgpool_py import __version__, log as pglog, pidfile
from pgpool_py.child.child import RuntimePaths
from pgpool_py.config import Config, load_config
from pgpool_py.errors import ConfigError, ServerHalt

DEFAULT_CONFIG = "/etc/pgpool2/pgpool.conf"
STOP_SIGNALS = {"smart": signal.SIGTERM, "s": signal.SIGTERM, "fast": signal.SIGINT, "f": signal.SIGINT,
                "immediate": signal.SIGQUIT, "i": signal.SIGQUIT}
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
    p.add_argument("-n", "--dont-detach", action="store_true", help="stay in the foreground (the default)")
    p.add_argument("--daemon", action="store_true", help="detach and run in the background")
    p.add_argument("-D", "--discard-status", action="store_true", help="discard the pgpool_status file")
    p.add_argument("-d", "--debug", action="store_true", help="debug logging")
    p.add_argument("-m", "--mode", choices=sorted(STOP_SIGNALS), default="smart", help="shutdown mode for stop")
    p.add_argument("-v", "--version", action="version", version=f"pgpool-py {__version__}")
    p.add_argument("command", nargs="?", choices=("stop", "reload"), help="act on a running server")
    return p


def runtime_paths(args: configargparse.Namespace) -> RuntimePaths:
    config_file = os.path.abspath(args.config_file)
    base = os.path.dirname(config_file)
    return RuntimePaths(
        config_file=config_file,
        pcp_file=os.path.abspath(args.pcp_file or os.path.join(base, "pcp.conf")),
        hba_file=os.path.abspath(args.hba_file or os.path.join(base, "pool_hba.conf")),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = runtime_paths(args)
    pglog.setup("debug1" if args.debug else "warning", debug=args.debug)
    try:
        cfg = load_config(paths.config_file)
    except ConfigError as exc:
        print(f"pgpool-py: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError:
        print(f'pgpool-py: configuration file "{paths.config_file}" does not exist (use -f)', file=sys.stderr)
        return 1
    if args.command == "stop":
        return stop(cfg, args.mode)
    if args.command == "reload":
        return signal_running(cfg, signal.SIGHUP)
    pglog.setup(cfg.log_min_messages, cfg.log_line_prefix, debug=args.debug)
    from pgpool_py.main import Main  # imported late: a stop/reload needs none of it

    try:
        return Main(cfg, paths, discard_status=args.discard_status).run()
    except ServerHalt as exc:
        log.critical("%s", exc.reason)
        return exc.exit_status


def _running_pid(cfg: Config) -> int | None:
    pid = pidfile.read_pid(cfg.pid_file_name)
    if pid is None or not pidfile.pid_alive(pid):
        return None
    return pid


def signal_running(cfg: Config, sig: signal.Signals) -> int:
    pid = _running_pid(cfg)
    if pid is None:
        print(f'pgpool-py: no running server found through pid file "{cfg.pid_file_name}"', file=sys.stderr)
        return 1
    os.kill(pid, sig)
    return 0


def stop(cfg: Config, mode: str) -> int:
    sig = STOP_SIGNALS[mode]
    pid = _running_pid(cfg)
    if pid is None:
        print(f'pgpool-py: no running server found through pid file "{cfg.pid_file_name}"', file=sys.stderr)
        return 1
    print(f"stop request sent to pgpool-py (pid {pid}). waiting for termination...", end="", flush=True)
    sent = 0.0
    while pidfile.pid_alive(pid):
        now = time.monotonic()
        if now - sent >= STOP_RESEND_SECONDS:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            sent = now
        time.sleep(0.1)
    print("done.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
