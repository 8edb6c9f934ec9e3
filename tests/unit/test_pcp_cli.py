"""pcp_* output formats (compared with pgpool-II 4.3.5's tools) and option handling."""

from __future__ import annotations

import calendar
import configparser
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pcp import cli
from pcp.types import HealthCheckStats, NodeInfo, PoolStatusItem, ProcessInfo, WatchdogInfo, WatchdogNodeInfo

# 2026-11-28 09:18:13 UTC, the status change time in the outputs below.
CHANGED = calendar.timegm((2026, 11, 28, 9, 18, 13, 0, 0, 0))

NODE = NodeInfo(
    backend_hostname="127.0.0.1",
    backend_port=25432,
    backend_status=1,
    quarantine=False,
    pg_backend_status="unknown",
    backend_weight=536870911.75 / 2147483647,
    role=3,
    pg_role="unknown",
    standby_delay=0,
    replication_state="",
    replication_sync_state="",
    status_changed_time=CHANGED,
)

IDLE_SLOT = ProcessInfo(
    pool_pid=7343,
    process_start_time="2026-11-28 09:18:13",
    client_connection_count=0,
    pool_id=0,
    backend_id=0,
    database="",
    username="",
    backend_connection_time="",
    client_connection_time="",
    client_disconnection_time="",
    client_idle_duration="0",
    pool_majorversion=0,
    pool_minorversion=0,
    pool_counter=0,
    pool_backendpid=0,
    pool_connected=0,
    status="Wait for connection",
)

STATS = HealthCheckStats(
    node_id=0, hostname="127.0.0.1", port=25432, status="waiting", role="standby",
    last_status_change="2026-11-28 09:18:13", total_count=0, success_count=0, fail_count=0, skip_count=0,
    retry_count=0, average_retry_count=0.0, max_retry_count=0, max_health_check_duration=0,
    min_health_check_duration=0, average_health_check_duration=0.0, last_health_check="",
    last_successful_health_check="", last_skip_health_check="", last_failed_health_check="",
)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- output, byte for byte as pgpool-II 4.3.5 prints it --------------------------------------


def test_node_count() -> None:
    assert cli.format_node_count(2, False) == "2\n"
    assert cli.format_node_count(2, True) == "Node Count\n____________\n 2\n"


def test_node_info_terse(utc: None) -> None:
    down = replace(NODE, backend_port=25433, backend_status=3, quarantine=True, backend_weight=0.75,
                   role=2, replication_state="streaming", replication_sync_state="async", standby_delay=42)
    assert cli.format_node_info([NODE, down], all=False, verbose=False) == (
        "127.0.0.1 25432 1 0.250000 waiting unknown standby unknown 0 none none 2026-11-28 09:18:13\n"
        "127.0.0.1 25433 3 0.750000 quarantine unknown primary unknown 42 streaming async 2026-11-28 09:18:13\n"
    )


def test_node_info_verbose(utc: None) -> None:
    assert cli.format_node_info([NODE], all=False, verbose=True) == (
        "Hostname               : 127.0.0.1\n"
        "Port                   : 25432\n"
        "Status                 : 1\n"
        "Weight                 : 0.250000\n"
        "Status Name            : waiting\n"
        "Backend Status Name    : unknown\n"
        "Role                   : standby\n"
        "Backend Role           : unknown\n"
        "Replication Delay      : 0\n"
        "Replication State      : none\n"
        "Replication Sync State : none\n"
        "Last Status Change     : 2026-11-28 09:18:13\n"
        "\n"
    )


def test_node_info_hides_unused_slots_unless_all(utc: None) -> None:
    unused = replace(NODE, backend_hostname="", backend_status=0, role=9)
    assert cli.format_node_info([unused], all=False, verbose=False) == "No node information available\n\n"
    shown = cli.format_node_info([unused], all=True, verbose=False)
    assert shown.startswith(" 25432 0 0.250000 unused unknown unknown")


def test_proc_info(utc: None) -> None:
    assert cli.format_proc_info([IDLE_SLOT], all=False, verbose=False) == "No process information available\n\n"
    assert cli.format_proc_info([IDLE_SLOT], all=True, verbose=False) == (
        "  2026-11-28 09:18:13 0 0 0   0  0 0 0 7343 0 Wait for connection\n"
    )
    busy = replace(IDLE_SLOT, database="test", username="postgres", pool_majorversion=3, pool_connected=1)
    assert cli.format_proc_info([IDLE_SLOT, busy], all=False, verbose=True) == (
        "Database                  : test\n"
        "Username                  : postgres\n"
        "Start time                : 2026-11-28 09:18:13\n"
        "Client connection count   : 0\n"
        "Major                     : 3\n"
        "Minor                     : 0\n"
        "Backend connection time   : \n"
        "Client connection time    : \n"
        "Client idle duration      : 0\n"
        "Client disconnection time : \n"
        "Pool Counter              : 0\n"
        "Backend PID               : 0\n"
        "Connected                 : 1\n"
        "PID                       : 7343\n"
        "Backend ID                : 0\n"
        "Status                    : Wait for connection\n"
        "\n"
    )


def test_proc_count() -> None:
    assert cli.format_proc_count([7343, 7344], False) == "7343 7344 \n"
    assert cli.format_proc_count([7343, 7344], True) == (
        "No \t | \t PID\n_____________________\n0 \t | \t 7343\n1 \t | \t 7344\n\nTotal Processes:2\n"
    )


def test_pool_status() -> None:
    items = [PoolStatusItem("backend_clustering_mode", "1", "clustering mode")]
    assert cli.format_pool_status(items, False) == (
        "name : backend_clustering_mode\nvalue: 1\ndesc : clustering mode\n\n"
    )
    assert cli.format_pool_status(items, True) == (
        "Name [  0]:\tbackend_clustering_mode\nValue:      \t1\nDescription:\tclustering mode\n\n"
    )


def test_health_check_stats() -> None:
    # Empty timestamps leave trailing spaces, as pgpool-II prints them.
    assert cli.format_health_check_stats(STATS, False) == (
        "0 127.0.0.1 25432 waiting standby 2026-11-28 09:18:13 0 0 0 0 0 0.000000 0 0 0 0.000000    \n"
    )
    verbose = cli.format_health_check_stats(STATS, True)
    assert verbose.startswith("Node Id                       : 0\nHost Name                     : 127.0.0.1\n")
    assert "Minimum Health Check Duration : 0\nAverage Health Check Duration : 0.000000\n" in verbose
    assert verbose.endswith("Last Failed Health Check      : \n\n")


def test_watchdog_info() -> None:
    node = WatchdogNodeInfo(0, "h1:9999 Linux h1", "h1", "", 9999, 9000, 4, "LEADER", 1, "MEMBER", 1)
    info = WatchdogInfo(1, 1, 2, 1, 1, True, "h1:9999 Linux h1", "h1", [node, replace(node, id=1, state=7)])
    assert cli.format_watchdog_info(info, False) == (
        "2 2 YES h1:9999 Linux h1 h1\n\n"
        "h1:9999 Linux h1 h1 9999 9000 4 LEADER 1 MEMBER\n"
        "h1:9999 Linux h1 h1 9999 9000 7 LEADER 1 MEMBER\n"
    )
    verbose = cli.format_watchdog_info(info, True)
    assert "Quorum state             : QUORUM EXIST\n" in verbose
    assert "Watchdog Node Information \nNode Name         : h1:9999 Linux h1\n" in verbose


# --- options ---------------------------------------------------------------------------------


def options(tool: str, *args: str) -> cli.Options:
    return cli.parse_options(cli.TOOLS[tool], list(args))


def test_common_options() -> None:
    o = options("pcp_node_info", "-h", "db", "-p", "9999", "-U", "admin", "-w", "-v", "-a", "-d")
    assert (o.host, o.port, o.user, o.need_password, o.verbose, o.all, o.debug) == (
        "db", 9999, "admin", False, True, True, True
    )
    assert o.node_id == -1
    o = options("pcp_node_info", "--host=db", "--port", "9999", "--username=admin", "--no-password", "1")
    assert (o.host, o.port, o.user, o.need_password, o.node_id) == ("db", 9999, "admin", False, 1)
    assert options("pcp_node_info", "-w", "-W").need_password


def test_positional_ids() -> None:
    assert options("pcp_attach_node", "3").node_id == 3
    assert options("pcp_attach_node", "-n", "2", "3").node_id == 2
    assert options("pcp_proc_info", "4321").process_id == 4321
    assert options("pcp_watchdog_info", "0").node_id == 0
    # atoi(): a non-number is node 0, as with pgpool-II's tools.
    assert options("pcp_node_info", "foo").node_id == 0


def test_command_options() -> None:
    o = options("pcp_stop_pgpool", "-m", "fast", "-s", "cluster")
    assert (o.mode, o.scope) == ("f", "c")
    assert options("pcp_stop_pgpool", "--mode=i").mode == "i"
    o = options("pcp_promote_node", "-g", "-s", "1")
    assert (o.gracefully, o.switchover, o.node_id) == (True, True, 1)
    assert options("pcp_promote_node", "--switchover", "1").switchover
    assert options("pcp_detach_node", "-g", "1").gracefully
    assert options("pcp_reload_config", "-s", "l").scope == "l"


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(capsys, "/usr/bin/pcp_node_info", "--help")
    assert status == 0 and out == ""
    assert err.startswith(
        "pcp_node_info - display a pgpool-II node's information\n"
        "Usage:\n"
        "pcp_node_info [OPTION...] \n"
        "Options:\n"
        "  -U, --username=NAME    username for PCP authentication\n"
    )
    assert "  -n, --node-id=NODEID   ID of a backend node\n  -a, --all              display all" in err
    assert "  -?, --help             print this help\n\nExit status:" in err
    status, _, err = run_main(capsys, "pcp_promote_node", "-?")
    assert status == 0 and "pcp_promote_node [OPTION...] [node-id]\n" in err
    assert "  -s, --switchover       switchover primary to specified node (optional)\n" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "pcp_node_count", "-V") == (0, "", "pcp_node_count (pgpool-py) 4.3.5\n")


def test_dispatch_on_first_argument(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_main(capsys, "/x/pcp/__main__.py", "pcp_proc_info", "--version")
    assert (status, err) == (0, "pcp_proc_info (pgpool-py) 4.3.5\n")
    assert run_main(capsys, "pcp_nothing") == (1, "", "pcp_nothing is a invalid PCP utility\n")
    status, _, err = run_main(capsys, "/x/pcp/__main__.py")
    assert status == 1 and err.startswith("usage: python -m pcp TOOL [OPTION...]\nTOOL is one of: pcp_attach_node ")


def test_every_tool_is_a_console_script() -> None:
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    scripts: dict[str, str] = {}
    for line in setup["options.entry_points"]["console_scripts"].splitlines():
        if line.strip():
            name, target = line.split("=", 1)
            scripts[name.strip()] = target.strip()
    assert {name: scripts.get(name) for name in cli.TOOLS} == {name: "pcp.cli:main" for name in cli.TOOLS}


@pytest.mark.parametrize(
    ("argv", "status", "err"),
    [
        (["pcp_attach_node", "-w"], 1,
         'pcp_attach_node: missing node-id\nTry "pcp_attach_node --help" for more information.\n\n'),
        # pgpool-II exits 0 after these complaints; so do we.
        (["pcp_node_info", "-p", "80"], 0,
         'pcp_node_info: Invalid port number "80", must be between 1024 and 65535\n'),
        (["pcp_node_info", "-n", "129"], 0, 'pcp_node_info: Invalid node-id "129", must be between 0 and 128\n'),
        (["pcp_proc_info", "-P", "0"], 0, 'pcp_proc_info: Invalid process-id "0", must be greater than 0\n'),
        (["pcp_stop_pgpool", "-m", "slow"], 1,
         'pcp_stop_pgpool: Invalid shutdown mode "slow", must be either "smart" "immediate" or "fast" \n'),
        (["pcp_reload_config", "-s", "all"], 1,
         'pcp_reload_config: Invalid command scope "all", must be either "cluster" or "local" \n'),
        (["pcp_node_info", "--mode=fast"], 1,
         'Invalid argument "fast", Try "pcp_node_info --help" for more information.\n'),
        (["pcp_node_info", "-x"], 1,
         "pcp_node_info: invalid option -- 'x'\nTry \"pcp_node_info --help\" for more information.\n\n"),
        (["pcp_node_info", "-w", "--help"], 1, 'Try "pcp_node_info --help" for more information.\n\n'),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], status: int, err: str) -> None:
    assert run_main(capsys, *argv) == (status, "", err)


def test_atoi() -> None:
    assert [cli._atoi(s) for s in ("12", " -3x", "+4", "x", "", "-")] == [12, -3, 4, 0, 0, 0]


def test_pcp_does_not_import_pgpool_py() -> None:
    # The tools must stay light and the server imports pcp, never the other way round.
    code = "import sys, pcp.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pgpool_py'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                            cwd=Path(__file__).resolve().parents[2])
    assert (result.returncode, result.stdout) == (0, "[]\n")
