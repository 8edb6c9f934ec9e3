"""
Operations for real: daemon mode and its pid file, logging to files and syslog, reload,
the init script and the systemd unit's command lines.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgpool_py
from pgpool_py import pidfile
from pgpool_py.cluster import HOST, SERVER_USER, PgNode, free_port, write_pcp_conf, write_pgpool_conf, \
    write_pool_hba_conf

REPO = Path(pgpool_py.__file__).resolve().parent.parent
INIT_SCRIPT = REPO / "etc" / "init.d" / "pgpool-py"
SYSTEMD_UNIT = REPO / "etc" / "systemd" / "pgpool-py.service"
READY_TIMEOUT = 15.0


class Site:
    """A pgpool.conf and friends in one directory, and ways to run pgpool-py on them."""

    def __init__(self, directory: Path, nodes: list[PgNode], extra: dict[str, str | int | bool]) -> None:
        self.dir = directory
        self.conf = directory / "pgpool.conf"
        self.port = free_port()
        self.log_dir = directory / "log"
        self.pid_path = directory / "run" / "pgpool.pid"
        params: dict[str, str | int | bool] = {
            "logging_collector": True,
            "log_directory": "log",  # relative to the configuration directory
            "log_filename": "pgpool.log",
            "log_line_prefix": "%a pid %p: ",
            "pid_file_name": "run/pgpool.pid",
        }
        params.update(extra)
        write_pgpool_conf(str(self.conf), nodes, port=self.port, pcp_port=free_port(), mode="streaming",
                          extra=params)
        write_pcp_conf(str(directory / "pcp.conf"))
        write_pool_hba_conf(str(directory / "pool_hba.conf"))
        # The program as an operator installs it: one executable file.
        self.program = directory / "pgpool-py"
        self.program.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} '
                                f'exec {shlex.quote(sys.executable)} -m pgpool_py "$@"\n')
        self.program.chmod(0o755)

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.program), "-f", str(self.conf), *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def set(self, line: str) -> None:
        with open(self.conf, "a") as f:
            f.write(line + "\n")

    @property
    def log_file(self) -> Path:
        return self.log_dir / "pgpool.log"

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def pid(self) -> int:
        return int(self.pid_path.read_text().split()[0])

    def connect(self, dbname: str = "test", application_name: str = "") -> psycopg.Connection[tuple[str, ...]]:
        return psycopg.connect(host=HOST, port=self.port, user=SERVER_USER, dbname=dbname, connect_timeout=5,
                               application_name=application_name)

    def show(self, name: str) -> str:
        with self.connect() as conn:
            row = conn.execute(f"PGPOOL SHOW {name}").fetchone()
            assert row is not None
            return str(row[0])

    def wait_ready(self) -> None:
        wait_for(lambda: self._ready(), READY_TIMEOUT, lambda: "pgpool-py not ready\n" + self.log_text())

    def _ready(self) -> bool:
        try:
            with self.connect() as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def wait_log(self, pattern: str) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.log_text(), re.M)
            if match:
                found.append(match)
            return match is not None

        wait_for(seen, 10, lambda: f"no log line matching {pattern!r}\n{self.log_text()}")
        return found[0]

    def kill_all(self) -> None:
        """Teardown: nothing of this site may outlive the test."""
        pid = pidfile.read_pid(str(self.pid_path))
        if pid is not None:
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(check: Callable[[], bool], timeout: float, explain: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(explain())
        time.sleep(0.1)


@pytest.fixture
def make_site(tmp_path: Path, pg_cluster: list[PgNode]) -> Iterator[Callable[..., Site]]:
    sites: list[Site] = []

    def make(**extra: str | int | bool) -> Site:
        directory = tmp_path / f"site{len(sites)}"
        directory.mkdir()
        site = Site(directory, pg_cluster, extra)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.kill_all()


@pytest.fixture
def syslog_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "syslog.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_daemon_pidfile_logging_reload_and_stop(
    make_site: Callable[..., Site], syslog_socket: tuple[str, socket.socket]
) -> None:
    syslog_path, syslog = syslog_socket
    site = make_site(log_destination="stderr,syslog", syslog_facility="LOCAL1", syslog_ident="pgpool-test")
    # A pid file left by a crash names a process that is gone.
    site.pid_path.parent.mkdir(exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    site.pid_path.write_text(f"{dead.pid}\n")
    assert site.run("status").returncode == 1

    started = time.monotonic()
    first = site.run("--daemon", "--syslog-socket", syslog_path)
    assert first.returncode == 0, first.stderr
    assert time.monotonic() - started < 10  # the command returns once detached
    site.wait_ready()
    pid = site.pid()
    assert pid != dead.pid
    assert os.getsid(pid) != os.getsid(0)  # a session of its own, no terminal
    assert os.readlink(f"/proc/{pid}/cwd") == str(site.dir)
    site.wait_log(rf'^main pid {pid}: LOG:  removing stale pid file ".*pgpool.pid" \(process {dead.pid} ')
    site.wait_log(rf"^main pid {pid}: LOG:  pgpool-py successfully started")

    # The same lines through syslog: LOCAL1 (17) * 8 + info (6) = 142.
    datagrams: list[str] = []
    while not any("successfully started" in d for d in datagrams):
        datagrams.append(syslog.recv(65536).decode())
    assert re.fullmatch(rf"<142>\w{{3}} [ \d]\d \d\d:\d\d:\d\d pgpool-test\[{pid}\]: main pid {pid}: "
                        r"LOG:  pgpool-py successfully started.*", datagrams[-1])

    # A second start is refused on the terminal, before detaching.
    second = site.run("--daemon")
    assert second.returncode == 1
    assert f'pid file "{site.pid_path}" found. is another pgpool({pid}) is running?' in second.stderr
    assert site.run("status").stdout.strip() == f"pgpool-py is running (pid {pid})"

    # Children write to the same file as main (inherited handler, O_APPEND).
    with pytest.raises(psycopg.OperationalError):
        site.connect(dbname="no_such_db", application_name="opstest").close()
    child_line = site.wait_log(r"^opstest pid (\d+): (ERROR|WARNING|FATAL):  .*no_such_db")
    assert int(child_line.group(1)) != pid

    # Reload: a reloadable change reaches new sessions, a restart-only one warns and stays.
    # Moving the log file away first shows SIGHUP's reopen (what logrotate expects).
    old_log = site.log_file.with_suffix(".log.1")
    site.log_file.rename(old_log)
    site.set("client_idle_limit = 42")
    site.set("num_init_children = 7")
    assert site.run("reload").returncode == 0
    site.wait_log(r'^main pid \d+: WARNING:  parameter "num_init_children" cannot be changed without restarting')
    assert "reload config files." in site.log_text()
    assert "successfully started" not in site.log_text()
    wait_for(lambda: site.show("client_idle_limit") == "42s", 10, lambda: "client_idle_limit not reloaded")
    assert site.show("num_init_children") == "4"

    # A configuration with an error is rejected as a whole; the running one stays.
    site.set("client_idle_limit = 9")
    site.set("load_balance_mode = maybe")
    refused = site.run("reload")  # the command checks the file first and says what is wrong
    assert refused.returncode == 1 and 'parameter "load_balance_mode"' in refused.stderr
    os.kill(pid, signal.SIGHUP)  # as systemd's ExecReload does: the server rejects it itself
    site.wait_log(r"^main pid \d+: ERROR:  reload rejected; the running configuration stays")
    site.wait_log(r"^main pid \d+: DETAIL:  .*load_balance_mode")
    time.sleep(0.5)
    assert site.show("client_idle_limit") == "42s"

    # stop needs pid_file_name from a file that loads (see the report: a lenient reader is wanted).
    site.conf.write_text(site.conf.read_text().replace("load_balance_mode = maybe\n", ""))
    stopped = site.run("-m", "fast", "stop")
    assert stopped.returncode == 0
    assert stopped.stdout.endswith("done.\n")
    assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert not site.pid_path.exists()
    assert "received fast shutdown request" in site.log_text()
    assert site.run("status").returncode == 3
    assert site.run("reload").returncode == 1


def init_script(site: Site, *args: str, defaults: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The init script on ``site``; settings from the environment, or from a ``defaults`` file."""
    env = {
        "PATH": os.environ["PATH"],
        "PGPOOL_PY_DEFAULTS": str(defaults or site.dir / "no-defaults-file"),
    }
    if defaults is None:
        # As whoever runs the tests: the site is in a directory only they may enter.
        env.update(PGPOOL_PY=str(site.program), CONFIG=str(site.conf), PGPOOL_USER="", RUN_DIR="")
    return subprocess.run(["/bin/sh", str(INIT_SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_init_script(make_site: Callable[..., Site]) -> None:
    site = make_site()
    assert init_script(site, "status").returncode == 3
    assert init_script(site, "reload").returncode == 7  # LSB: not running

    stops = ((["stop", "smart"], "smart"), (["stop", "-m", "immediate"], "immediate"), (["stop"], "fast"))
    for stop_args, mode in stops:
        start = init_script(site, "start")
        assert start.returncode == 0, start.stdout + start.stderr
        pid = site.pid()
        assert start.stdout.strip() == f"pgpool-py started: pgpool-py is running (pid {pid})"
        status = init_script(site, "status")
        assert (status.returncode, status.stdout.strip()) == (0, f"pgpool-py is running (pid {pid})")
        site.wait_ready()
        # LSB: starting a running service succeeds and says so; the server itself refuses.
        again = init_script(site, "start")
        assert (again.returncode, again.stdout.strip()) == (0, f"pgpool-py is already running: pgpool-py is "
                                                               f"running (pid {pid})")
        if mode == "smart":
            site.set("client_idle_limit = 17")
            assert init_script(site, "reload").returncode == 0
            wait_for(lambda: site.show("client_idle_limit") == "17s", 10, lambda: "reload had no effect")
            good = site.conf.read_text()
            site.set("port = 'many'")
            broken = init_script(site, "reload")
            assert broken.returncode == 1 and 'parameter "port"' in broken.stderr
            site.conf.write_text(good)
        stop = init_script(site, *stop_args)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert f"received {mode} shutdown request" in site.log_text()
        assert init_script(site, "status").returncode == 3
        assert init_script(site, "stop").stdout.strip() == "pgpool-py is not running"
        site.log_file.unlink()

    bad = init_script(site, "stop", "gently")
    assert bad.returncode == 2 and 'unknown stop mode "gently"' in bad.stderr


@contextmanager
def _reachable_by_others(*paths: Path) -> Iterator[None]:
    """Let other users read ``paths`` and traverse to them for a while: a checkout in a
    mktemp -d directory (mode 700, as CI makes) keeps the server user from the venv and the
    source otherwise (Python lists a directory on sys.path to import from it)."""
    changed: dict[Path, int] = {}
    for path in paths:
        for directory, wanted in [(path, stat.S_IROTH | stat.S_IXOTH), *((p, stat.S_IXOTH) for p in path.parents)]:
            mode = directory.stat().st_mode
            if mode & wanted != wanted:
                changed.setdefault(directory, mode)  # the first: the one to restore
                directory.chmod(stat.S_IMODE(mode) | wanted)
    try:
        yield
    finally:
        for directory, mode in changed.items():
            directory.chmod(stat.S_IMODE(mode))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the server user needs root")
def test_init_script_runs_the_server_as_postgres(pg_cluster: list[PgNode]) -> None:
    """Run as root, the script starts the server as PGPOOL_USER (postgres by default, as
    Debian's /etc/init.d/pgpool2), and stops, reloads and checks it as that user."""
    user = pwd.getpwnam(SERVER_USER)
    base = Path(tempfile.mkdtemp(prefix="pgpool-py-init-", dir="/tmp"))
    base.chmod(0o755)
    (base / "site").mkdir()
    site = Site(base / "site", pg_cluster, {})
    run_dir = base / "run-dir"
    for path in [base / "site", *(base / "site").rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    # The defaults file sets everything, PGPOOL_USER left to the script's default.
    defaults = base / "defaults"
    defaults.write_text(f"PGPOOL_PY={shlex.quote(str(site.program))}\nCONFIG={shlex.quote(str(site.conf))}\n"
                        f"RUN_DIR={shlex.quote(str(run_dir))}\nOPTS='-C'\n")
    source_root = Path(pgpool_py.__file__).resolve().parents[1]
    with _reachable_by_others(Path(sys.prefix), source_root):
        _init_script_as_the_server_user(site, defaults, run_dir, user, base)


def _init_script_as_the_server_user(site: Site, defaults: Path, run_dir: Path, user: pwd.struct_passwd,
                                    base: Path) -> None:
    try:
        start = init_script(site, "start", defaults=defaults)
        assert start.returncode == 0, start.stdout + start.stderr
        pid = site.pid()
        assert os.stat(f"/proc/{pid}").st_uid == user.pw_uid
        assert os.stat(site.pid_path).st_uid == user.pw_uid
        assert os.stat(run_dir).st_uid == user.pw_uid
        site.wait_ready()
        # Every process of the server, children included, runs as the server user.
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            assert os.stat(f"/proc/{child}").st_uid == user.pw_uid
        assert init_script(site, "status", defaults=defaults).returncode == 0
        assert init_script(site, "reload", defaults=defaults).returncode == 0
        site.wait_log(r"LOG:  reload config files\.")
        stop = init_script(site, "stop", defaults=defaults)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "received fast shutdown request" in site.log_text()
        assert init_script(site, "status", defaults=defaults).returncode == 3
    finally:
        site.kill_all()
        shutil.rmtree(base, ignore_errors=True)


def test_start_failure_is_reported_by_the_init_script(make_site: Callable[..., Site]) -> None:
    site = make_site()
    # Another server holds the port (pgpool-II not stopped yet): the probe connects to it, yet
    # the command must report that ours died.
    blocker = socket.socket()
    blocker.bind((HOST, site.port))
    blocker.listen()
    try:
        start = init_script(site, "start")
    finally:
        blocker.close()
    assert start.returncode == 1
    assert start.stderr == ("pgpool-py: the server exited during start-up; see its log for why\n"
                            "pgpool-py: could not start\n")
    assert re.search(r"^main pid \d+: FATAL:  could not bind client socket .*: Address already in use", site.log_text(), re.M)


def _unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in SYSTEMD_UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), value.strip())
    return settings


def test_systemd_unit_commands_work(make_site: Callable[..., Site], tmp_path: Path) -> None:
    site = make_site(logging_collector=False)
    unit = _unit_settings()
    assert unit["Type"] == "simple"
    program = shlex.split(unit["ExecStart"])[0]
    if shutil.which("systemd-analyze"):
        copy = tmp_path / "pgpool-py.service"
        copy.write_text(SYSTEMD_UNIT.read_text().replace(program, str(site.program)))
        verify = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr

    # ExecStart as systemd would run it (Environment= expanded), in the foreground.
    env_name, env_value = unit["Environment"].split("=", 1)
    argv = [a.replace("${%s}" % env_name, str(site.conf)) for a in shlex.split(unit["ExecStart"])]
    argv[0] = str(site.program)
    stderr_path = site.dir / "stderr.log"
    with open(stderr_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=site.dir, start_new_session=True)
    try:
        site.wait_ready()
        reload = subprocess.run(shlex.split(unit["ExecReload"].replace("$MAINPID", str(proc.pid))))
        assert reload.returncode == 0
        wait_for(lambda: "reload config files." in stderr_path.read_text(), 10, stderr_path.read_text)
        proc.send_signal(signal.Signals[unit["KillSignal"]])
        assert proc.wait(float(unit["TimeoutStopSec"])) == 0
        assert "received fast shutdown request" in stderr_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_pid_file_of_a_live_other_program_is_kept(make_site: Callable[..., Site]) -> None:
    site = make_site()
    site.pid_path.parent.mkdir(exist_ok=True)
    with subprocess.Popen(["sleep", "30"]) as other:  # after a reboot the pid may be anyone's
        try:
            site.pid_path.write_text(f"{other.pid}\n")
            assert site.run("status").returncode == 1
            # As pgpool-II: the file of a live process is never removed; the error says whose it is.
            start = site.run("--daemon")
            assert start.returncode == 1
            assert f'found. is another pgpool({other.pid}) is running? (process {other.pid} is "sleep"' in start.stderr
            assert site.pid_path.read_text() == f"{other.pid}\n"
        finally:
            other.kill()
    start = site.run("--daemon")
    assert start.returncode == 0, start.stderr
    site.wait_log(rf'LOG:  removing stale pid file ".*" \(process {other.pid} is not running\)')
    assert site.run("-m", "immediate", "stop").returncode == 0


@pytest.mark.parametrize(
    ("contents", "stop_error", "reload_error"),
    [
        (None, ["FATAL:  could not read pid file", 'DETAIL:  pid file "{path}" does not exist'], None),
        (b"", ['FATAL:  EOF detected while reading pid file "{path}"'], None),
        (b"abc\n", ["FATAL:  could not read pid file", 'DETAIL:  pid file "{path}" holds no process id'], None),
        (b"{dead}\0", ["FATAL:  could not stop process with pid: {dead}", "DETAIL:  No such process"],
         ["FATAL:  could not reload configuration file pid: {dead}", "DETAIL:  No such process"]),
    ],
)
def test_stop_and_reload_without_a_server_fail_as_pgpool_ii(
    make_site: Callable[..., Site], contents: bytes | None, stop_error: list[str], reload_error: list[str] | None
) -> None:
    """pgpool-II's FATAL lines, and its exit codes: 3 for stop, 1 for reload."""
    site = make_site(logging_collector=False)
    dead = subprocess.Popen(["true"])
    dead.wait()
    site.pid_path.parent.mkdir(exist_ok=True)
    if contents is not None:
        site.pid_path.write_bytes(contents.replace(b"{dead}", str(dead.pid).encode()))

    def lines(expected: list[str]) -> list[str]:
        return [f"main pid {{pid}}: {line.format(path=site.pid_path, dead=dead.pid)}" for line in expected]

    for command, code, expected in (("stop", 3, stop_error), ("reload", 1, reload_error or stop_error)):
        result = site.run(*(["-m", "fast"] if command == "stop" else []), command)
        assert result.returncode == code, result.stderr
        got = result.stderr.splitlines()
        pid = got[0].split()[2].rstrip(":")  # the command's own pid, %p of the prefix
        assert got == [line.format(pid=pid) for line in lines(expected)], result.stderr
        assert result.stdout == ""


def test_pgpool_ii_start_options_are_accepted(make_site: Callable[..., Site]) -> None:
    """-C (clear the query cache's oid maps) and -x (assertion checks) mean nothing to pgpool-py,
    but a unit file or OPTS written for pgpool-II must still start it."""
    site = make_site()
    helped = site.run("--help")
    assert helped.returncode == 0
    for option in ("-C, --clear-oidmaps", "-x, --debug-assertions"):
        assert option in helped.stdout
    assert "no query cache" in " ".join(helped.stdout.split())
    start = site.run("--daemon", "-C", "-x", "--clear-oidmaps", "--debug-assertions")
    assert start.returncode == 0, start.stderr
    site.wait_ready()
    assert site.run("-m", "fast", "stop").returncode == 0


PGPOOL_II = "/usr/sbin/pgpool"


@pytest.mark.skipif(not os.path.exists(PGPOOL_II), reason="pgpool-II 4.3 (package pgpool2) is not installed")
def test_pgpool_ii_pid_file_is_honoured(make_site: Callable[..., Site], pgpool_factory: Any) -> None:
    """pgpool-II's pid file ("15383\\0") names a live server: pgpool-py refuses to start over it
    (it used to remove the file as stale), and stop, reload and status act on that server."""
    real = pgpool_factory(program=[PGPOOL_II], extra={"num_init_children": 2, "sr_check_period": 0})
    ii_pid_file = real.conf_path.parent / "run" / "pgpool.pid"
    assert ii_pid_file.read_bytes() == f"{real.pid}\0".encode()
    site = make_site(logging_collector=False, pid_file_name=str(ii_pid_file))

    start = site.run("-n", timeout=20)
    assert start.returncode == 1
    assert f'found. is another pgpool({real.pid}) is running?' in start.stderr
    assert ii_pid_file.read_bytes() == f"{real.pid}\0".encode()
    assert site.run("--daemon").returncode == 1
    assert ii_pid_file.exists()

    status = site.run("status")
    assert (status.returncode, status.stdout.strip()) == (0, f"pgpool-py is running (pid {real.pid})")
    assert site.run("reload").returncode == 0
    wait_for(lambda: "reload config files." in real.log_text(), 10, real.log_text)
    stop = site.run("-m", "fast", "stop")
    assert stop.returncode == 0, stop.stderr
    assert real.proc.wait(10) == 0


def _start_fails(site: Site, *args: str) -> str:
    """Run the server in the foreground on a broken configuration: it must exit 1 at once with
    one FATAL line and no traceback; that line is returned."""
    result = site.run("-n", *args)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    fatal = [line for line in output.splitlines() if "FATAL:" in line]
    assert len(fatal) == 1, output
    assert not site.pid_path.exists()
    return fatal[0]


@pytest.mark.parametrize("case", ["hba_method", "hba_missing", "ssl_without_key", "pool_passwd_bytes",
                                  "pool_passwd_directory"])
def test_bad_auth_files_stop_start_up_with_one_line(make_site: Callable[..., Site], case: str) -> None:
    extra: dict[str, str | int | bool] = {"logging_collector": False}
    args: list[str] = []
    if case.startswith("hba"):
        extra["enable_pool_hba"] = True
    if case == "ssl_without_key":
        extra["ssl"] = True
    if case == "pool_passwd_directory":
        extra["pool_passwd"] = "log"
    site = make_site(**extra)
    if case == "hba_method":
        (site.dir / "pool_hba.conf").write_text("host all all 127.0.0.1/32 bogus\n")
        expected = f'{site.dir}/pool_hba.conf:1: invalid authentication method "bogus"'
    elif case == "hba_missing":
        args = ["-a", str(site.dir / "missing.conf")]
        expected = f"{site.dir}/missing.conf: could not read file"
    elif case == "ssl_without_key":
        expected = 'parameter "ssl": ssl = on needs ssl_cert and ssl_key'
    elif case == "pool_passwd_bytes":
        (site.dir / "pool_passwd").write_bytes(b"alice:md5\xff\n")
        expected = f"{site.dir}/pool_passwd: could not read pool_passwd"
    else:
        expected = f"{site.dir}/log: could not read pool_passwd"
    assert expected in _start_fails(site, *args)


def test_corrupt_status_file_is_ignored_with_a_warning(make_site: Callable[..., Site]) -> None:
    site = make_site()
    status_file = site.log_dir / "pgpool_status"  # work_dir (logdir) is log/ beside pgpool.conf
    status_file.parent.mkdir(exist_ok=True)
    status_file.write_bytes(b"garbage\n\xff\xfe\n")
    start = site.run("--daemon")
    assert start.returncode == 0, start.stderr
    site.wait_ready()
    site.wait_log(rf'^main pid \d+: WARNING:  could not read status file "{status_file}": .*; ignoring it')
    assert "Traceback" not in site.log_text()
    assert site.run("-m", "fast", "stop").returncode == 0


def test_reload_reports_weights_and_restart_only_changes_once(make_site: Callable[..., Site]) -> None:
    site = make_site()
    assert site.run("--daemon").returncode == 0
    site.wait_ready()
    site.set(f"port = {free_port()}")
    site.set("backend_weight1 = 3")
    for reloads in range(1, 4):
        assert site.run("reload").returncode == 0
        wait_for(lambda: site.log_text().count("LOG:  reload config files.") == reloads, 10, site.log_text)
        time.sleep(0.3)  # the lines of that reload come right after
    text = site.log_text()
    # pgpool-II's lines for a new weight, once.
    assert len(re.findall(r"^main pid \d+: LOG:  initializing pool configuration: backend weight for backend:1 "
                          r"changed from 1\.000000 to 3\.000000\n"
                          r"main pid \d+: DETAIL:  This change will be effective from next client session$",
                          text, re.M)) == 1, text
    # The port cannot change without a restart: said once, not at every reload.
    assert text.count('WARNING:  parameter "port" cannot be changed without restarting') == 1, text
    assert site.run("-m", "fast", "stop").returncode == 0


@pytest.mark.parametrize("discard", [True, False])
def test_status_file_is_written_at_start(make_site: Callable[..., Site], discard: bool) -> None:
    """As pgpool-II: the nodes' states are in pgpool_status from the start, after -D too (which
    used to leave no file until the next failover)."""
    site = make_site()
    status_file = site.log_dir / "pgpool_status"
    status_file.parent.mkdir(exist_ok=True)
    if discard:
        status_file.write_text("down\nup\n")
    start = site.run("--daemon", *(["-D"] if discard else []))
    assert start.returncode == 0, start.stderr
    site.wait_ready()
    assert status_file.read_text() == "up\nup\n"
    if discard:
        site.wait_log(rf"LOG:  Backend status file {status_file} discarded")
    assert site.run("-m", "fast", "stop").returncode == 0
    assert status_file.read_text() == "up\nup\n"


@pytest.mark.parametrize(("sig", "mode"), [(signal.SIGINT, "fast"), (signal.SIGTERM, "smart"),
                                           (signal.SIGQUIT, "immediate")])
def test_primary_search_warns_once_and_stops_on_a_signal(make_site: Callable[..., Site], sig: signal.Signals,
                                                         mode: str) -> None:
    # sr_check_user cannot log in: the search would retry for search_primary_node_timeout.
    site = make_site(logging_collector=False, sr_check_user="nosuchuser", search_primary_node_timeout=60)
    output = site.dir / "output.log"
    with open(output, "wb") as out:
        proc = subprocess.Popen([str(site.program), "-n", "-d", "-f", str(site.conf)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        retry = "find_primary_node_repeatedly: waiting for finding a primary node"
        # -d shows each retry: wait for a few, so that a warning per retry would show.
        wait_for(lambda: output.read_text(errors="replace").count(retry) >= 3, 20,
                 lambda: output.read_text(errors="replace"))
        assert site.pid_path.exists()
        proc.send_signal(sig)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.read_text(errors="replace")
    assert "Traceback" not in text, text
    for node in (0, 1):
        warnings = re.findall(rf"WARNING:  find_primary_node: node {node} did not answer as sr_check_user "
                              rf'"nosuchuser": .*role "nosuchuser" does not exist', text)
        assert len(warnings) == 1, text
    assert len(re.findall(rf"LOG:  received {mode} shutdown request", text)) == 1, text
    assert "successfully started" not in text
    assert not site.pid_path.exists()


def test_start_up_error_with_syslog_only_and_no_syslog_daemon_is_on_stderr(make_site: Callable[..., Site]) -> None:
    site = make_site(logging_collector=False, log_destination="syslog", enable_pool_hba=True)
    (site.dir / "pool_hba.conf").write_text("host all all 127.0.0.1/32 bogus\n")
    missing = site.dir / "no-syslog.sock"
    result = site.run("-n", "--syslog-socket", str(missing))
    assert f'WARNING:  could not connect to the syslog socket "{missing}": No such file or directory; ' \
           "logging to stderr instead" in result.stderr
    assert 'invalid authentication method "bogus"' in _start_fails(site, "--syslog-socket", str(missing))


@pytest.mark.skipif(not os.path.exists(PGPOOL_II), reason="pgpool-II 4.3 (package pgpool2) is not installed")
def test_log_line_prefix_as_pgpool_ii(pgpool_factory: Any) -> None:
    """The same log_line_prefix, pgpool-II 4.3.5 and pgpool-py: %t without time zone, %u/%d
    [No Connection] before the client's startup packet, an unknown escape (%x) printing nothing."""
    extra: dict[str, str | int | bool] = {"num_init_children": 2, "sr_check_period": 0, "log_connections": True,
                                          "log_statement": True, "log_line_prefix": "%t|%a|%u|%d|%%|%x|%q: "}
    servers = [pgpool_factory(program=[PGPOOL_II], extra=extra), pgpool_factory(extra=extra)]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    for server in servers:
        with server.connect(application_name="myapp", autocommit=True) as conn:
            conn.execute("select 1")
        connected = rf"^{stamp}\|child\|\[No Connection\]\|\[No Connection\]\|%\|\|: LOG:  new connection received$"
        statement = rf"^{stamp}\|myapp\|postgres\|test\|%\|\|: LOG:  statement: select 1$"
        for pattern in (connected, statement):
            wait_for(lambda: re.search(pattern, server.log_text(), re.M) is not None, 10,
                     lambda: f"{server.proc.args[0]}: no line matching {pattern!r}\n{server.log_text()}")
