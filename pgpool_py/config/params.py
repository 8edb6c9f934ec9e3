"""
The one declarative table of pgpool.conf parameters.

Parsing, validation, defaults, reload rules, SHOW output and the generated sample
and reference docs all read ``PARAMS``; nothing else lists parameters.  Names,
contexts, bounds and defaults follow pgpool-II 4.3.5 (src/config/pool_config_variables.c),
with the newer defaults of reference/pgpool-facts.md §10 where they differ, plus the
4.4+ names we also accept.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Union

MAX_BACKENDS = 128
MAX_WATCHDOG_NODES = 128  # pgpool's MAX_WATCHDOG_NUM
MAX_HEARTBEAT_DESTINATIONS = 256  # pgpool's WD_MAX_IF_NUM
# An empty backend_hostnameN means a Unix socket in this directory (pgpool's DEFAULT_SOCKET_DIR).
DEFAULT_SOCKET_DIR = "/tmp"

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1

Value = Union[bool, int, float, str, tuple[str, ...]]


class Context(enum.IntEnum):
    """When a parameter may change; a larger value allows more."""

    BOOT = 0  # fixed at first start
    INIT = 1  # needs a restart
    RELOAD = 2  # SIGHUP / pgpool reload / pcp_reload_config
    SESSION = 3  # reload, and also PGPOOL SET within one session


class Kind(enum.Enum):
    BOOL = "boolean"
    INT = "integer"
    REAL = "floating point"
    STRING = "string"
    ENUM = "enum"
    LIST = "list"
    FLAGS = "flags"  # labels joined by "|", stored as int bits


class BackendFlag(enum.IntFlag):
    """Bits of backend_flagN (pgpool's POOL_FAILOVER, POOL_ALWAYS_PRIMARY); 0 = ALLOW_TO_FAILOVER."""

    DISALLOW_TO_FAILOVER = 1
    ALWAYS_PRIMARY = 2


_BACKEND_FLAG_LABELS = ("ALLOW_TO_FAILOVER", "DISALLOW_TO_FAILOVER", "ALWAYS_PRIMARY")
_BACKEND_FLAG_BITS: Mapping[str, int] = {
    "ALLOW_TO_FAILOVER": 0,
    "DISALLOW_TO_FAILOVER": BackendFlag.DISALLOW_TO_FAILOVER,
    "ALWAYS_PRIMARY": BackendFlag.ALWAYS_PRIMARY,
    "ALWAYS_MASTER": BackendFlag.ALWAYS_PRIMARY,  # pgpool-II 4.1 spelling
}

# Multipliers to each base unit, as in PostgreSQL's guc.c (pgpool copies them).
_TIME_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_MEMORY_B = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
UNIT_SCALES: Mapping[str, tuple[Mapping[str, float], float]] = {
    "ms": (_TIME_MS, 1),
    "s": (_TIME_MS, 1000),
    "min": (_TIME_MS, 60_000),
    "B": (_MEMORY_B, 1),
    "kB": (_MEMORY_B, 1024),
}

_INT_RE = re.compile(r"([+-]?)(0x[0-9a-fA-F]+|\d+)\s*([a-zA-Z]*)")
_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False}


@dataclass(frozen=True)
class Param:
    name: str
    type: Kind
    default: Value
    context: Context
    group: str
    description: str
    unit: str | None = None  # base unit of an INT: a key of UNIT_SCALES
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()  # ENUM labels, FLAGS labels, or allowed LIST items
    # Accepted but unlisted ENUM spellings (lower case) -> label.
    aliases: Mapping[str, str] = field(default_factory=dict, hash=False)
    secret: bool = False  # SHOW prints ***** and the value is never logged
    indexed: int = 0  # number of slots of a per-node family (name0, name1, ...); 0 = plain
    global_default: bool = False  # indexed: the bare name sets the value of slots left unset
    separator: str = ","  # LIST items
    octal: bool = False  # INT shown as a file mode (0600)
    old_names: tuple[str, ...] = ()  # other spellings that set this parameter

    def parse(self, raw: str) -> Value:
        """The typed value of ``raw``; ValueError when it is not allowed (see ``allowed()``)."""
        text = raw.strip()
        if self.type is Kind.STRING:
            return raw
        if self.type is Kind.BOOL:
            return _parse_bool(text)
        if self.type is Kind.INT:
            number = _parse_int(text, self.unit)
            self._check_range(number)
            return number
        if self.type is Kind.REAL:
            real = float(text)
            if not math.isfinite(real):
                raise ValueError(text)
            self._check_range(real)
            return real
        if self.type is Kind.ENUM:
            return self._choice(text)
        if self.type is Kind.LIST:
            items = tuple(item.strip() for item in raw.split(self.separator) if item.strip())
            if self.choices and any(item not in self.choices for item in items):
                raise ValueError(raw)
            return items
        bits = 0
        labels = [label.strip() for label in text.split("|")]
        if "ALLOW_TO_FAILOVER" in labels and "DISALLOW_TO_FAILOVER" in labels:
            raise ValueError(raw)
        for label in labels:
            if label not in _BACKEND_FLAG_BITS:
                raise ValueError(raw)
            bits |= _BACKEND_FLAG_BITS[label]
        return bits

    def allowed(self) -> str:
        """What ``parse`` accepts, for error messages and the docs."""
        if self.type is Kind.BOOL:
            return "on, off, true, false, yes, no, 1, 0"
        if self.octal:
            return f"0{self.min:03o} .. 0{self.max:03o}"
        if self.type in (Kind.INT, Kind.REAL):
            bounds = f"{_number(self.min)} .. {_number(self.max)}"
            if self.unit:
                units = ", ".join(UNIT_SCALES[self.unit][0])
                return f"{bounds} {self.unit} (or with a unit: {units})"
            return bounds
        if self.type is Kind.ENUM:
            return ", ".join(self.choices)
        if self.type is Kind.FLAGS:
            return f"{', '.join(self.choices)}, joined by '|'"
        if self.type is Kind.LIST:
            items = f"one of {', '.join(self.choices)}" if self.choices else "items"
            return f"{items} separated by '{self.separator}'"
        return "any string"

    def _check_range(self, number: float) -> None:
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise ValueError(number)

    def _choice(self, text: str) -> str:
        lowered = text.lower()
        for label in self.choices:
            if label.lower() == lowered:
                return label
        if lowered in self.aliases:
            return self.aliases[lowered]
        raise ValueError(text)


def _number(bound: float | None) -> str:
    return "-" if bound is None else f"{bound:.15g}" if isinstance(bound, float) else str(bound)


def _parse_bool(text: str) -> bool:
    """PostgreSQL's parse_bool: the words, their unique prefixes, on/off, 1/0; any case."""
    word = text.lower()
    if word in ("on", "1"):
        return True
    if word in ("off", "of", "0"):
        return False
    if word:
        for full, value in _BOOL_WORDS.items():
            if full.startswith(word):
                return value
    raise ValueError(text)


def _parse_int(text: str, unit: str | None) -> int:
    """Integers as strtol(base 0) reads them (0x1f hex, 0600 octal), with an optional unit."""
    match = _INT_RE.fullmatch(text)
    if match is None:
        raise ValueError(text)
    sign, digits, suffix = match.groups()
    if digits.lower().startswith("0x"):
        number = int(digits, 16)
    elif len(digits) > 1 and digits.startswith("0"):
        number = int(digits, 8)
    else:
        number = int(digits)
    if sign == "-":
        number = -number
    if not suffix:
        return number
    if unit is None:
        raise ValueError(text)
    table, base = UNIT_SCALES[unit]
    if suffix not in table:
        raise ValueError(text)
    return round(number * table[suffix] / base)


# Groups in the order of pgpool's sample file: key -> title.
GROUPS: Mapping[str, str] = MappingProxyType(
    {
        "clustering": "Backend clustering mode",
        "connections": "Connections",
        "backends": "Backend nodes",
        "authentication": "Authentication",
        "ssl": "SSL connections",
        "pools": "Pools and child processes",
        "logs": "Logs",
        "file_locations": "File locations",
        "connection_pooling": "Connection pooling",
        "replication": "Native replication mode",
        "load_balancing": "Load balancing",
        "streaming_replication": "Streaming replication check",
        "health_check": "Health check",
        "failover": "Failover and failback",
        "online_recovery": "Online recovery",
        "watchdog": "Watchdog (accepted for compatibility; pgpool-py has no watchdog)",
        "others": "Relation cache and table checks",
        "memory_cache": "In-memory query cache (accepted for compatibility; not implemented)",
    }
)

# Shorthands for the table below.
I, R, S = Context.INIT, Context.RELOAD, Context.SESSION
BOOL, INT, REAL, STRING, ENUM, LIST, FLAGS = (
    Kind.BOOL, Kind.INT, Kind.REAL, Kind.STRING, Kind.ENUM, Kind.LIST, Kind.FLAGS,
)
_LEVELS = (
    "debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error", "log", "fatal", "panic",
)

_TABLE: tuple[Param, ...] = (
    # -- clustering
    Param("backend_clustering_mode", ENUM, "streaming_replication", I, "clustering",
          "How the backends keep their data in step, which decides routing and failover.",
          choices=("streaming_replication", "native_replication", "logical_replication", "slony", "raw",
                   "snapshot_isolation")),
    Param("master_slave_mode", BOOL, False, I, "clustering",
          "pgpool-II 4.1 spelling: on selects the mode named by master_slave_sub_mode "
          "(used only when backend_clustering_mode is not set)."),
    Param("master_slave_sub_mode", ENUM, "stream", I, "clustering",
          "pgpool-II 4.1 spelling: stream, slony or logical replication, with master_slave_mode = on.",
          choices=("stream", "slony", "logical")),
    Param("replication_mode", BOOL, False, I, "clustering",
          "pgpool-II 4.1 spelling: on selects native_replication "
          "(used only when backend_clustering_mode is not set)."),
    # -- connections
    Param("listen_addresses", STRING, "localhost", I, "connections",
          "Host name or IP address to listen on for clients: '*' for all, '' for no TCP/IP."),
    Param("port", INT, 9999, I, "connections", "TCP port to listen on for clients.", min=1024, max=65535),
    Param("unix_socket_directories", LIST, (DEFAULT_SOCKET_DIR,), I, "connections",
          "Directories of the Unix-domain sockets for clients.", old_names=("socket_dir",)),
    Param("unix_socket_group", STRING, "", I, "connections",
          "Group owning the client Unix-domain sockets; '' keeps the server user's group."),
    Param("unix_socket_permissions", INT, 0o777, I, "connections",
          "Access mode of the client Unix-domain sockets.", min=0, max=0o777, octal=True),
    Param("reserved_connections", INT, 0, I, "connections",
          "When more than num_init_children - reserved_connections clients are connected, "
          "refuse new ones with 'sorry, too many clients already' instead of queueing them.",
          min=0, max=INT_MAX),
    Param("pcp_listen_addresses", STRING, "localhost", I, "connections",
          "Host name or IP address the PCP server listens on: '*' for all, '' for no TCP/IP."),
    Param("pcp_port", INT, 9898, I, "connections", "TCP port of the PCP server.", min=1024, max=65535),
    Param("pcp_socket_dir", STRING, DEFAULT_SOCKET_DIR, I, "connections",
          "Directory of the PCP Unix-domain socket."),
    Param("listen_backlog_multiplier", INT, 2, I, "connections",
          "The listen(2) backlog is num_init_children times this.", min=1, max=INT_MAX),
    Param("serialize_accept", BOOL, False, I, "connections",
          "Let one idle child at a time wait in accept() (avoids a thundering herd); "
          "used only when child_life_time = 0."),
    # -- backends
    Param("backend_hostname", STRING, "", R, "backends",
          "Host name or IP address of the node; a value starting with '/' is a Unix-socket directory, "
          "'' means /tmp. Only a new node can be added by reload.", indexed=MAX_BACKENDS),
    Param("backend_port", INT, 0, R, "backends",
          "Port of the node; 0 leaves the slot unused. Only a new node can be added by reload.",
          min=0, max=65535, indexed=MAX_BACKENDS),
    Param("backend_weight", REAL, 0.0, R, "backends",
          "Load-balance weight of the node, normalised over all nodes (all 0: equal shares).",
          min=0.0, max=100000000.0, indexed=MAX_BACKENDS),
    Param("backend_data_directory", STRING, "", R, "backends",
          "Data directory of the node, used by online recovery.", indexed=MAX_BACKENDS),
    Param("backend_application_name", STRING, "", R, "backends",
          "application_name of the node's walreceiver, to match it in pg_stat_replication.",
          indexed=MAX_BACKENDS),
    Param("backend_flag", FLAGS, 0, R, "backends",
          "Failover behaviour of the node; ALWAYS_PRIMARY takes the node as the primary without asking it.",
          choices=_BACKEND_FLAG_LABELS, indexed=MAX_BACKENDS),
    # -- authentication
    Param("enable_pool_hba", BOOL, False, R, "authentication", "Authenticate clients by pool_hba.conf."),
    Param("pool_passwd", STRING, "pool_passwd", I, "authentication",
          "Password file for client authentication, relative to the configuration directory; '' disables it."),
    Param("authentication_timeout", INT, 60, I, "authentication",
          "Time a client has to complete authentication; 0 = no limit.", unit="s", min=0, max=INT_MAX),
    Param("allow_clear_text_frontend_auth", BOOL, False, R, "authentication",
          "Ask the client for a clear-text password when pool_passwd has none for the user."),
    # -- ssl
    Param("ssl", BOOL, False, I, "ssl", "Accept SSL connections from clients and use SSL to backends."),
    Param("ssl_key", STRING, "", I, "ssl", "SSL private key file."),
    Param("ssl_cert", STRING, "", I, "ssl", "SSL certificate file."),
    Param("ssl_ca_cert", STRING, "", I, "ssl",
          "PEM file of CA certificates: client certificates are checked against it, and backend certificates must be signed by it."),
    Param("ssl_ca_cert_dir", STRING, "", I, "ssl",
          "Directory of CA certificates (named by subject hash, as openssl rehash makes them), used like ssl_ca_cert."),
    Param("ssl_crl_file", STRING, "", I, "ssl", "SSL certificate revocation list file."),
    Param("ssl_ciphers", STRING, "HIGH:MEDIUM:+3DES:!aNULL", I, "ssl", "Allowed SSL ciphers."),
    Param("ssl_prefer_server_ciphers", BOOL, False, I, "ssl",
          "Prefer the server's cipher order over the client's."),
    Param("ssl_ecdh_curve", STRING, "prime256v1", I, "ssl", "Curve for ECDH key exchange."),
    Param("ssl_dh_params_file", STRING, "", I, "ssl", "File of Diffie-Hellman parameters."),
    Param("ssl_passphrase_command", STRING, "", I, "ssl",
          "Command that prints the passphrase of an encrypted SSL key."),
    # -- pools
    Param("num_init_children", INT, 32, I, "pools",
          "Number of pre-forked child processes: the most clients served at once.", min=1, max=INT_MAX),
    Param("max_pool", INT, 4, I, "pools",
          "Cached backend connection sets (user, database) per child.", min=1, max=INT_MAX),
    Param("child_life_time", INT, 300, I, "pools",
          "An idle child that has served a client exits after this long; 0 = never.", unit="s",
          min=0, max=INT_MAX),
    Param("child_max_connections", INT, 0, I, "pools",
          "A child exits after serving this many clients; 0 = never.", min=0, max=INT_MAX),
    Param("connection_life_time", INT, 0, I, "pools",
          "A cached backend connection is closed after being idle this long; 0 = never.",
          unit="s", min=0, max=INT_MAX),
    Param("client_idle_limit", INT, 0, S, "pools",
          "Disconnect a client idle this long, even inside a transaction; 0 = never.", unit="s",
          min=0, max=INT_MAX),
    Param("process_management_mode", ENUM, "static", R, "pools",
          "static keeps num_init_children children; dynamic (pgpool-II 4.4+) keeps spare children "
          "between min_spare_children and max_spare_children.", choices=("static", "dynamic")),
    Param("process_management_strategy", ENUM, "gentle", R, "pools",
          "How fast dynamic mode retires idle spare children.", choices=("lazy", "gentle", "aggressive")),
    Param("min_spare_children", INT, 5, R, "pools",
          "Dynamic mode: fork children when fewer are idle.", min=1, max=INT_MAX),
    Param("max_spare_children", INT, 10, R, "pools",
          "Dynamic mode: retire children when more are idle.", min=1, max=INT_MAX),
    # -- logs
    Param("log_destination", LIST, ("stderr",), R, "logs", "Where to log: stderr, syslog or both.",
          choices=("stderr", "syslog")),
    Param("log_line_prefix", STRING, "%m: %a pid %p: ", R, "logs",
          "printf-style prefix of each log line: %t time, %m with milliseconds, %p pid, %a application, "
          "%P process, %u user, %d database, %l line number, %% a percent sign; others print nothing."),
    Param("log_connections", BOOL, False, R, "logs", "Log each client connection."),
    Param("log_disconnections", BOOL, False, R, "logs", "Log the end of each client session."),
    Param("log_hostname", BOOL, False, R, "logs", "Log client host names instead of addresses."),
    Param("log_statement", BOOL, False, S, "logs", "Log every statement."),
    Param("log_per_node_statement", BOOL, False, S, "logs",
          "Log every statement with the node it is sent to."),
    Param("notice_per_node_statement", BOOL, False, S, "logs",
          "Send the client a NOTICE naming the node of each statement (pgpool-II 4.5+)."),
    Param("log_client_messages", BOOL, False, S, "logs", "Log every protocol message from clients."),
    Param("log_backend_messages", ENUM, "none", S, "logs",
          "Log protocol messages from backends (pgpool-II 4.5+): none, terse (repeats counted) or verbose.",
          choices=("none", "terse", "verbose")),
    Param("log_standby_delay", ENUM, "if_over_threshold", R, "logs", "When to log the replication delay.",
          choices=("always", "if_over_threshold", "none")),
    Param("log_pcp_processes", BOOL, False, R, "logs",
          "Log the start and normal exit of PCP worker processes (pgpool-II 4.4+)."),
    Param("syslog_facility", ENUM, "LOCAL0", R, "logs", "Syslog facility.",
          choices=tuple(f"LOCAL{n}" for n in range(8))),
    Param("syslog_ident", STRING, "pgpool", R, "logs", "Syslog program name."),
    Param("log_error_verbosity", ENUM, "default", S, "logs", "Detail of logged errors.",
          choices=("terse", "default", "verbose")),
    Param("client_min_messages", ENUM, "notice", S, "logs",
          "Lowest level of pgpool's own log messages also sent to the client as notices "
          "(for clients LOG ranks below NOTICE: 'log' sends LOG and WARNING).",
          choices=_LEVELS, aliases={"debug": "debug2"}),
    Param("log_min_messages", ENUM, "warning", S, "logs", "Lowest level of messages logged.",
          choices=_LEVELS, aliases={"debug": "debug2"}),
    Param("logging_collector", BOOL, False, I, "logs", "Capture stderr into rotated log files."),
    Param("log_directory", STRING, "/tmp/pgpool_logs", I, "logs", "Directory of the collected log files."),
    Param("log_filename", STRING, "pgpool-%Y-%m-%d_%H%M%S.log", I, "logs",
          "strftime pattern of the log file names."),
    Param("log_file_mode", INT, 0o600, I, "logs", "Mode of new log files.", octal=True, min=0, max=0o777),
    Param("log_truncate_on_rotation", BOOL, False, I, "logs",
          "Truncate, rather than append to, a log file reused by time-based rotation."),
    Param("log_rotation_age", INT, 1440, I, "logs", "Rotate the log file after this long; 0 = never.",
          unit="min", min=0, max=INT_MAX),
    Param("log_rotation_size", INT, 10240, I, "logs", "Rotate the log file at this size; 0 = never.",
          unit="kB", min=0, max=INT_MAX // 1024),
    # -- file locations
    Param("pid_file_name", STRING, "/var/run/pgpool/pgpool.pid", I, "file_locations",
          "PID file, absolute or relative to the configuration directory."),
    Param("work_dir", STRING, "/tmp", I, "file_locations",
          "Directory of the pgpool_status file and other state.", old_names=("logdir",)),
    # -- connection pooling
    Param("connection_cache", BOOL, True, I, "connection_pooling", "Keep backend connections for reuse."),
    Param("reset_query_list", LIST, ("ABORT", "DISCARD ALL"), R, "connection_pooling",
          "Statements that reset a backend connection when its client leaves.", separator=";"),
    # -- native replication
    Param("replicate_select", BOOL, False, R, "replication",
          "Send SELECTs to every node when load balancing does not apply."),
    Param("insert_lock", BOOL, True, R, "replication",
          "Lock the table before an INSERT so SERIAL values agree on every node."),
    Param("lobj_lock_table", STRING, "", R, "replication", "Table locked to replicate lo_creat()."),
    Param("replication_stop_on_mismatch", BOOL, False, R, "replication",
          "Degenerate the minority node when nodes answer with different message kinds; off: end the session."),
    Param("failover_if_affected_tuples_mismatch", BOOL, False, R, "replication",
          "Degenerate the minority node when INSERT/UPDATE/DELETE row counts differ; off: end the session."),
    # -- load balancing
    Param("load_balance_mode", BOOL, True, I, "load_balancing", "Send read-only queries to any node."),
    Param("ignore_leading_white_space", BOOL, True, R, "load_balancing",
          "Ignore leading white space when classifying a query."),
    Param("read_only_function_list", LIST, (), R, "load_balancing",
          "Regular expressions of functions that do not write.", old_names=("white_function_list",)),
    Param("write_function_list", LIST, (), R, "load_balancing",
          "Regular expressions of functions that write; with both lists empty, volatile functions write.",
          old_names=("black_function_list",)),
    Param("primary_routing_query_pattern_list", LIST, (), R, "load_balancing",
          "Regular expressions of queries always sent to the primary.", separator=";",
          old_names=("black_query_pattern_list",)),
    Param("database_redirect_preference_list", LIST, (), R, "load_balancing",
          "database:node[(weight)] pairs choosing the load-balance node per database."),
    Param("app_name_redirect_preference_list", LIST, (), R, "load_balancing",
          "application_name:node[(weight)] pairs choosing the load-balance node per application."),
    Param("user_redirect_preference_list", LIST, (), R, "load_balancing",
          "user:node[(weight)] pairs choosing the load-balance node per user (pgpool-II 4.6+)."),
    Param("allow_sql_comments", BOOL, False, S, "load_balancing",
          "Ignore SQL comments when deciding load balancing."),
    Param("disable_load_balance_on_write", ENUM, "transaction", R, "load_balancing",
          "After a write, which later reads stay on the primary.",
          choices=("off", "transaction", "trans_transaction", "always", "dml_adaptive")),
    Param("dml_adaptive_object_relationship_list", LIST, (), R, "load_balancing",
          "object:dependent-object pairs for disable_load_balance_on_write = dml_adaptive."),
    Param("statement_level_load_balance", BOOL, False, R, "load_balancing",
          "Choose the load-balance node per statement instead of per session."),
    # -- streaming replication check
    Param("sr_check_period", INT, 10, R, "streaming_replication",
          "Interval of the replication delay check; 0 disables it.", unit="s", min=0, max=INT_MAX),
    Param("sr_check_user", STRING, "", R, "streaming_replication", "User of the replication delay check."),
    Param("sr_check_password", STRING, "", R, "streaming_replication",
          "Password of sr_check_user; '' looks it up in pool_passwd.", secret=True),
    Param("sr_check_database", STRING, "postgres", R, "streaming_replication",
          "Database of the replication delay check."),
    Param("delay_threshold", INT, 0, R, "streaming_replication",
          "Do not load-balance to a standby further behind than this much WAL; 0 = no limit.",
          unit="B", min=0, max=LONG_MAX),
    Param("delay_threshold_by_time", INT, 0, R, "streaming_replication",
          "Do not load-balance to a standby further behind than this (pgpool-II 4.4+); 0 = no limit.",
          unit="ms", min=0, max=INT_MAX),
    Param("prefer_lower_delay_standby", BOOL, False, R, "streaming_replication",
          "When the chosen standby is too far behind, try the least delayed standby before the primary."),
    # -- health check
    Param("health_check_period", INT, 0, R, "health_check",
          "Interval of health checks; 0 disables them.", unit="s",
          min=0, max=INT_MAX, indexed=MAX_BACKENDS, global_default=True),
    Param("health_check_timeout", INT, 20, R, "health_check",
          "Time limit of one health check; 0 = none.", unit="s",
          min=0, max=INT_MAX, indexed=MAX_BACKENDS, global_default=True),
    Param("health_check_user", STRING, "", R, "health_check", "User of the health check.",
          indexed=MAX_BACKENDS, global_default=True),
    Param("health_check_password", STRING, "", R, "health_check",
          "Password of health_check_user; '' looks it up in pool_passwd.",
          secret=True, indexed=MAX_BACKENDS, global_default=True),
    Param("health_check_database", STRING, "postgres", R, "health_check",
          "Database of the health check.", indexed=MAX_BACKENDS, global_default=True),
    Param("health_check_max_retries", INT, 0, R, "health_check",
          "Retries of a failed health check before failover.",
          min=0, max=INT_MAX, indexed=MAX_BACKENDS, global_default=True),
    Param("health_check_retry_delay", INT, 1, R, "health_check",
          "Wait between health check retries.", unit="s",
          min=0, max=INT_MAX, indexed=MAX_BACKENDS, global_default=True),
    Param("connect_timeout", INT, 10000, R, "health_check",
          "Time limit to connect to a backend, for health checks and sessions; 0 = none.",
          unit="ms", min=0, max=INT_MAX, indexed=MAX_BACKENDS, global_default=True),
    Param("health_check_test", BOOL, False, I, "health_check",
          "Test hook: simulate health check failures from a status file."),
    # -- failover
    Param("failover_command", STRING, "", R, "failover",
          "Command run when a node is detached (%d %h %p %D %m %H %M %P %r %R %N %S %%)."),
    Param("failback_command", STRING, "", R, "failover", "Command run when a node is attached."),
    Param("follow_primary_command", STRING, "", R, "failover",
          "Command run for each standby after a new primary is promoted (streaming replication).",
          old_names=("follow_master_command",)),
    Param("failover_on_backend_error", BOOL, True, R, "failover",
          "Fail over when reading from or writing to a backend fails.",
          old_names=("fail_over_on_backend_error",)),
    Param("failover_on_backend_shutdown", BOOL, False, R, "failover",
          "Fail over when a backend shuts down or its server process is killed."),
    Param("detach_false_primary", BOOL, False, R, "failover",
          "Detach a node that claims to be a primary but is not the real one."),
    Param("search_primary_node_timeout", INT, 300, R, "failover",
          "How long to look for the primary after a failover; 0 = forever.", unit="s", min=0, max=INT_MAX),
    Param("auto_failback", BOOL, False, R, "failover",
          "Re-attach a detached standby that is streaming again."),
    Param("auto_failback_interval", INT, 60, R, "failover",
          "Least time between two auto failbacks.", unit="s", min=0, max=INT_MAX),
    # -- online recovery
    Param("recovery_user", STRING, "", R, "online_recovery", "User that runs online recovery."),
    Param("recovery_password", STRING, "", R, "online_recovery",
          "Password of recovery_user; '' looks it up in pool_passwd.", secret=True),
    Param("recovery_database", STRING, "postgres", R, "online_recovery",
          "Database of the recovery functions (pgpool-II 4.7+). Not set: postgres, or else "
          "template1 (pgpool-II 4.3's)."),
    Param("recovery_1st_stage_command", STRING, "", R, "online_recovery",
          "Script in the primary's data directory run for the first stage."),
    Param("recovery_2nd_stage_command", STRING, "", R, "online_recovery",
          "Script in the primary's data directory run for the second stage (native replication)."),
    Param("recovery_timeout", INT, 90, R, "online_recovery",
          "How long to wait for clients to leave before the second stage; the recovered node gets "
          "12 s more to start (pgpool-II's wait, rounded down to a multiple of 3 s).",
          unit="s", min=0, max=INT_MAX),
    Param("client_idle_limit_in_recovery", INT, 0, S, "online_recovery",
          "In the second stage, disconnect clients idle this long; 0 = never, -1 = at once.",
          unit="s", min=-1, max=INT_MAX),
    # -- watchdog
    Param("use_watchdog", BOOL, False, I, "watchdog", "Enable the watchdog."),
    Param("trusted_servers", STRING, "", I, "watchdog", "Servers pinged to confirm the network."),
    Param("ping_path", STRING, "/bin", I, "watchdog", "Directory of the ping command."),
    Param("hostname", STRING, "localhost", R, "watchdog", "Host of watchdog node N.",
          indexed=MAX_WATCHDOG_NODES),
    Param("wd_port", INT, 0, R, "watchdog", "Watchdog port of watchdog node N.",
          min=0, max=65535, indexed=MAX_WATCHDOG_NODES),
    Param("pgpool_port", INT, 0, R, "watchdog", "pgpool port of watchdog node N.",
          min=0, max=65535, indexed=MAX_WATCHDOG_NODES),
    Param("wd_priority", INT, 1, I, "watchdog", "Priority in the leader election.", min=0, max=INT_MAX),
    Param("wd_authkey", STRING, "", R, "watchdog", "Key authenticating watchdog messages.", secret=True),
    Param("wd_ipc_socket_dir", STRING, DEFAULT_SOCKET_DIR, I, "watchdog", "Directory of the watchdog IPC socket."),
    Param("delegate_IP", STRING, "", I, "watchdog", "Virtual IP held by the leader."),
    Param("if_cmd_path", STRING, "/sbin", I, "watchdog", "Directory of if_up_cmd and if_down_cmd."),
    Param("if_up_cmd", STRING, "/usr/bin/sudo /sbin/ip addr add $_IP_$/24 dev eth0 label eth0:0", I,
          "watchdog", "Command bringing the virtual IP up."),
    Param("if_down_cmd", STRING, "/usr/bin/sudo /sbin/ip addr del $_IP_$/24 dev eth0", I, "watchdog",
          "Command bringing the virtual IP down."),
    Param("arping_path", STRING, "/usr/sbin", I, "watchdog", "Directory of arping_cmd."),
    Param("arping_cmd", STRING, "/usr/bin/sudo /usr/sbin/arping -U $_IP_$ -w 1 -I eth0", I, "watchdog",
          "Command announcing the virtual IP."),
    Param("clear_memqcache_on_escalation", BOOL, True, R, "watchdog",
          "Clear the query cache when becoming leader."),
    Param("wd_escalation_command", STRING, "", R, "watchdog", "Command run when becoming leader."),
    Param("wd_de_escalation_command", STRING, "", R, "watchdog", "Command run when resigning as leader."),
    Param("failover_when_quorum_exists", BOOL, True, I, "watchdog", "Fail over only with a quorum."),
    Param("failover_require_consensus", BOOL, True, I, "watchdog",
          "Fail over only when most watchdog nodes agree."),
    Param("allow_multiple_failover_requests_from_node", BOOL, False, I, "watchdog",
          "Let one watchdog node vote more than once."),
    Param("enable_consensus_with_half_votes", BOOL, False, I, "watchdog",
          "Half of the votes make a quorum in an even-sized cluster."),
    Param("wd_remove_shutdown_nodes", BOOL, False, R, "watchdog",
          "Revoke the membership of watchdog nodes shut down properly."),
    Param("wd_lost_node_removal_timeout", INT, 0, R, "watchdog",
          "Revoke the membership of a LOST watchdog node after this long; 0 = never.", unit="s",
          min=0, max=INT_MAX),
    Param("wd_no_show_node_removal_timeout", INT, 0, R, "watchdog",
          "Revoke the membership of a watchdog node that never showed up after this long; 0 = never.",
          unit="s", min=0, max=INT_MAX),
    Param("wd_monitoring_interfaces_list", LIST, (), I, "watchdog",
          "Network interfaces whose link state is watched; 'any' for all."),
    Param("wd_lifecheck_method", ENUM, "heartbeat", I, "watchdog", "How watchdog nodes check each other.",
          choices=("query", "heartbeat", "external")),
    Param("wd_interval", INT, 10, I, "watchdog", "Interval of life checks.", unit="s", min=0, max=INT_MAX),
    Param("heartbeat_hostname", STRING, "", R, "watchdog", "Destination N of heartbeat signals.",
          indexed=MAX_HEARTBEAT_DESTINATIONS),
    Param("heartbeat_port", INT, 0, R, "watchdog", "Port of heartbeat destination N.",
          min=0, max=65535, indexed=MAX_HEARTBEAT_DESTINATIONS),
    Param("heartbeat_device", STRING, "", R, "watchdog", "Network device for heartbeat destination N.",
          indexed=MAX_HEARTBEAT_DESTINATIONS),
    Param("wd_heartbeat_keepalive", INT, 2, I, "watchdog", "Interval of heartbeat signals.",
          unit="s", min=1, max=INT_MAX),
    Param("wd_heartbeat_deadtime", INT, 30, I, "watchdog",
          "A node silent this long is considered dead.", unit="s", min=1, max=INT_MAX),
    Param("wd_life_point", INT, 3, I, "watchdog", "Retries of a failed query life check.",
          min=0, max=INT_MAX),
    Param("wd_lifecheck_query", STRING, "SELECT 1", I, "watchdog", "Query of the query life check."),
    Param("wd_lifecheck_dbname", STRING, "template1", R, "watchdog", "Database of the query life check."),
    Param("wd_lifecheck_user", STRING, "", R, "watchdog", "User of the query life check."),
    Param("wd_lifecheck_password", STRING, "", R, "watchdog", "Password of wd_lifecheck_user.", secret=True),
    # -- relation cache and table checks
    Param("relcache_expire", INT, 0, I, "others",
          "Lifetime of relation cache entries; 0 = forever.", unit="s", min=0, max=LONG_MAX),
    Param("relcache_size", INT, 256, I, "others", "Entries in the relation cache.", min=0, max=INT_MAX),
    Param("check_temp_table", ENUM, "catalog", R, "others",
          "How to detect temporary tables, which keep reads on the primary: CREATE/DROP are traced "
          "in every mode; catalog also asks the primary after a DO, CALL or writing function.",
          choices=("catalog", "trace", "none"), aliases={"on": "catalog", "off": "none"}),
    Param("check_unlogged_table", BOOL, True, S, "others", "Detect unlogged tables in SELECTs."),
    Param("enable_shared_relcache", BOOL, True, I, "others",
          "Share the relation cache between children through the query cache."),
    Param("relcache_query_target", ENUM, "primary", R, "others", "Node that answers relation cache queries.",
          choices=("primary", "load_balance_node"), aliases={"master": "primary"}),
    # -- in-memory query cache
    Param("memory_cache_enabled", BOOL, False, I, "memory_cache", "Enable the query result cache."),
    Param("memqcache_method", ENUM, "shmem", I, "memory_cache", "Cache storage.",
          choices=("shmem", "memcached")),
    Param("memqcache_memcached_host", STRING, "localhost", I, "memory_cache", "memcached host."),
    Param("memqcache_memcached_port", INT, 11211, I, "memory_cache", "memcached port.", min=0, max=INT_MAX),
    Param("memqcache_total_size", INT, 67108864, I, "memory_cache", "Shared memory for the cache.",
          unit="B", min=0, max=LONG_MAX),
    Param("memqcache_max_num_cache", INT, 1000000, I, "memory_cache", "Most cache entries.",
          min=0, max=INT_MAX),
    Param("memqcache_expire", INT, 0, I, "memory_cache", "Lifetime of a cache entry; 0 = forever.",
          unit="s", min=0, max=INT_MAX),
    Param("memqcache_auto_cache_invalidation", BOOL, True, R, "memory_cache",
          "Invalidate cache entries of tables changed by DDL/DML."),
    Param("memqcache_maxcache", INT, 409600, I, "memory_cache", "Largest cached SELECT result.",
          unit="B", min=0, max=INT_MAX),
    Param("memqcache_cache_block_size", INT, 1048576, I, "memory_cache", "Cache block size.",
          unit="B", min=512, max=INT_MAX),
    Param("memqcache_oiddir", STRING, "/var/log/pgpool/oiddir", I, "memory_cache",
          "Directory recording the table oids of cache entries."),
    Param("cache_safe_memqcache_table_list", LIST, (), R, "memory_cache",
          "Regular expressions of tables to cache.", old_names=("white_memqcache_table_list",)),
    Param("cache_unsafe_memqcache_table_list", LIST, (), R, "memory_cache",
          "Regular expressions of tables never to cache.", old_names=("black_memqcache_table_list",)),
)

PARAMS: Mapping[str, Param] = MappingProxyType({p.name: p for p in _TABLE})
# Every accepted spelling, old names included, to its parameter.
_BY_NAME: Mapping[str, Param] = MappingProxyType(
    {**{old: p for p in _TABLE for old in p.old_names}, **PARAMS}
)
_INDEXED_KEY = re.compile(r"(.*?[^0-9])([0-9]+)")


def lookup(key: str) -> tuple[Param, int | None] | None:
    """The parameter a pgpool.conf key names and its node index (None for a bare name), or None."""
    param = _BY_NAME.get(key)
    if param is not None:
        return param, None
    match = _INDEXED_KEY.fullmatch(key)
    if match is None:
        return None
    param = PARAMS.get(match.group(1))
    if param is None or not param.indexed:
        return None
    return param, int(match.group(2))
