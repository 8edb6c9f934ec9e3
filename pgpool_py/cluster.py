"""
Throwaway PostgreSQL clusters on loopback, for tests, demos and ``pgpool-py-setup``.

The analogue of pgpool-II's ``pgpool_setup``: node 0 is initdb'd; in streaming mode
the other nodes are ``pg_basebackup -R`` standbys of it, in native mode independent
initdb'd nodes.  Everything listens on 127.0.0.1 with trust authentication, so it is
meant for this machine only.

Layout under a base directory (as pgpool_setup's, minus ``etc/``)::

    data0 .. dataN-1     PostgreSQL data directories
    log/                 PostgreSQL server logs; pgpool's logdir (pgpool_status)
    run/                 unix sockets of PostgreSQL, pgpool and PCP; pgpool's pid file
    pgpool.conf pcp.conf pcppass pool_hba.conf startall shutdownall README.port   (by the CLI)
    failover.sh follow_primary.sh                                                 (by the CLI)

The CLI also wires online recovery and failover to the cluster as docs/online-recovery.md
describes: the recovery scripts from etc/ in every node's data directory, the recovery
functions in ``recovery_database`` of each writable node, health checks and
``failover_command`` (``follow_primary_command`` from 3 nodes on) in pgpool.conf.

PostgreSQL refuses to run as root, so when we are root every server command runs as
the ``postgres`` OS user through ``runuser`` and the directories it writes are owned
by that user.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The OS user that runs PostgreSQL when we are root, and the database superuser in any case.
SERVER_USER = "postgres"
HOST = "127.0.0.1"
PCP_PASSWORD = "postgres"
PG_PACKAGE = "postgresql-15"
# pgpool-II 4.3's names for the clustering modes we can build.
CLUSTERING_MODES = {"streaming": "streaming_replication", "native": "native_replication"}
# A standby normally streams within a second; the bound only catches a broken setup.
STREAMING_TIMEOUT = 30.0

# Where the CLI's pgpool.conf points online recovery; the recovery functions are installed there.
RECOVERY_DATABASE = "postgres"
# Per mode: the recovery commands for pgpool.conf; each names a script in the source's data directory.
RECOVERY_COMMANDS = {
    "streaming": {"recovery_1st_stage_command": "recovery_1st_stage"},
    "native": {"recovery_1st_stage_command": "replication_mode_recovery_1st_stage",
               "recovery_2nd_stage_command": "replication_mode_recovery_2nd_stage"},
}
REMOTE_START_SCRIPT = "pgpool_remote_start"  # the name pgpool_remote_start() runs, fixed
# Seconds; a dead node is noticed within a period (a refused connection fails at once).
HEALTH_CHECK_PERIOD = 5
SR_CHECK_PERIOD = 5
# follow_primary_command only has a standby to move when 3 or more nodes were built.
FOLLOW_PRIMARY_MIN_NODES = 3

_PG_HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
"""


class ClusterError(Exception):
    """A cluster command failed; the message names the command and carries its stderr."""


def find_pg_bin() -> str:
    """The PostgreSQL server binaries: PGPOOL_TEST_PGBIN or PG_BIN, else the newest installed."""
    for var in ("PGPOOL_TEST_PGBIN", "PG_BIN"):
        value = os.environ.get(var)
        if value:
            if not os.path.isfile(os.path.join(value, "initdb")):
                raise ClusterError(f"{var}={value} has no initdb")
            return value
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.isfile(os.path.join(d, "initdb"))]
    if not found:
        raise ClusterError(
            f"PostgreSQL server binaries not found: install the {PG_PACKAGE} package "
            "or set PGPOOL_TEST_PGBIN to their directory"
        )
    return max(found, key=_version_key)


def _version_key(bin_dir: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/9.6/bin -> (9, 6): 15 sorts above 9.6.
    return tuple(int(p) for p in bin_dir.split("/")[-2].split(".") if p.isdigit())


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user_prefix() -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []


def run_as_server_user(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run ``cmd`` as the PostgreSQL server user (via runuser when we are root)."""
    prefix = _server_user_prefix()
    if prefix:
        # The server user may not be allowed into our working directory (e.g. /root).
        kw.setdefault("cwd", "/")
    return subprocess.run(prefix + cmd, **kw)


def _run(cmd: list[str], *, as_server_user: bool = True, timeout: float = 120) -> str:
    """Run a cluster command, return its stdout, raise ClusterError with its stderr on failure."""
    runner = run_as_server_user if as_server_user else subprocess.run
    proc = runner(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ClusterError(f"{shlex.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    out: str = proc.stdout
    return out


def make_server_dir(path: str) -> str:
    """Create ``path`` (and parents) and give it to the server user; returns its absolute path."""
    path = os.path.abspath(path)
    os.makedirs(path, exist_ok=True)
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise ClusterError(
                f"running as root needs an OS user {SERVER_USER!r} to run PostgreSQL "
                f"(the {PG_PACKAGE} package creates it)"
            ) from None
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


@dataclass(eq=False)
class PgNode:
    """One PostgreSQL server of a throwaway cluster."""

    node_id: int
    datadir: str
    port: int
    bin_dir: str
    log_path: str
    host: str = HOST

    def _pg_ctl(self, *args: str) -> str:
        return _run([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.datadir, *args])

    def start(self) -> None:
        self._pg_ctl("-l", self.log_path, "-w", "-t", "60", "-s", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "-t", "60", "-s", "stop")

    def is_running(self) -> bool:
        # pg_ctl status: 0 running, 3 not running, 4 no usable data directory.
        cmd = [os.path.join(self.bin_dir, "pg_ctl"), "-D", self.datadir, "status"]
        return run_as_server_user(cmd, capture_output=True, stdin=subprocess.DEVNULL).returncode == 0

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={SERVER_USER} dbname={dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return run_psql(self.conninfo(dbname), sql, self.bin_dir)


def run_psql(conninfo: str, sql: str, bin_dir: str | None = None) -> str:
    """Run ``sql`` with psql -XAt; returns its output without the final newline."""
    cmd = [os.path.join(bin_dir or find_pg_bin(), "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1",
           "-d", conninfo, "-c", sql]
    return _run(cmd, as_server_user=False).rstrip("\n")


def _initdb(node: PgNode, socket_dir: str) -> None:
    _run([os.path.join(node.bin_dir, "initdb"), "-D", node.datadir, "-U", SERVER_USER,
          "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
    with open(os.path.join(node.datadir, "pg_hba.conf"), "w") as f:
        f.write(_PG_HBA)
    settings = {
        "listen_addresses": f"'{HOST}'",
        "unix_socket_directories": f"'{socket_dir}'",
        "shared_buffers": "16MB",
        "max_connections": "100",
        "wal_level": "replica",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        "wal_keep_size": "64MB",
        # pg_rewind (follow_primary scripts) needs either this or data checksums.
        "wal_log_hints": "on",
        "hot_standby": "on",
        # Throwaway data: durability only costs time.
        "fsync": "off",
        "log_line_prefix": "'%m [%p] '",
    }
    _append_conf(node, settings)


def _append_conf(node: PgNode, settings: Mapping[str, str]) -> None:
    # Later lines win, so appending overrides initdb's (or the primary's copied) values.
    with open(os.path.join(node.datadir, "postgresql.conf"), "a") as f:
        f.write("".join(f"{name} = {value}\n" for name, value in settings.items()))


def _wait_streaming(primary: PgNode, standbys: list[PgNode], synchronous: bool) -> None:
    names = ",".join(f"'server{n.node_id}'" for n in standbys)
    sync_cond = " AND sync_state IN ('sync', 'quorum')" if synchronous else ""
    sql = (f"SELECT count(*) FROM pg_stat_replication"
           f" WHERE state = 'streaming' AND application_name IN ({names}){sync_cond}")
    want = 1 if synchronous else len(standbys)
    deadline = time.monotonic() + STREAMING_TIMEOUT
    while int(primary.psql(sql)) < want:
        if time.monotonic() > deadline:
            raise ClusterError(
                f"standbys {names} not streaming from node {primary.node_id} after {STREAMING_TIMEOUT:.0f}s; "
                f"see {', '.join(n.log_path for n in standbys)}"
            )
        time.sleep(0.1)


def create_cluster(
    base_dir: str,
    num_nodes: int = 2,
    mode: str = "streaming",
    base_port: int | None = None,
    synchronous: bool = False,
) -> list[PgNode]:
    """Create and start ``num_nodes`` servers under ``base_dir``; node i listens on base_port + i.

    Streaming mode: node 0 is the primary, the others are streaming standbys
    (application_name ``serverN``), and this returns once each of them streams.
    Native mode: independent nodes.  Each primary/native node has a database ``test``.
    """
    if mode not in CLUSTERING_MODES:
        raise ClusterError(f"unknown mode {mode!r}: expected one of {', '.join(CLUSTERING_MODES)}")
    if synchronous and (mode != "streaming" or num_nodes < 2):
        raise ClusterError("synchronous replication needs streaming mode and at least 2 nodes")
    bin_dir = find_pg_bin()
    base_dir = make_server_dir(base_dir)
    if run_as_server_user(["test", "-w", base_dir], stdin=subprocess.DEVNULL).returncode != 0:
        raise ClusterError(f"the {SERVER_USER} OS user cannot write to {base_dir}: "
                           "a parent directory is closed to it")
    socket_dir = make_server_dir(os.path.join(base_dir, "run"))
    log_dir = make_server_dir(os.path.join(base_dir, "log"))
    nodes = [
        PgNode(
            node_id=i,
            datadir=os.path.join(base_dir, f"data{i}"),
            port=base_port + i if base_port is not None else free_port(),
            bin_dir=bin_dir,
            log_path=os.path.join(log_dir, f"postgresql{i}.log"),
        )
        for i in range(num_nodes)
    ]
    try:
        _build(nodes, mode, synchronous, socket_dir)
    except BaseException:
        # Leave no server running behind a failed build; the directories stay for the logs.
        for node in nodes:
            if node.is_running():
                node.stop("immediate")
        raise
    return nodes


def _build(nodes: list[PgNode], mode: str, synchronous: bool, socket_dir: str) -> None:
    primary = nodes[0]
    for node in nodes:
        if node is primary or mode == "native":
            _initdb(node, socket_dir)
            _append_conf(node, {"port": str(node.port)})
            node.start()
            node.psql("CREATE DATABASE test")
            continue
        _run([os.path.join(node.bin_dir, "pg_basebackup"), "-D", node.datadir, "-R", "-X", "stream",
              "-c", "fast", "--no-sync",
              "-d", f"host={HOST} port={primary.port} user={SERVER_USER} application_name=server{node.node_id}"])
        _append_conf(node, {"port": str(node.port)})
        node.start()
    if mode == "streaming" and len(nodes) > 1:
        if synchronous:
            primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
            primary.psql("SELECT pg_reload_conf()")
        _wait_streaming(primary, nodes[1:], synchronous)


def destroy_cluster(nodes: list[PgNode]) -> None:
    """Stop every node at once (immediate mode) and remove its data directory."""
    for node in nodes:
        if node.is_running():
            node.stop("immediate")
        shutil.rmtree(node.datadir, ignore_errors=True)


def _conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def write_pgpool_conf(
    path: str,
    nodes: list[PgNode],
    *,
    port: int,
    pcp_port: int,
    mode: str,
    extra: Mapping[str, str | int | bool] | None = None,
) -> None:
    """Write a pgpool.conf (pgpool-II 4.3 names) for ``nodes``; its run/ and log/ dirs sit beside it.

    ``extra`` values are added last (so they win); str values are quoted, int and bool are not.
    """
    if mode not in CLUSTERING_MODES:
        raise ClusterError(f"unknown mode {mode!r}: expected one of {', '.join(CLUSTERING_MODES)}")
    conf_dir = os.path.dirname(os.path.abspath(path))
    run_dir = os.path.join(conf_dir, "run")
    log_dir = os.path.join(conf_dir, "log")
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    params: dict[str, str | int | bool] = {
        "backend_clustering_mode": CLUSTERING_MODES[mode],
        "listen_addresses": HOST,
        "port": port,
        "socket_dir": run_dir,
        "pcp_listen_addresses": HOST,
        "pcp_port": pcp_port,
        "pcp_socket_dir": run_dir,
        "num_init_children": 4,
        "max_pool": 2,
        "logdir": log_dir,
        "pid_file_name": os.path.join(run_dir, "pgpool.pid"),
        "sr_check_user": SERVER_USER,
        "health_check_user": SERVER_USER,
        "health_check_period": 0,
        "search_primary_node_timeout": 5,
    }
    for node in nodes:
        i = node.node_id
        params[f"backend_hostname{i}"] = node.host
        params[f"backend_port{i}"] = node.port
        params[f"backend_weight{i}"] = 1
        params[f"backend_data_directory{i}"] = node.datadir
        params[f"backend_flag{i}"] = "ALLOW_TO_FAILOVER"
        params[f"backend_application_name{i}"] = f"server{i}"
    params.update(extra or {})
    with open(path, "w") as f:
        f.write("# Written by pgpool_py.cluster for a throwaway cluster on this machine.\n")
        f.write("".join(f"{name} = {_conf_value(value)}\n" for name, value in params.items()))


def write_pcp_conf(path: str) -> None:
    """A pcp.conf with user ``postgres``, password PCP_PASSWORD."""
    with open(path, "w") as f:
        # user:md5(password), as `pg_md5 PASSWORD` prints it.
        f.write(f"{SERVER_USER}:{hashlib.md5(PCP_PASSWORD.encode()).hexdigest()}\n")


def write_pcppass(path: str) -> None:
    """A PCPPASSFILE that lets the pcp_* tools log in with ``-U postgres -w`` to any PCP server."""
    with open(path, "w") as f:
        f.write(f"*:*:{SERVER_USER}:{PCP_PASSWORD}\n")
    # libpcp, like libpq, ignores a password file that others can read.
    os.chmod(path, 0o600)


def write_pool_hba_conf(path: str) -> None:
    """A pool_hba.conf that trusts everyone (it is used only with enable_pool_hba = on)."""
    with open(path, "w") as f:
        f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")


def _write_script(path: str, lines: list[str]) -> None:
    with open(path, "w") as f:
        f.write("#!/bin/sh\n# Written by pgpool-py-setup.\n" + "\n".join(lines) + "\n")
    os.chmod(path, 0o755)


def etc_dir() -> str:
    """
    Where the sample scripts the CLI copies and wires to the cluster are: etc/ of the source
    tree, or of an installed package the copy setup.py puts in it (pgpool_py/etc).
    """
    package = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(os.path.dirname(package), "etc"), os.path.join(package, "etc")]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, REMOTE_START_SCRIPT)):
            return candidate
    raise ClusterError(f"the sample scripts are missing: no {REMOTE_START_SCRIPT} in {' or '.join(candidates)}"
                       " (install pgpool-py with pip, or run it from a source tree)")


def _copy_script(name: str, directory: str, *, server_user: bool = False) -> str:
    """Copy etc/``name`` into ``directory``, executable (and the server user's); returns the copy's path."""
    path = os.path.join(directory, name)
    shutil.copyfile(os.path.join(etc_dir(), name), path)
    os.chmod(path, 0o755)
    if server_user and os.geteuid() == 0:
        shutil.chown(path, SERVER_USER, SERVER_USER)
    return path


def _console_script(name: str) -> str:
    # The console script beside our interpreter (a venv's bin/) works without activating the venv.
    script = os.path.join(os.path.dirname(sys.executable), name)
    return script if os.path.exists(script) else name


def _install_recovery(nodes: list[PgNode], mode: str) -> None:
    """The recovery scripts into every node's data directory (any node may become the source),
    the recovery functions into each writable node (standbys get them by replication)."""
    # Imported late: only the CLI needs them.
    import psycopg

    from pgpool_py.recovery.__main__ import install

    for node in nodes:
        for name in [*RECOVERY_COMMANDS[mode].values(), REMOTE_START_SCRIPT]:
            _copy_script(name, node.datadir, server_user=True)
    for node in nodes if mode == "native" else nodes[:1]:
        try:
            install(node.host, node.port, SERVER_USER, RECOVERY_DATABASE)
        except psycopg.Error as exc:
            raise ClusterError(f"could not install the recovery functions on node {node.node_id}: "
                               f"{str(exc).strip()}") from exc


def _cluster_params(directory: str, nodes: list[PgNode], mode: str, pcp_port: int,
                    pcppass: str) -> dict[str, str | int | bool]:
    """pgpool.conf settings for online recovery, health checks and failover; copies the failover
    scripts (etc/failover.sh, from 3 nodes on etc/follow_primary.sh) into ``directory`` for them."""
    params: dict[str, str | int | bool] = {
        "health_check_period": HEALTH_CHECK_PERIOD,
        "recovery_user": SERVER_USER,
        "recovery_database": RECOVERY_DATABASE,
        **RECOVERY_COMMANDS[mode],
    }
    if mode != "streaming":
        return params
    pgbin = f"PGBIN={shlex.quote(nodes[0].bin_dir)}"
    params["sr_check_period"] = SR_CHECK_PERIOD
    failover = shlex.quote(_copy_script("failover.sh", directory))
    params["failover_command"] = f"{pgbin} {failover} %d %h %p %D %m %H %M %P %r %R %N %S"
    if len(nodes) >= FOLLOW_PRIMARY_MIN_NODES:
        follow = shlex.quote(_copy_script("follow_primary.sh", directory))
        node_log = os.path.join(os.path.dirname(nodes[0].log_path), "postgresql%d.log")
        env = [pgbin, f"PCP_HOST={HOST}", f"PCP_PORT={pcp_port}", f"PCPPASSFILE={shlex.quote(pcppass)}",
               f"PCP_ATTACH_NODE={shlex.quote(_console_script('pcp_attach_node'))}",
               f"LOGFILE={shlex.quote(node_log)}"]
        params["follow_primary_command"] = f"{' '.join(env)} {follow} %d %h %p %D %m %H %M %P %r %R"
    return params


def setup(directory: str, mode: str, num_nodes: int, base_port: int | None) -> str:
    """Build a cluster plus pgpool-py configuration in ``directory``; returns what to tell the user
    (also saved as README.port).

    Ports follow pgpool_setup: pgpool = base, PCP = base + 1, PostgreSQL nodes = base + 2 ...
    (free ports when no base is given).
    """
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and os.listdir(directory):
        raise ClusterError(f"{directory} is not empty")
    etc_dir()  # before anything is built
    port = base_port if base_port is not None else free_port()
    pcp_port = base_port + 1 if base_port is not None else free_port()
    nodes = create_cluster(directory, num_nodes, mode, base_port + 2 if base_port is not None else None)
    try:
        _install_recovery(nodes, mode)
    except BaseException:
        for node in nodes:
            node.stop("immediate")
        raise
    conf = os.path.join(directory, "pgpool.conf")
    pcp_conf = os.path.join(directory, "pcp.conf")
    hba_conf = os.path.join(directory, "pool_hba.conf")
    pcppass = os.path.join(directory, "pcppass")
    write_pgpool_conf(conf, nodes, port=port, pcp_port=pcp_port, mode=mode,
                      extra=_cluster_params(directory, nodes, mode, pcp_port, pcppass))
    write_pcp_conf(pcp_conf)
    write_pcppass(pcppass)
    write_pool_hba_conf(hba_conf)

    pgpool = [sys.executable, "-m", "pgpool_py", "-f", conf, "-F", pcp_conf, "-a", hba_conf]
    pg_ctl = _server_user_prefix() + [os.path.join(nodes[0].bin_dir, "pg_ctl")]
    start_nodes = [
        f"{shlex.join(pg_ctl + ['-D', n.datadir, 'status'])} >/dev/null"
        f" || {shlex.join(pg_ctl + ['-D', n.datadir, '-l', n.log_path, '-w', '-s', 'start'])} || exit 1"
        for n in nodes
    ]
    # Extra arguments go to pgpool-py, e.g. `startall -d` for debug messages.
    _write_script(os.path.join(directory, "startall"),
                  ["cd /"] + start_nodes + [f'exec {shlex.join(pgpool)} "$@"'])
    stop_nodes = [
        f"{shlex.join(pg_ctl + ['-D', n.datadir, 'status'])} >/dev/null"
        f" && {shlex.join(pg_ctl + ['-D', n.datadir, '-m', 'fast', '-w', '-s', 'stop'])}"
        for n in reversed(nodes)
    ]
    _write_script(os.path.join(directory, "shutdownall"),
                  ["cd /", f"{shlex.join(pgpool + ['-m', 'fast', 'stop'])} 2>/dev/null"] + stop_nodes + ["exit 0"])

    roles = ["primary"] + ["standby"] * (num_nodes - 1) if mode == "streaming" else ["native"] * num_nodes
    pcp_login = f"-h {HOST} -p {pcp_port} -U {SERVER_USER} -w"
    lines = [f"{CLUSTERING_MODES[mode]} cluster of {num_nodes} PostgreSQL nodes in {directory} (running):"]
    lines += [f"  node {n.node_id}: port {n.port} {role}, {n.datadir}" for n, role in zip(nodes, roles)]
    lines += [
        (f"start pgpool-py in the foreground ({directory}/startall starts stopped nodes first, then it "
         f"with the same arguments; {directory}/shutdownall stops everything):"),
        f"  {_console_script('pgpool-py')} -n -f {conf} -F {pcp_conf} -a {hba_conf}",
        "connect through it:",
        f"  psql -h {HOST} -p {port} -U {SERVER_USER} test",
        f"PCP (user {SERVER_USER}, password {PCP_PASSWORD}):",
        f"  PCPPASSFILE={pcppass} pcp_node_info {pcp_login} 0",
        f"online recovery of a down node N (scripts in each data directory, functions in database {RECOVERY_DATABASE}):",
        f"  PCPPASSFILE={pcppass} pcp_recovery_node {pcp_login} -n N",
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(directory, "README.port"), "w") as f:
        f.write(text)
    return text


def main(argv: list[str] | None = None) -> int:
    """``pgpool-py-setup [-m s|n] [-n N] [-p BASE_PORT] DIR``, like pgpool-II's pgpool_setup."""
    parser = argparse.ArgumentParser(
        prog="pgpool-py-setup",
        description="Create a throwaway PostgreSQL cluster on 127.0.0.1 and a pgpool-py configuration for it.",
    )
    parser.add_argument("-m", dest="mode", choices=["s", "n"], default="s",
                        help="s: streaming replication (default), n: native replication")
    parser.add_argument("-n", dest="num_nodes", type=int, default=2, help="number of PostgreSQL nodes (default 2)")
    parser.add_argument("-p", dest="base_port", type=int, default=None,
                        help="pgpool port; PCP gets +1, the nodes +2.. (default: free ports)")
    parser.add_argument("directory")
    args = parser.parse_args(argv)
    if args.num_nodes < 1:
        parser.error("-n must be at least 1")
    mode = {"s": "streaming", "n": "native"}[args.mode]
    try:
        print(setup(args.directory, mode, args.num_nodes, args.base_port), end="")
    except ClusterError as e:
        print(f"pgpool-py-setup: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
