"""
The pcp_* tools: one ``main()`` for all of them, like pgpool-II's pcp_frontend_client.c.

The tool is chosen by the program name (``pcp_node_info`` ...), or by the first argument when
run as ``python -m pcp pcp_node_info ...``. Options, prompts and output are those of
pgpool-II 4.3.5's tools, byte for byte, so that scripts written for them keep working. One
deliberate difference: when the server answers a command with an error, pgpool-II's tools exit
0 and ours exit 2.
"""

from __future__ import annotations

import getopt
import getpass
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pcp.client import PcpConnection
from pcp.errors import PcpConnectionError, PcpError, PcpProtocolError
from pcp.protocol import COMMAND_SCOPES, DEFAULT_PCP_PORT, PCP_COMPAT_VERSION, SHUTDOWN_MODES
from pcp.types import HealthCheckStats, NodeInfo, PoolStatusItem, ProcessInfo, WatchdogInfo

EXIT_OK = 0
EXIT_FAILURE = 1  # no connection, authentication failed, bad usage (as pgpool-II)
EXIT_SERVER_ERROR = 2  # the server answered with ERROR (pgpool-II's tools exit 0 then)

MAX_NUM_BACKENDS = 128

# Every tool accepts every long option, as with pgpool-II's shared getopt_long table.
_LONG_OPTIONS = {
    "help": "?",
    "debug": "d",
    "version": "V",
    "host=": "h",
    "port=": "p",
    "process-id=": "P",
    "username=": "U",
    "no-password": "w",
    "password": "W",
    "mode=": "m",
    "scope=": "s",
    "gracefully": "g",
    "switchover": "s",
    "verbose": "v",
    "all": "a",
    "node-id=": "n",
    "watchdog-id=": "n",
}
_LONG_TO_SHORT = {"--" + name.rstrip("="): short for name, short in _LONG_OPTIONS.items()}

_EPILOG = (
    "Exit status: 0 on success; 1 when the connection or authentication fails or the\n"
    "arguments are wrong; 2 when the server answers the command with an error\n"
    "(pgpool-II's own tools exit 0 in that case).\n"
)


@dataclass
class Options:
    host: str | None = None
    port: int = DEFAULT_PCP_PORT
    user: str | None = None
    need_password: bool = True
    node_id: int = -1
    process_id: int = 0
    mode: str = "s"
    scope: str = "l"
    all: bool = False
    debug: bool = False
    gracefully: bool = False
    switchover: bool = False
    verbose: bool = False


# What a tool does once connected: returns its output, or None for "<tool> -- Command Successful".
Runner = Callable[[PcpConnection, Options], "str | None"]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    short_options: str  # pgpool-II 4.3.5's AllAppTypes allowed_options
    run: Runner
    requires_node_id: bool = False
    supports_scope: bool = False


class _Exit(Exception):
    """Leave main(): print ``message`` on stderr and exit with ``status``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _atoi(text: str) -> int:
    """C's atoi(): leading blanks, a sign, digits; anything else ends the number (or gives 0)."""
    text = text.lstrip(" \t\n\r\f\v")
    end = 1 if text[:1] in ("-", "+") else 0
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0


def _local_time(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _titled(pairs: Sequence[tuple[str, str]]) -> str:
    """pgpool's format_titles(): "Title : value" lines, titles padded to the longest, a blank line."""
    width = max(len(title) for title, _ in pairs)
    return "".join(f"{title:<{width}} : {value}\n" for title, value in pairs) + "\n"


# --- output formats (pgpool-II 4.3.5's output_*_result) ------------------------------------


def format_node_count(count: int, verbose: bool) -> str:
    if verbose:
        return f"Node Count\n____________\n {count}\n"
    return f"{count}\n"


def format_node_info(nodes: Sequence[NodeInfo], all: bool, verbose: bool) -> str:
    out: list[str] = []
    for node in nodes:
        if not all and not node.backend_hostname:
            continue
        values = [
            ("Hostname", node.backend_hostname),
            ("Port", str(node.backend_port)),
            ("Status", str(node.backend_status)),
            ("Weight", f"{node.backend_weight:f}"),
            ("Status Name", node.status_name),
            ("Backend Status Name", node.pg_backend_status),
            ("Role", node.role_name),
            ("Backend Role", node.pg_role),
            ("Replication Delay", str(node.standby_delay)),
            ("Replication State", node.replication_state or "none"),
            ("Replication Sync State", node.replication_sync_state or "none"),
            ("Last Status Change", _local_time(node.status_changed_time)),
        ]
        out.append(_titled(values) if verbose else " ".join(v for _, v in values) + "\n")
    return "".join(out) or "No node information available\n\n"


def format_health_check_stats(stats: HealthCheckStats, verbose: bool) -> str:
    values = [
        ("Node Id", str(stats.node_id)),
        ("Host Name", stats.hostname),
        ("Port", str(stats.port)),
        ("Status", stats.status),
        ("Role", stats.role),
        ("Last Status Change", stats.last_status_change),
        ("Total Count", str(stats.total_count)),
        ("Success Count", str(stats.success_count)),
        ("Fail Count", str(stats.fail_count)),
        ("Skip Count", str(stats.skip_count)),
        ("Retry Count", str(stats.retry_count)),
        ("Average Retry Count", f"{stats.average_retry_count:f}"),
        ("Max Retry Count", str(stats.max_retry_count)),
        ("Max Health Check Duration", str(stats.max_health_check_duration)),
        ("Minimum Health Check Duration", str(stats.min_health_check_duration)),
        ("Average Health Check Duration", f"{stats.average_health_check_duration:f}"),
        ("Last Health Check", stats.last_health_check),
        ("Last Successful Health Check", stats.last_successful_health_check),
        ("Last Skip Health Check", stats.last_skip_health_check),
        ("Last Failed Health Check", stats.last_failed_health_check),
    ]
    return _titled(values) if verbose else " ".join(v for _, v in values) + "\n"


def format_pool_status(items: Sequence[PoolStatusItem], verbose: bool) -> str:
    if verbose:
        return "".join(
            f"Name [{i:3d}]:\t{item.name}\nValue:      \t{item.value}\nDescription:\t{item.desc}\n\n"
            for i, item in enumerate(items)
        )
    return "".join(f"name : {item.name}\nvalue: {item.value}\ndesc : {item.desc}\n\n" for item in items)


def format_proc_count(pids: Sequence[int], verbose: bool) -> str:
    if verbose:
        rows = "".join(f"{i} \t | \t {pid}\n" for i, pid in enumerate(pids))
        return f"No \t | \t PID\n_____________________\n{rows}\nTotal Processes:{len(pids)}\n"
    return "".join(f"{pid} " for pid in pids) + "\n"


def format_proc_info(rows: Sequence[ProcessInfo], all: bool, verbose: bool) -> str:
    out: list[str] = []
    for row in rows:
        if not all and not row.database:
            continue
        values = [
            ("Database", row.database),
            ("Username", row.username),
            ("Start time", row.process_start_time),
            ("Client connection count", str(row.client_connection_count)),
            ("Major", str(row.pool_majorversion)),
            ("Minor", str(row.pool_minorversion)),
            ("Backend connection time", row.backend_connection_time),
            ("Client connection time", row.client_connection_time),
            ("Client idle duration", row.client_idle_duration),
            ("Client disconnection time", row.client_disconnection_time),
            ("Pool Counter", str(row.pool_counter)),
            ("Backend PID", str(row.pool_backendpid)),
            ("Connected", str(row.pool_connected)),
            ("PID", str(row.pool_pid)),
            ("Backend ID", str(row.backend_id)),
            ("Status", row.status),
        ]
        out.append(_titled(values) if verbose else " ".join(v for _, v in values) + "\n")
    return "".join(out) or "No process information available\n\n"


_QUORUM_STATUS = {0: "QUORUM IS ON THE EDGE", 1: "QUORUM EXIST", -1: "QUORUM ABSENT", -2: "NO LEADER NODE"}


def format_watchdog_info(info: WatchdogInfo, verbose: bool) -> str:
    escalated = "YES" if info.escalated else "NO"
    if not verbose:
        head = (
            f"{info.remote_node_count + 1} {info.member_remote_node_count + 1} {escalated} "
            f"{info.leader_node_name} {info.leader_host_name}\n\n"
        )
        return head + "".join(
            f"{n.node_name} {n.host_name} {n.pgpool_port} {n.wd_port} {n.state} {n.state_name} "
            f"{n.membership_status} {n.membership_status_string}\n"
            for n in info.nodes
        )
    out = [
        "Watchdog Cluster Information \n",
        f"Total Nodes              : {info.remote_node_count + 1}\n",
        f"Remote Nodes             : {info.remote_node_count}\n",
        f"Member Remote Nodes      : {info.member_remote_node_count}\n",
        f"Alive Remote Nodes       : {info.alive_node_count}\n",
        f"Nodes required for quorum: {info.nodes_required_for_quorum}\n",
        f"Quorum state             : {_QUORUM_STATUS.get(info.quorum_status, 'UNKNOWN')}\n",
        f"Local node escalation    : {escalated}\n",
        f"Leader Node Name         : {info.leader_node_name}\n",
        f"Leader Host Name         : {info.leader_host_name}\n\n",
        "Watchdog Node Information \n",
    ]
    for n in info.nodes:
        out += [
            f"Node Name         : {n.node_name}\n",
            f"Host Name         : {n.host_name}\n",
            f"Delegate IP       : {n.delegate_ip}\n",
            f"Pgpool port       : {n.pgpool_port}\n",
            f"Watchdog port     : {n.wd_port}\n",
            f"Node priority     : {n.wd_priority}\n",
            f"Status            : {n.state}\n",
            f"Status Name       : {n.state_name}\n",
            f"Membership Status : {n.membership_status_string}\n\n",
        ]
    return "".join(out)


# --- the tools -----------------------------------------------------------------------------


def _node_count(conn: PcpConnection, o: Options) -> str:
    return format_node_count(conn.node_count(), o.verbose)


def _node_info(conn: PcpConnection, o: Options) -> str:
    return format_node_info(conn.node_info(o.node_id), o.all, o.verbose)


def _health_check_stats(conn: PcpConnection, o: Options) -> str:
    return format_health_check_stats(conn.health_check_stats(o.node_id), o.verbose)


def _proc_count(conn: PcpConnection, o: Options) -> str | None:
    pids = conn.proc_count()
    return format_proc_count(pids, o.verbose) if pids else None


def _proc_info(conn: PcpConnection, o: Options) -> str:
    return format_proc_info(conn.proc_info(o.process_id), o.all, o.verbose)


def _pool_status(conn: PcpConnection, o: Options) -> str | None:
    items = conn.pool_status()
    return format_pool_status(items, o.verbose) if items else None


def _watchdog_info(conn: PcpConnection, o: Options) -> str:
    return format_watchdog_info(conn.watchdog_info(o.node_id), o.verbose)


def _attach_node(conn: PcpConnection, o: Options) -> None:
    conn.attach_node(o.node_id)


def _detach_node(conn: PcpConnection, o: Options) -> None:
    conn.detach_node(o.node_id, o.gracefully)


def _promote_node(conn: PcpConnection, o: Options) -> None:
    conn.promote_node(o.node_id, o.gracefully, o.switchover)


def _recovery_node(conn: PcpConnection, o: Options) -> None:
    conn.recovery_node(o.node_id)


def _stop_pgpool(conn: PcpConnection, o: Options) -> None:
    conn.stop_pgpool(o.mode, o.scope)


def _reload_config(conn: PcpConnection, o: Options) -> None:
    conn.reload_config(o.scope)


def _log_rotate(conn: PcpConnection, o: Options) -> None:
    conn.log_rotate(o.scope)


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("pcp_attach_node", "attach a node from pgpool-II", "n:h:p:U:wWvd", _attach_node, requires_node_id=True),
        Tool("pcp_detach_node", "detach a node from pgpool-II", "n:h:p:U:gwWvd", _detach_node, requires_node_id=True),
        Tool("pcp_node_count", "display the total number of nodes under pgpool-II's control", "h:p:U:wWvd",
             _node_count),
        Tool("pcp_node_info", "display a pgpool-II node's information", "n:h:p:U:awWvd", _node_info),
        Tool("pcp_health_check_stats", "display a pgpool-II health check stats data", "n:h:p:U:wWvd",
             _health_check_stats, requires_node_id=True),
        Tool("pcp_pool_status", "display pgpool configuration and status", "h:p:U:wWvd", _pool_status),
        Tool("pcp_proc_count", "display the list of pgpool-II child process PIDs", "h:p:U:wWvd", _proc_count),
        Tool("pcp_proc_info", "display a pgpool-II child process' information", "h:p:P:U:awWvd", _proc_info),
        Tool("pcp_promote_node", "promote a node as new main from pgpool-II", "n:h:p:U:gswWvd", _promote_node,
             requires_node_id=True),
        Tool("pcp_recovery_node", "recover a node", "n:h:p:U:wWvd", _recovery_node, requires_node_id=True),
        Tool("pcp_stop_pgpool", "terminate pgpool-II", "m:h:p:U:s:wWvda", _stop_pgpool, supports_scope=True),
        Tool("pcp_watchdog_info", "display a pgpool-II watchdog's information", "n:h:p:U:wWvd", _watchdog_info),
        Tool("pcp_reload_config", "reload a pgpool-II config file", "h:p:U:s:wWvd", _reload_config,
             supports_scope=True),
        Tool("pcp_log_rotate", "rotate the Pgpool-II's log file", "h:p:U:s:wWvd", _log_rotate,
             supports_scope=True),
    )
}


def usage(tool: Tool) -> str:
    """pgpool-II's usage() text for ``tool``, plus our exit status note."""
    if tool.requires_node_id:
        argument = "[node-id]"
    elif tool.name == "pcp_watchdog_info":
        argument = "[watchdog-id]"
    elif tool.name == "pcp_proc_info":
        argument = "[process-id]"
    else:
        argument = ""
    lines = [
        f"{tool.name} - {tool.description}\n",
        "Usage:\n",
        f"{tool.name} [OPTION...] {argument}\n",
        "Options:\n",
        "  -U, --username=NAME    username for PCP authentication\n",
        "  -h, --host=HOSTNAME    pgpool-II host\n",
        "  -p, --port=PORT        PCP port number\n",
        "  -w, --no-password      never prompt for password\n",
        "  -W, --password         force password prompt (should happen automatically)\n",
    ]
    if tool.requires_node_id:
        lines.append("  -n, --node-id=NODEID   ID of a backend node\n")
    if tool.name == "pcp_node_info":
        lines.append("  -n, --node-id=NODEID   ID of a backend node\n")
        lines.append("  -a, --all              display all backend nodes information\n")
    if tool.name == "pcp_stop_pgpool":
        lines.append('  -m, --mode=MODE        MODE can be "smart", "fast", or "immediate"\n')
    if tool.supports_scope:
        lines.append('  -s, --scope=SCOPE      SCOPE can be "cluster", or "local"\n')
        lines.append("                         cluster scope do operations on all Pgpool-II nodes\n")
        lines.append("                         part of the watchdog cluster\n")
    if tool.name in ("pcp_promote_node", "pcp_detach_node"):
        lines.append("  -g, --gracefully       promote gracefully (optional)\n")
    if tool.name == "pcp_promote_node":
        lines.append("  -s, --switchover       switchover primary to specified node (optional)\n")
    if tool.name == "pcp_watchdog_info":
        lines.append("  -n, --watchdog-id=ID   ID of a other pgpool to get information for\n")
        lines.append("                         ID 0 for the local watchdog\n")
        lines.append("                         If omitted then get information of all watchdog nodes\n")
    if tool.name == "pcp_proc_info":
        lines.append("  -P, --process-id=PID   PID of the child process to get information for (optional)\n")
        lines.append("  -a, --all              display all child processes and their available connection slots\n")
    lines.append("  -d, --debug            enable debug message (optional)\n")
    lines.append("  -v, --verbose          output verbose messages\n")
    lines.append("  -?, --help             print this help\n\n")
    lines.append(_EPILOG)
    return "".join(lines)


def _try_help(tool: Tool) -> str:
    return f'Try "{tool.name} --help" for more information.\n\n'


def _choice(tool: Tool, value: str, choices: dict[str, str], error: str) -> str:
    for word, letter in choices.items():
        if value in (word, letter):
            return letter
    raise _Exit(f'{tool.name}: {error.format(value)} \n', EXIT_FAILURE)


def _node_id(tool: Tool, value: str) -> int:
    node_id = _atoi(value)
    if tool.name == "pcp_watchdog_info":
        if node_id < 0:
            raise _Exit(
                f'{tool.name}: Invalid watchdog-id "{value}", must be a positive number or zero for a local '
                "watchdog node\n",
                EXIT_OK,
            )
    elif node_id < 0 or node_id > MAX_NUM_BACKENDS:
        raise _Exit(f'{tool.name}: Invalid node-id "{value}", must be between 0 and {MAX_NUM_BACKENDS}\n', EXIT_OK)
    return node_id


def _process_id(tool: Tool, value: str) -> int:
    pid = _atoi(value)
    if pid <= 0:
        raise _Exit(f'{tool.name}: Invalid process-id "{value}", must be greater than 0\n', EXIT_OK)
    return pid


def _getopt_message(e: getopt.GetoptError) -> str:
    """glibc getopt_long's wording for ``e``."""
    if len(e.opt) == 1:
        if "requires argument" in e.msg:
            return f"option requires an argument -- '{e.opt}'"
        return f"invalid option -- '{e.opt}'"
    if "requires argument" in e.msg:
        return f"option '--{e.opt}' requires an argument"
    if "must not have an argument" in e.msg:
        return f"option '--{e.opt}' doesn't allow an argument"
    if "not a unique prefix" in e.msg:
        return f"option '--{e.opt}' is ambiguous"
    return f"unrecognized option '--{e.opt}'"


def parse_options(tool: Tool, args: list[str]) -> Options:
    """pgpool-II's option handling, including its exit statuses for bad values."""
    o = Options()
    try:
        opts, positionals = getopt.gnu_getopt(args, tool.short_options, list(_LONG_OPTIONS))
    except getopt.GetoptError as e:
        raise _Exit(f"{tool.name}: {_getopt_message(e)}\n{_try_help(tool)}", EXIT_FAILURE) from None
    for opt, value in opts:
        option = _LONG_TO_SHORT.get(opt, opt[1:])
        if option == "d":
            o.debug = True
        elif option == "a":
            o.all = True
        elif option in ("w", "W"):
            o.need_password = option == "W"
        elif option == "g":
            o.gracefully = True
        elif option == "s" and tool.supports_scope:
            o.scope = _choice(
                tool, value, COMMAND_SCOPES, 'Invalid command scope "{}", must be either "cluster" or "local"'
            )
        elif option == "s" and tool.name == "pcp_promote_node":
            o.switchover = True
        elif option == "m" and tool.name == "pcp_stop_pgpool":
            o.mode = _choice(
                tool, value, SHUTDOWN_MODES, 'Invalid shutdown mode "{}", must be either "smart" "immediate" or "fast"'
            )
        elif option in ("s", "m"):
            raise _Exit(f'Invalid argument "{value}", Try "{tool.name} --help" for more information.\n', EXIT_FAILURE)
        elif option == "v":
            o.verbose = True
        elif option == "n":
            o.node_id = _node_id(tool, value)
        elif option == "p":
            o.port = _atoi(value)
            if o.port <= 1024 or o.port > 65535:
                raise _Exit(
                    f'{tool.name}: Invalid port number "{value}", must be between 1024 and 65535\n', EXIT_OK
                )
        elif option == "P":
            o.process_id = _process_id(tool, value)
        elif option == "h":
            o.host = value
        elif option == "U":
            o.user = value
        else:  # --help or --version not in first place: pgpool-II rejects them too
            raise _Exit(_try_help(tool), EXIT_FAILURE)
    for value in positionals:
        if tool.name == "pcp_proc_info" and o.process_id <= 0:
            o.process_id = _process_id(tool, value)
        elif (
            tool.requires_node_id or tool.name in ("pcp_node_info", "pcp_watchdog_info")
        ) and o.node_id < 0:
            o.node_id = _node_id(tool, value)
        else:
            sys.stderr.write(f'{tool.name}: Warning: extra command-line argument "{value}" ignored\n')
    if o.node_id < 0 and tool.requires_node_id:
        raise _Exit(f"{tool.name}: missing node-id\n{_try_help(tool)}", EXIT_FAILURE)
    return o


def _prompt_password() -> str:
    """simple_prompt(): on the terminal without echo, else a line of stdin (prompt on stderr)."""
    try:
        with open("/dev/tty"):
            pass
    except OSError:
        sys.stderr.write("Password: ")
        sys.stderr.flush()
        password = sys.stdin.readline().removesuffix("\n")
        sys.stderr.write("\n")  # simple_prompt ends the line the unechoed input did not
        return password
    return getpass.getpass("Password: ")


def _server_error(e: PcpError) -> str:
    detail = f"DETAIL:  {e.detail}\n" if e.detail else ""
    hint = f"HINT:  {e.hint}\n" if e.hint else ""
    return f"{e.severity}:  {e.message}\n{detail}{hint}\n"


def run(tool: Tool, args: list[str]) -> int:
    if args and args[0] in ("--help", "-?"):
        sys.stderr.write(usage(tool))
        return EXIT_OK
    if args and args[0] in ("-V", "--version"):
        sys.stderr.write(f"{tool.name} (pgpool-py) {PCP_COMPAT_VERSION}\n")
        return EXIT_OK
    options = parse_options(tool, args)
    password = _prompt_password() if options.need_password else None
    debug = sys.stdout if options.debug else None
    try:
        conn = PcpConnection(options.host, options.port, options.user, password, debug=debug)
    except PcpConnectionError as e:
        raise _Exit(f"ERROR: {e}\n", EXIT_FAILURE) from None
    except PcpError as e:  # authentication refused
        raise _Exit(_server_error(e), EXIT_FAILURE) from None
    except PcpProtocolError as e:
        raise _Exit(f"ERROR: {e}\n", EXIT_FAILURE) from None
    with conn:
        try:
            output = tool.run(conn, options)
        except PcpError as e:
            raise _Exit(_server_error(e), EXIT_SERVER_ERROR) from None
        except (PcpConnectionError, PcpProtocolError) as e:
            raise _Exit(f"ERROR: {e}\n", EXIT_FAILURE) from None
        sys.stdout.write(output if output is not None else f"{tool.name} -- Command Successful\n")
        sys.stdout.flush()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool named by ``argv[0]`` (or by ``argv[1]`` under ``python -m pcp``).

    ``argv`` is the whole command line, program name first (default ``sys.argv``).
    """
    argv = list(sys.argv if argv is None else argv)
    name = os.path.basename(argv[0]) if argv else ""
    args = argv[1:]
    if name not in TOOLS and args and args[0] in TOOLS:
        name, args = args[0], args[1:]
    tool = TOOLS.get(name)
    if tool is None and name == "__main__.py":
        sys.stderr.write(f"usage: python -m pcp TOOL [OPTION...]\nTOOL is one of: {' '.join(TOOLS)}\n")
        return EXIT_FAILURE
    if tool is None:
        sys.stderr.write(f"{name} is a invalid PCP utility\n")
        return EXIT_FAILURE
    # .pcppass warnings, worded as libpcp prints them.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("pcp")
    logger.addHandler(handler)
    try:
        return run(tool, args)
    except _Exit as e:
        sys.stderr.write(e.message)
        return e.status
    finally:
        logger.removeHandler(handler)
