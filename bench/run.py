"""
Side-by-side benchmark: pgbench through pgpool-py, pgpool-II and PgBouncer, against PostgreSQL directly.

    python bench/run.py [--rounds 2] [--duration 10] [--reuse DIR] [--quick] [--profile [WORKLOAD]]
                        [--targets NAMES] [--workloads PART] [--compare REV] [--sched-batch]
                        [--no-load-balance] [--instructions]

Builds a primary + streaming standby on 127.0.0.1 (``pgbench -i -s 10`` on the primary),
starts each pooler in its own session with the same settings (streaming mode, load
balancing, 32 children, max_pool 4; PgBouncer in session mode in front of the primary),
then runs every workload through every target in turn (A B C D A B C D ...) and reports
the median of the rounds: tps, average latency and the ratio to direct, the CPU time of
all the pooler's processes per transaction, and the whole machine's busy CPU time per
transaction (pgbench and PostgreSQL too: on a saturated machine tps follows it).  Also measured: time from start to the
first client served, connection set-up rate (one client, connect + SELECT 1 + disconnect),
and PSS of main + all children, idle and after the run.

Results go to the terminal and to bench/results/<UTC time>.md.  ``--profile`` instead
samples pgpool-py's processes with py-spy under one workload (``-S`` simple, 8 clients,
unless named) and prints the source lines and functions where their time goes.
``--compare REV`` adds pgpool-py as of a git revision as one more target, to measure a
change against the code before it in the same interleaved run; ``--sched-batch`` adds the
same pgpool-py started under Linux's SCHED_BATCH policy (docs/operations.md), and
``--no-load-balance`` the same pgpool-py with ``load_balance_mode = off``, which routes as
PgBouncer does: every query to the primary.  ``--instructions`` counts
instead, under valgrind's callgrind, the instructions pgpool-py's child executes per
transaction of each workload (one client): a measure that the machine's load does not move.

Every process and directory made here is removed at the end (the cluster stays when it
lives in a ``--reuse`` directory).  A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import linecache
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
# Run from a clone without installing: the cluster builder and pgpool-py come from this tree.
sys.path.insert(0, str(REPO))

try:
    import psycopg
except ImportError:
    VENV_PYTHON = REPO / ".venv" / "bin" / "python"
    if VENV_PYTHON.exists() and Path(sys.executable) != VENV_PYTHON:
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.argv])
    sys.exit("bench: pgpool-py's dependencies are missing: run ./dev test once (it makes .venv), "
             "or run this with a Python that has them")

from pgpool_py.cluster import (
    HOST,
    SERVER_USER,
    ClusterError,
    PgNode,
    create_cluster,
    destroy_cluster,
    find_pg_bin,
    free_port,
    make_server_dir,
    write_pcp_conf,
    write_pgpool_conf,
    write_pool_hba_conf,
)

DBNAME = "test"
SCALE = 10
PGPOOL_II = "/usr/sbin/pgpool"
PGBOUNCER = "/usr/sbin/pgbouncer"
# The pooler settings of the reference measurement.
NUM_INIT_CHILDREN = 32
MAX_POOL = 4
POOLER_SETTINGS: dict[str, str | int | bool] = {
    "num_init_children": NUM_INIT_CHILDREN,
    "max_pool": MAX_POOL,
    "load_balance_mode": True,
}
# Direct clients + each pooler's pooled connections must fit; a bigger cache than
# cluster.py's test default keeps the scale-10 tables in shared memory.
PG_SETTINGS = {"max_connections": "300", "shared_buffers": "128MB"}
READY_TIMEOUT = 30.0
STOP_GRACE = 10.0
CLUSTER_FILE = "bench-cluster.json"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True)
class Workload:
    label: str
    args: tuple[str, ...]
    clients: int


TARGET_NAMES = ("direct", "pgpool-py", "pgpool-II", "PgBouncer")
SCHED_BATCH_TARGET = "pgpool-py-batch"  # --sched-batch: pgpool-py under chrt --batch 0
NO_LOAD_BALANCE_TARGET = "pgpool-py-nolb"  # --no-load-balance: every query to the primary, as PgBouncer
WORKLOADS = [
    Workload("`-S` simple, 8 clients", ("-S", "-M", "simple"), 8),
    Workload("`-S` simple, 32 clients", ("-S", "-M", "simple"), 32),
    Workload("`-S` extended, 8 clients", ("-S", "-M", "extended"), 8),
    Workload("`-S` extended, 32 clients", ("-S", "-M", "extended"), 32),
    Workload("TPC-B simple, 8 clients", ("-M", "simple"), 8),
    Workload("TPC-B extended, 8 clients", ("-M", "extended"), 8),
    Workload("`-S -C` (new connection per transaction), 8 clients", ("-S", "-C"), 8),
]


@dataclass
class Target:
    """Something pgbench connects to: PostgreSQL itself (no process of ours) or a pooler we started."""

    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    start_seconds: float | None = None
    connect_rate: float | None = None
    pss_idle: tuple[int, int] | None = None  # (kB, processes)
    pss_after: tuple[int, int] | None = None


@dataclass
class RunResult:
    tps: float
    latency_ms: float
    # The pooler's CPU time (all its processes) per transaction in µs, (user, system); None for direct.
    cpu_us: tuple[float, float] | None = None
    # Every CPU's busy time per transaction in µs (pgbench, PostgreSQL, the pooler, the kernel's
    # interrupts), and the share of CPU time left idle: what the tps of a saturated machine follows.
    machine_us: float = 0.0
    idle: float = 0.0


@dataclass
class Cell:
    runs: list[RunResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self) -> RunResult | None:
        if not self.runs:
            return None
        cpu = [r.cpu_us for r in self.runs if r.cpu_us]
        cpu_median = (statistics.median(u for u, _ in cpu), statistics.median(s for _, s in cpu)) if cpu else None
        return RunResult(statistics.median(r.tps for r in self.runs),
                         statistics.median(r.latency_ms for r in self.runs), cpu_median,
                         statistics.median(r.machine_us for r in self.runs),
                         statistics.median(r.idle for r in self.runs))


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------

def group_stats(pgid: int) -> dict[int, list[str]]:
    """/proc/PID/stat fields after the command name (state ppid pgrp ...) of each live process of
    process group ``pgid``: a server started in its own session and its children."""
    members = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members[int(entry)] = fields
    return members


def cpu_seconds(pgid: int) -> tuple[float, float]:
    """User and system CPU seconds of the process group, including its reaped children."""
    user = system = 0
    for fields in group_stats(pgid).values():
        # utime stime cutime cstime, in clock ticks
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def machine_ticks() -> tuple[int, int]:
    """Clock ticks of all CPUs since boot: (busy, total), from /proc/stat's first line."""
    with open("/proc/stat") as f:
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def pss_kb(pgid: int) -> tuple[int, int]:
    """Total PSS in kB of the process group, and how many processes it has."""
    total = 0
    pids = list(group_stats(pgid))
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue  # exited meanwhile
    return total, len(pids)


def connect(port: int) -> psycopg.Connection[Any]:
    return psycopg.connect(host=HOST, port=port, user=SERVER_USER, dbname=DBNAME, connect_timeout=5)


def start_server(targets: list[Target], name: str, cmd: list[str], port: int, directory: str,
                 env: dict[str, str] | None = None, user: str | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> Target:
    """Start a pooler in its own session (so the scheduler's autogroups treat all alike) and
    wait until it serves a client; its start time is measured up to that moment."""
    log_path = os.path.join(directory, "server.log")
    started = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=directory, env=env, user=user, start_new_session=True)
    target = Target(name, port, proc, log_path)
    targets.append(target)  # before waiting, so cleanup finds it
    deadline = started + ready_timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode} at start:\n{log_tail(target)}")
        try:
            with connect(port) as conn:
                conn.execute("SELECT 1")
            break
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not serving after {ready_timeout:.0f}s ({e}):\n"
                                 + log_tail(target)) from None
        time.sleep(0.01)
    target.start_seconds = time.monotonic() - started
    log(f"{name} serving on port {port} after {target.start_seconds:.2f}s")
    return target


def log_tail(target: Target, lines: int = 20) -> str:
    try:
        with open(target.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def stop_server(target: Target, grace: float = STOP_GRACE) -> None:
    """Fast shutdown, then SIGKILL whatever of its process group is left."""
    proc = target.proc
    if proc is None:
        return
    if proc.poll() is None:
        # pgpool: SIGINT is fast shutdown; PgBouncer: SIGINT waits for clients, SIGTERM does not.
        proc.send_signal(signal.SIGTERM if target.name == "PgBouncer" else signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log(f"{target.name} did not stop within {grace:.0f}s; killing it")
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def find_program(path: str, package: str) -> str | None:
    """``path`` if installed; installed from ``package`` when we are root; else None (skipped)."""
    if os.path.exists(path):
        return path
    if os.geteuid() != 0:
        log(f"skipping {package}: not installed (sudo apt-get install {package})")
        return None
    log(f"installing {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not any(Path("/var/lib/apt/lists").glob("*_Packages*")):
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not os.path.exists(path):
        log(f"skipping {package}: apt-get install failed: {done.stderr.strip()[-500:]}")
        return None
    return path


# --- the cluster -------------------------------------------------------------------------

def run_checked(cmd: list[str], timeout: float = 600) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def build_cluster(base_dir: str) -> list[PgNode]:
    log(f"building a primary + streaming standby in {base_dir}")
    nodes = create_cluster(base_dir, 2, "streaming")
    try:
        for node in reversed(nodes):
            node.stop()
        for node in nodes:
            # Later lines of postgresql.conf win.
            with open(os.path.join(node.datadir, "postgresql.conf"), "a") as f:
                f.write("".join(f"{name} = {value}\n" for name, value in PG_SETTINGS.items()))
            node.start()
        log(f"pgbench -i -s {SCALE} on the primary")
        run_checked([pgbench_path(), "-i", "-q", "-s", str(SCALE), "-h", HOST, "-p", str(nodes[0].port),
                     "-U", SERVER_USER, DBNAME])
    except BaseException:
        destroy_cluster(nodes)
        raise
    return nodes


def open_cluster(base_dir: str, reuse: bool) -> list[PgNode]:
    """The cluster in ``base_dir``: started again when reused, else built (and recorded for reuse)."""
    record = os.path.join(base_dir, CLUSTER_FILE)
    if reuse and os.path.exists(record):
        with open(record) as f:
            nodes = [PgNode(**n) for n in json.load(f)]
        log(f"reusing the cluster in {base_dir}")
        for node in nodes:
            if not node.is_running():
                node.start()
    else:
        nodes = build_cluster(base_dir)
        with open(record, "w") as f:
            json.dump([asdict(n) for n in nodes], f, indent=1)
    wait_replayed(nodes)
    return nodes


def wait_replayed(nodes: list[PgNode], timeout: float = 120) -> None:
    """Until every standby has replayed the primary's WAL up to now (the pgbench tables included)."""
    lsn = nodes[0].psql("SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    for node in nodes[1:]:
        while node.psql(f"SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}', false)") != "t":
            if time.monotonic() > deadline:
                raise BenchError(f"standby {node.node_id} has not replayed up to {lsn} after {timeout:.0f}s")
            time.sleep(0.2)


# --- the targets -------------------------------------------------------------------------

def start_pgpool(targets: list[Target], name: str, program: list[str], nodes: list[PgNode], work: str,
                 env: dict[str, str] | None = None, settings: dict[str, str | int | bool] | None = None,
                 wrapper: list[str] | None = None, ready_timeout: float = READY_TIMEOUT) -> Target:
    directory = make_server_dir(os.path.join(work, name))
    conf, pcp_conf, hba = (os.path.join(directory, f) for f in ("pgpool.conf", "pcp.conf", "pool_hba.conf"))
    port = free_port()
    write_pgpool_conf(conf, nodes, port=port, pcp_port=free_port(), mode="streaming",
                      extra={**POOLER_SETTINGS, **(settings or {})})
    write_pcp_conf(pcp_conf)
    write_pool_hba_conf(hba)
    return start_server(targets, name, [*(wrapper or []), *program, "-n", "-f", conf, "-F", pcp_conf, "-a", hba],
                        port, directory, env=env, ready_timeout=ready_timeout)


def start_pgbouncer(targets: list[Target], program: str, primary: PgNode, work: str) -> Target:
    # PgBouncer refuses to run as root: it runs as the PostgreSQL server user, in a directory of its own.
    directory = make_server_dir(os.path.join(work, "pgbouncer"))
    port = free_port()
    userlist = os.path.join(directory, "userlist.txt")
    with open(userlist, "w") as f:
        f.write(f'"{SERVER_USER}" ""\n')
    ini = os.path.join(directory, "pgbouncer.ini")
    with open(ini, "w") as f:
        f.write(f"""\
[databases]
* = host={HOST} port={primary.port}
[pgbouncer]
listen_addr = {HOST}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {userlist}
pool_mode = session
max_client_conn = 200
default_pool_size = {NUM_INIT_CHILDREN * 2}
""")
    user = SERVER_USER if os.geteuid() == 0 else None
    return start_server(targets, "PgBouncer", [program, ini], port, directory, user=user)


def revision_env(rev: str, work: str, env: dict[str, str]) -> dict[str, str]:
    """An environment whose ``python -m pgpool_py`` runs the package as of git revision ``rev``."""
    tree = os.path.join(work, "pgpool-py-at-revision")
    os.makedirs(tree)
    listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", rev],
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise BenchError(f"--compare {rev}: {listed.stderr.strip()}")
    # The package, and what setup.py needs to compile its hot modules as they were then (mypy
    # follows pgpool_py's imports into pcp, which an editable install does not show it).
    paths = [p for p in listed.stdout.split()
             if p in ("pgpool_py", "pcp", "setup.py", "setup.cfg", "pyproject.toml", "README.md")]
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, *paths],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
    if "mypycify" in Path(tree, "setup.py").read_text():
        built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree,
                               capture_output=True, text=True, check=False)
        if built.returncode != 0:
            raise BenchError(f"--compare {rev}: compiling failed: {built.stderr.strip()[-2000:]}")
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))}
    found = subprocess.run([sys.executable, "-c", "import pgpool_py; print(pgpool_py.__file__)"], env=env,
                           cwd=tree, capture_output=True, text=True, check=False).stdout.strip()
    if not found.startswith(tree):
        raise BenchError(f"--compare {rev}: python imports pgpool_py from {found or 'nowhere'}, not {tree}")
    return env


def start_targets(args: argparse.Namespace, nodes: list[PgNode], work: str, targets: list[Target]) -> None:
    targets.append(Target("direct", nodes[0].port))
    if "pgpool-py" not in args.targets and args.profile:
        raise BenchError("--profile measures pgpool-py: leave it in --targets")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if args.profile:
        # The profile quotes source lines: those pgpool-py runs, even if the tree changes meanwhile.
        for path in REPO.glob("pgpool_py/**/*.py"):
            linecache.getlines(str(path))
    if "pgpool-py" in args.targets:
        start_pgpool(targets, "pgpool-py", [sys.executable, "-m", "pgpool_py"], nodes, work, env=env)
    if args.profile:
        return
    if args.compare:
        start_pgpool(targets, f"pgpool-py@{args.compare}", [sys.executable, "-m", "pgpool_py"], nodes, work,
                     env=revision_env(args.compare, work, env))
    if args.sched_batch:
        start_pgpool(targets, SCHED_BATCH_TARGET, [sys.executable, "-m", "pgpool_py"], nodes, work, env=env,
                     wrapper=["chrt", "--batch", "0"])
    if args.no_load_balance:
        start_pgpool(targets, NO_LOAD_BALANCE_TARGET, [sys.executable, "-m", "pgpool_py"], nodes, work, env=env,
                     settings={"load_balance_mode": False})
    pgpool_ii = "pgpool-II" in args.targets and find_program(PGPOOL_II, "pgpool2")
    if pgpool_ii:
        start_pgpool(targets, "pgpool-II", [pgpool_ii], nodes, work)
    pgbouncer = "PgBouncer" in args.targets and find_program(PGBOUNCER, "pgbouncer")
    if pgbouncer:
        start_pgbouncer(targets, pgbouncer, nodes[0], work)
    if "direct" not in args.targets:
        targets.pop(0)


# --- pgbench -----------------------------------------------------------------------------

def pgbench_path() -> str:
    return os.path.join(find_pg_bin(), "pgbench")


_TPS = re.compile(r"^tps = ([\d.]+)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.MULTILINE)
_TRANSACTIONS = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


def pgbench(target: Target, args: list[str], clients: int, seconds: int, threads: int = 2) -> RunResult:
    """One pgbench run through ``target``, with the CPU time the pooler spent on it;
    raises BenchError with pgbench's complaint when it fails."""
    cmd = [pgbench_path(), "-n", "-h", HOST, "-p", str(target.port), "-U", SERVER_USER, "-c", str(clients),
           "-j", str(min(threads, clients)), "-T", str(seconds), *args, DBNAME]
    before = cpu_seconds(target.proc.pid) if target.proc else None
    machine_before = machine_ticks()
    # Its own session too: the scheduler weighs pgbench like each server.
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds + 120,
                          stdin=subprocess.DEVNULL, start_new_session=True)
    machine_after = machine_ticks()
    after = cpu_seconds(target.proc.pid) if target.proc else None
    tps, latency, count = (r.search(done.stdout) for r in (_TPS, _LATENCY, _TRANSACTIONS))
    if done.returncode != 0 or not tps or not latency or not count or not int(count.group(1)):
        raise BenchError(f"pgbench exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    per_tx = 1e6 / int(count.group(1))
    busy, total = (a - b for a, b in zip(machine_after, machine_before))
    result = RunResult(float(tps.group(1)), float(latency.group(1)),
                       machine_us=busy / os.sysconf("SC_CLK_TCK") * per_tx, idle=1 - busy / max(total, 1))
    if before and after:
        result.cpu_us = ((after[0] - before[0]) * per_tx, (after[1] - before[1]) * per_tx)
    return result


def connect_rate(target: Target, seconds: int, work: str) -> float:
    """Connections per second of one client that connects, runs SELECT 1 and disconnects, in a loop."""
    script = os.path.join(work, "select1.sql")
    with open(script, "w") as f:
        f.write("SELECT 1;\n")
    return pgbench(target, ["-C", "-f", script], 1, seconds, threads=1).tps


# --- report ------------------------------------------------------------------------------

def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def results_table(targets: list[Target], cells: dict[tuple[str, str], Cell]) -> str:
    names = [t.name for t in targets]
    ratios = [(a, b) for a, b in (("pgpool-py", "pgpool-II"), ("pgpool-py", "PgBouncer")) if b in names]
    ratios += [("pgpool-py", n) for n in names if n.startswith("pgpool-py@")]
    ratios += [(SCHED_BATCH_TARGET, "pgpool-py")] if SCHED_BATCH_TARGET in names else []
    ratios += [(NO_LOAD_BALANCE_TARGET, b) for b in ("pgpool-py", "PgBouncer")
               if NO_LOAD_BALANCE_TARGET in names and b in names]
    head = ["pgbench workload"] + names + [f"{a} / {b}" for a, b in ratios]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for label in dict.fromkeys(label for label, _ in cells):  # the workloads measured, in order
        medians = {n: cells[label, n].median() for n in names}
        direct = medians.get("direct")
        row = [label]
        for n in names:
            m = medians[n]
            if m is None:
                row.append("failed")
                continue
            ratio = f" ({m.tps / direct.tps:.2f})" if direct and n != "direct" else ""
            row.append(f"{fmt_int(m.tps)}, {m.latency_ms:.2f} ms{ratio}")
        for a, b in ratios:
            ma, mb = medians[a], medians[b]
            row.append(f"{ma.tps / mb.tps:.2f}" if ma and mb else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def workload_table(title: str, names: list[str], cells: dict[tuple[str, str], Cell],
                   show: Callable[[RunResult], str]) -> str:
    """A row per workload measured, a column per target in ``names``: ``show`` of the cell's median."""
    lines = [f"| {title} | " + " | ".join(names) + " |", "|---" + "|---:" * len(names) + "|"]
    for label in dict.fromkeys(label for label, _ in cells):
        row = [label]
        for n in names:
            m = cells[label, n].median()
            row.append(show(m) if m else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cpu_table(targets: list[Target], cells: dict[tuple[str, str], Cell]) -> str:
    return workload_table("pooler CPU per transaction, µs user + system", [t.name for t in targets if t.proc], cells,
                          lambda m: f"{m.cpu_us[0]:.0f} + {m.cpu_us[1]:.0f}" if m.cpu_us else "—")


def machine_table(targets: list[Target], cells: dict[tuple[str, str], Cell]) -> str:
    return workload_table("whole machine: busy CPU µs per transaction (idle share)", [t.name for t in targets], cells,
                          lambda m: f"{m.machine_us:.0f} ({m.idle:.0%})")


def servers_table(targets: list[Target]) -> str:
    def mib(v: tuple[int, int] | None) -> str:
        return f"{v[0] / 1024:.0f} MiB ({v[1]} proc.)" if v else "—"

    lines = ["| target | start → first client served | connections/s (1 client) | PSS idle | PSS after the run |",
             "|---|---:|---:|---:|---:|"]
    for t in targets:
        start = f"{t.start_seconds:.2f} s" if t.start_seconds is not None else "—"
        rate = fmt_int(t.connect_rate) if t.connect_rate is not None else "—"
        lines.append(f"| {t.name} | {start} | {rate} | {mib(t.pss_idle)} | {mib(t.pss_after)} |")
    return "\n".join(lines)


def environment() -> str:
    def out(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO)
        except OSError:
            return ""
        # pgpool --version writes to stderr
        return (done.stdout or done.stderr).strip() if done.returncode == 0 else ""

    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "?"
    dirty = " + uncommitted changes" if out(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    # As the bench runs it (the tree on PYTHONPATH): compiled by `./dev build`, or plain Python.
    build = out([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                 "from pgpool_py import relay_build; print(relay_build())"])
    dirty += f" ({build or 'relay not found'})"
    versions = [out([pgbench_path(), "--version"])]
    for program in (PGPOOL_II, PGBOUNCER):
        if os.path.exists(program):
            versions.append((out([program, "--version"]).splitlines() or [program])[0])
    return (f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, pgpool-py at {commit}{dirty}; "
            + "; ".join(versions))


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was besides this benchmark."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- profile -----------------------------------------------------------------------------

def py_spy_path() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if not found:
        raise BenchError("--profile needs py-spy: pip install py-spy (into the venv)")
    return found


_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*):(?P<line>\d+)\)$")


@dataclass
class Samples:
    """py-spy's samples of one pgbench run: per source line (innermost frame) and per function anywhere
    on the stack."""

    result: RunResult
    total: int = 0
    own: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)


def sample(target: Target, workload: Workload, seconds: int, work: str, gil: bool) -> Samples:
    """Run ``workload`` through ``target`` with py-spy sampling all its processes."""
    assert target.proc is not None
    raw = os.path.join(work, "py-spy.txt")
    # --nonblocking: do not pause the processes.  py-spy keeps only samples of a runnable process
    # (on a CPU or waiting for one), and with --gil only those running Python code (system calls
    # release the GIL).
    spy = subprocess.Popen([py_spy_path(), "record", "--pid", str(target.proc.pid), "--subprocesses",
                            "--nonblocking", "--rate", "250", "--format", "raw", "--output", raw,
                            "--duration", str(seconds + 2)] + (["--gil"] if gil else []),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(1)  # attaching to 30-odd processes takes a moment
        samples = Samples(pgbench(target, list(workload.args), workload.clients, seconds))
        _, err = spy.communicate(timeout=seconds + 30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not os.path.exists(raw):
        raise BenchError(f"py-spy failed: {err.strip()[-500:]}")
    with open(raw) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            # Outermost frame first; --subprocesses puts "process PID:..." frames (main, child) on top.
            frames = [fr for fr in stack.split(";") if fr and not fr.startswith("process ")]
            if not frames:
                continue
            n = int(count)
            samples.total += n
            samples.own[frames[-1]] += n
            for function in {_FRAME.sub(r"\g<function> (\g<path>)", fr) for fr in frames}:
                samples.inclusive[function] += n
    if not samples.total:
        raise BenchError("py-spy recorded no samples")
    return samples


def profile(target: Target, workload: Workload, seconds: int, work: str, top: int = 20) -> str:
    """Where pgpool-py's processes spend their time under ``workload``: all runnable samples
    (system calls included) by source line, then those running Python code by line and by function."""
    def source(frame: str) -> str:
        m = _FRAME.match(frame)
        return linecache.getline(str(REPO / m["path"]), int(m["line"])).strip() if m else ""

    def by_line(s: Samples, count: int) -> list[str]:
        rows = ["| % | line | source |", "|---:|---|---|"]
        return rows + [f"| {100 * n / s.total:.1f} | `{fr}` | `{source(fr)}` |" for fr, n in s.own.most_common(count)]

    def header(s: Samples, what: str) -> str:
        cpu = s.result.cpu_us or (0.0, 0.0)
        return (f"{workload.label}, {seconds} s through pgpool-py under py-spy: "
                f"{fmt_int(s.result.tps)} tps; pgpool-py's processes used {cpu[0]:.0f} µs user + "
                f"{cpu[1]:.0f} µs system CPU per transaction. {s.total} samples {what}:")

    runnable = sample(target, workload, seconds, work, gil=False)
    python = sample(target, workload, seconds, work, gil=True)
    # Functions on nearly every stack (main, the child's loop) say nothing.
    inner = [(fr, n) for fr, n in python.inclusive.most_common() if n < 0.95 * python.total][:top]
    lines = [header(runnable, "of a runnable process (running, or woken and waiting for a CPU), by line"), "",
             *by_line(runnable, 10), "",
             header(python, "running Python code (holding the GIL), by line"), "",
             *by_line(python, top), "", "The same samples by function, callees included:", "",
             "| % | function |", "|---:|---|"]
    lines += [f"| {100 * n / python.total:.1f} | `{fr}` |" for fr, n in inner]
    return "\n".join(lines)


# --- instructions ------------------------------------------------------------------------

# Transactions of the two measured sessions: their difference, divided by INSTRUCTION_SPAN,
# leaves out start-up, the session's set-up and shutdown.
INSTRUCTION_RUNS = (1000, 3000)
INSTRUCTION_SPAN = INSTRUCTION_RUNS[1] - INSTRUCTION_RUNS[0]
# One child, reads always on the standby: every transaction takes the same path.
INSTRUCTION_SETTINGS: dict[str, str | int | bool] = {"num_init_children": 1, "backend_weight0": 0}
_TOTALS = re.compile(r"^totals: (\d+)", re.MULTILINE)


def child_instructions(name: str, program: list[str], env: dict[str, str] | None, nodes: list[PgNode], work: str,
                       args: tuple[str, ...], transactions: int) -> int:
    """Instructions (callgrind's Ir) a pgpool's only child executed from its fork to its end,
    having served a warm-up session of 300 transactions and one of ``transactions``."""
    started: list[Target] = []
    label = f"{name}-{len(os.listdir(work))}"
    out = os.path.join(work, label + ".callgrind.%p")
    try:
        target = start_pgpool(started, label, program, nodes, work, env=env,
                              settings=INSTRUCTION_SETTINGS, ready_timeout=300,
                              wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
        child = serving_process(target.port)
        for count in (300, transactions):
            run_checked([pgbench_path(), "-n", "-h", HOST, "-p", str(target.port), "-U", SERVER_USER, "-c", "1",
                         "-t", str(count), *args, DBNAME], timeout=1800)
    finally:
        for t in started:
            stop_server(t, grace=120)  # callgrind writes its files as each process exits
    path = out.replace("%p", str(child))
    try:
        with open(path) as f:
            found = _TOTALS.search(f.read())
    except OSError as e:
        raise BenchError(f"callgrind wrote no {path}: {e}") from None
    if not found:
        raise BenchError(f"no totals in {path}")
    return int(found.group(1))


def serving_process(port: int) -> int:
    """The pid of the process that serves a client of ``port`` (the pooler's child: under
    valgrind no process title tells it)."""
    with connect(port) as conn:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            client_port = sock.getsockname()[1]
        sockets = run_checked(["ss", "-Htnp", "state", "established", f"( dport = :{client_port} )"])
    found = re.search(r"pid=(\d+)", sockets)
    if not found:
        raise BenchError(f"no process serves the client at port {client_port}: {sockets!r}")
    return int(found.group(1))


def instructions(args: argparse.Namespace, nodes: list[PgNode], work: str) -> str:
    """Instructions per transaction of pgpool-py's child under each workload's pgbench
    arguments with one client (and of pgpool-py@REV with --compare, and of pgpool-II's when
    it is a target): unlike tps or CPU time, the same from run to run within about 1%,
    whatever else the machine does."""
    if shutil.which("valgrind") is None:
        raise BenchError("--instructions needs valgrind (apt-get install valgrind)")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    python = [sys.executable, "-m", "pgpool_py"]
    versions: dict[str, tuple[list[str], dict[str, str] | None]] = {"pgpool-py": (python, env)}
    if args.compare:
        versions[f"pgpool-py@{args.compare}"] = (python, revision_env(args.compare, work, env))
    pgpool_ii = "pgpool-II" in args.targets and find_program(PGPOOL_II, "pgpool2")
    if pgpool_ii:
        versions["pgpool-II"] = ([pgpool_ii], None)
    rows: list[tuple[tuple[str, ...], list[float]]] = []
    for w in args.workloads:
        if any(row[0] == w.args for row in rows):
            continue  # the same pgbench arguments with other clients: one client here
        counts = []
        for name, (program, version_env) in versions.items():
            low, high = (child_instructions(name, program, version_env, nodes, work, w.args, n)
                         for n in INSTRUCTION_RUNS)
            counts.append((high - low) / INSTRUCTION_SPAN)
            log(f"{' '.join(w.args)}, {name}: {fmt_int(counts[-1])} instructions per transaction")
        rows.append((w.args, counts))
    names = list(versions)
    ratio_wanted = len(names) > 1  # the first against the second (the revision, or else pgpool-II)
    lines = ["| pgbench, 1 client | " + " | ".join(names) + (f" | {names[0]} / {names[1]} |" if ratio_wanted else " |"),
             "|---|" + "---:|" * (len(names) + ratio_wanted)]
    for w_args, counts in rows:
        ratio = f" {counts[0] / counts[1]:.3f} |" if ratio_wanted else ""
        lines.append(f"| `{' '.join(w_args)}` | " + " | ".join(fmt_int(c) for c in counts) + " |" + ratio)
    return ("Instructions per transaction of the pooler's child (callgrind's Ir): one child, one client, "
            "reads on the standby (`backend_weight0 = 0`); the difference between a session of "
            f"{INSTRUCTION_RUNS[1]} and one of {INSTRUCTION_RUNS[0]} transactions, divided by {INSTRUCTION_SPAN}.\n\n"
            + "\n".join(lines))


# --- main --------------------------------------------------------------------------------

def measure(args: argparse.Namespace, targets: list[Target], work: str) -> str:
    """Everything but the start times; a failing measurement is reported, the others still run."""
    errors = []
    time.sleep(2)  # let every pooler finish forking its children
    for t in targets:
        if t.proc:
            t.pss_idle = pss_kb(t.proc.pid)
        try:
            t.connect_rate = connect_rate(t, args.connect_seconds, work)
            log(f"{t.name}: {fmt_int(t.connect_rate)} connections/s")
        except BenchError as e:
            errors.append(f"- connection set-up rate, {t.name}: {e}")
    # Every child of every pooler gets a client once, so no measured run pays for first connections.
    for t in targets:
        try:
            pgbench(t, ["-S"], NUM_INIT_CHILDREN, args.warmup)
        except BenchError as e:
            errors.append(f"- warm-up, {t.name}: {e}")
    cells = {(w.label, t.name): Cell() for w in args.workloads for t in targets}
    for rnd in range(1, args.rounds + 1):
        for w in args.workloads:
            for t in targets:
                cell = cells[w.label, t.name]
                try:
                    r = pgbench(t, list(w.args), w.clients, args.duration)
                except BenchError as e:
                    cell.errors.append(str(e))
                    log(f"round {rnd}, {w.label}, {t.name}: {e}")
                    continue
                cell.runs.append(r)
                log(f"round {rnd}/{args.rounds}, {w.label}, {t.name}: {fmt_int(r.tps)} tps, {r.latency_ms:.3f} ms")
    for t in targets:
        if t.proc:
            t.pss_after = pss_kb(t.proc.pid)
    errors += [f"- {w}, {n}: {e}" for (w, n), c in cells.items() for e in c.errors]
    return "\n\n".join(filter(None, [
        results_table(targets, cells),
        cpu_table(targets, cells),
        machine_table(targets, cells),
        servers_table(targets),
        "Errors:\n" + "\n".join(" ".join(e.split()) for e in errors) if errors else "",
    ]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[2] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=2, help="rounds of every workload through every target (median)")
    p.add_argument("--duration", type=int, default=10, help="seconds of each pgbench run")
    p.add_argument("--reuse", metavar="DIR", help="keep the cluster in DIR and reuse it on the next run")
    p.add_argument("--quick", action="store_true", help="a smoke check: 3 s runs, 1 round")
    p.add_argument("--profile", nargs="?", const=WORKLOADS[0].label, metavar="WORKLOAD",
                   help="only pgpool-py, sampled with py-spy under a workload (part of its name, "
                        "default: %(const)s): where its time goes")
    p.add_argument("--instructions", action="store_true",
                   help="pgpool-py (--compare REV, pgpool-II if a target) under valgrind's callgrind: "
                        "instructions per transaction of its child, one client per workload; steadier than tps, not exact")
    p.add_argument("--targets", metavar="NAMES", default=",".join(TARGET_NAMES),
                   help="comma-separated subset of %(default)s (while working on one of them)")
    p.add_argument("--workloads", metavar="PART", action="append",
                   help="only the workloads whose name contains PART (repeatable; default: all)")
    p.add_argument("--compare", metavar="REV",
                   help="also run pgpool-py as of git revision REV (target pgpool-py@REV), taking turns "
                        "with the working tree: what a change is worth, in one interleaved run")
    p.add_argument("--sched-batch", action="store_true",
                   help=f"also run pgpool-py under SCHED_BATCH (`chrt --batch 0`, target {SCHED_BATCH_TARGET}), "
                        "taking turns with pgpool-py as it is started by default")
    p.add_argument("--no-load-balance", action="store_true",
                   help=f"also run pgpool-py with load_balance_mode = off (target {NO_LOAD_BALANCE_TARGET}): "
                        "every query to the primary, as PgBouncer routes them")
    args = p.parse_args(argv)
    for option, asked in (("--sched-batch", args.sched_batch), ("--no-load-balance", args.no_load_balance)):
        if asked and (args.instructions or args.profile or "pgpool-py" not in args.targets):
            p.error(f"{option} needs pgpool-py among --targets, and neither --instructions nor --profile")
    args.targets = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in args.targets if n not in TARGET_NAMES]
    if unknown or not args.targets:
        p.error(f"--targets: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(TARGET_NAMES)}")
    args.workloads = [w for w in WORKLOADS if not args.workloads or any(
        part.lower().replace("`", "") in w.label.lower().replace("`", "") for part in args.workloads)]
    if not args.workloads:
        p.error("--workloads matches none of: " + "; ".join(w.label.replace("`", "") for w in WORKLOADS))
    if args.rounds < 1 or args.duration < 1:
        p.error("--rounds and --duration must be at least 1")
    if args.quick:
        args.rounds, args.duration = 1, 3
    if args.profile:
        found = [w for w in WORKLOADS if args.profile.lower().replace("`", "") in w.label.lower().replace("`", "")]
        if len(found) != 1:
            p.error(f"--profile {args.profile!r} names {len(found)} of the workloads: "
                    + "; ".join(w.label.replace("`", "") for w in WORKLOADS))
        args.profile = found[0]
    args.connect_seconds = min(args.duration, 3)
    args.warmup = 1 if args.quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python bench/run.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    # A SIGTERM or SIGHUP unwinds like Ctrl-C, so the cleanup below still runs.
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)

    work = make_server_dir(tempfile.mkdtemp(prefix="pgpool-bench-"))
    nodes: list[PgNode] = []
    targets: list[Target] = []
    try:
        started, load_at_start = time.monotonic(), load_average()
        cluster_dir = make_server_dir(args.reuse) if args.reuse else os.path.join(work, "cluster")
        nodes = open_cluster(cluster_dir, reuse=bool(args.reuse))
        if args.instructions:
            print(instructions(args, nodes, work))
            return 0
        start_targets(args, nodes, work, targets)
        if args.profile:
            print(profile(targets[1], args.profile, args.duration, work))
            return 0
        # What the servers loaded, said now: a tree edited during the run must not change it,
        # and a relay running from source is better known before ten minutes of it.
        setting = environment()
        log(setting)
        body = measure(args, targets, work)
        stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
        report = (f"# pgpool-py benchmark, {stamp}\n\n`{command}` — {args.rounds} round(s) of {args.duration:g} s "
                  f"runs, median; `pgbench -j 2`, scale {SCALE}; poolers: streaming mode, load balancing"
                  f"{f' (not {NO_LOAD_BALANCE_TARGET})' if args.no_load_balance else ''}, "
                  f"{NUM_INIT_CHILDREN} children, max_pool {MAX_POOL}; PgBouncer in session mode. "
                  f"Each cell: tps, average latency (ratio to direct).\n\n"
                  f"{setting}; load average {load_at_start} at the start, {load_average()} at the end; "
                  f"whole run {time.monotonic() - started:.0f} s.\n\n{body}\n")
        results = REPO / "bench" / "results"
        results.mkdir(exist_ok=True)
        path = results / f"{stamp}.md"
        path.write_text(report)
        print(report)
        log(f"written to {path}")
        return 0
    except (BenchError, ClusterError) as e:
        log(f"error: {e}")
        for t in targets:
            if t.proc and t.proc.poll() is not None:
                log(f"{t.name} exited with status {t.proc.returncode}; the end of its log:\n{log_tail(t)}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for t in targets:
            stop_server(t)
        if args.reuse:
            for node in reversed(nodes):
                node.stop()
        else:
            destroy_cluster(nodes)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
