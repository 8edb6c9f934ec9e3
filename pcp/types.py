"""
The records PCP carries: the data contract between the PCP server and its clients.

Field names follow pgpool-II's C structures (``BackendInfo``, ``POOL_REPORT_POOLS``,
``POOL_REPORT_CONFIG``, ``POOL_HEALTH_CHECK_STATS``, ``PCPWDClusterInfo``), so that a field can be
looked up in pgpool-II's documentation under the same name. Numbers that pgpool-II formats on the
server side (timestamps, "(M:SS before ...)" suffixes) stay strings: clients print them verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

# pgpool-II sends the load-balance weight multiplied by C's RAND_MAX; clients divide it back.
RAND_MAX = 2147483647


class BackendStatus(IntEnum):
    """BACKEND_STATUS: the ``status`` digit of a NodeInfo record."""

    CON_UNUSED = 0
    CON_CONNECT_WAIT = 1
    CON_UP = 2
    CON_DOWN = 3


class ServerRole(IntEnum):
    """SERVER_ROLE: the ``role`` digit of a NodeInfo record."""

    ROLE_MAIN = 0
    ROLE_REPLICA = 1
    ROLE_PRIMARY = 2
    ROLE_STANDBY = 3


_STATUS_NAMES: dict[int, str] = {
    BackendStatus.CON_UNUSED: "unused",
    BackendStatus.CON_CONNECT_WAIT: "waiting",
    BackendStatus.CON_UP: "up",
    BackendStatus.CON_DOWN: "down",
}
_ROLE_NAMES: dict[int, str] = {
    ServerRole.ROLE_MAIN: "main",
    ServerRole.ROLE_REPLICA: "replica",
    ServerRole.ROLE_PRIMARY: "primary",
    ServerRole.ROLE_STANDBY: "standby",
}


def backend_status_name(status: int, quarantine: bool) -> str:
    """The status word pcp_node_info and SHOW pool_nodes print (pgpool's backend_status_to_string)."""
    if status == BackendStatus.CON_DOWN and quarantine:
        return "quarantine"
    return _STATUS_NAMES.get(status, "unknown")


def role_name(role: int) -> str:
    """The role word for a SERVER_ROLE digit (pgpool's role_to_str)."""
    return _ROLE_NAMES.get(role, "unknown")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One backend as reported by ``pcp_node_info`` (pgpool-II 4.3.5's 12-field NodeInfo record)."""

    backend_hostname: str
    backend_port: int
    backend_status: int  # BackendStatus digit
    quarantine: bool
    pg_backend_status: str  # live check: "up", "down" or "unknown"
    backend_weight: float  # normalized load-balance ratio, 0..1 (the wire carries it times RAND_MAX)
    role: int  # ServerRole digit
    pg_role: str  # live check: "primary", "standby" or "unknown"
    standby_delay: int
    replication_state: str
    replication_sync_state: str
    status_changed_time: int  # epoch seconds
    # pgpool-II 4.4+ only (its NodeInfo has a 13th field); None from a 4.3 server.
    standby_delay_by_time: bool | None = None

    @property
    def status_name(self) -> str:
        return backend_status_name(self.backend_status, self.quarantine)

    @property
    def role_name(self) -> str:
        return role_name(self.role)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One (child, pool slot, backend) row of ``pcp_proc_info`` (POOL_REPORT_POOLS, 17 fields)."""

    pool_pid: int
    process_start_time: str
    client_connection_count: int
    pool_id: int
    backend_id: int
    database: str
    username: str
    backend_connection_time: str
    client_connection_time: str
    client_disconnection_time: str
    client_idle_duration: str  # seconds, maybe with " (M:SS before client disconnected)"
    pool_majorversion: int
    pool_minorversion: int
    pool_counter: int
    pool_backendpid: int
    pool_connected: int
    status: str  # "Wait for connection", "Execute command", "Idle", "Idle in transaction"


@dataclass(frozen=True, slots=True)
class PoolStatusItem:
    """One configuration line of ``pcp_pool_status`` (POOL_REPORT_CONFIG)."""

    name: str
    value: str
    desc: str


@dataclass(frozen=True, slots=True)
class HealthCheckStats:
    """Health check statistics of one node (POOL_HEALTH_CHECK_STATS, 20 fields)."""

    node_id: int
    hostname: str
    port: int
    status: str  # up, waiting, down, quarantine, unused
    role: str  # primary, standby, main, replica
    last_status_change: str
    total_count: int
    success_count: int
    fail_count: int
    skip_count: int
    retry_count: int
    average_retry_count: float
    max_retry_count: int
    max_health_check_duration: int  # milliseconds
    min_health_check_duration: int
    average_health_check_duration: float
    last_health_check: str  # "" when it never happened
    last_successful_health_check: str
    last_skip_health_check: str
    last_failed_health_check: str


@dataclass(frozen=True, slots=True)
class WatchdogNodeInfo:
    """One watchdog node (PCPWDNodeInfo)."""

    id: int
    node_name: str
    host_name: str
    delegate_ip: str
    pgpool_port: int
    wd_port: int
    state: int
    state_name: str
    membership_status: int
    membership_status_string: str
    wd_priority: int


@dataclass(frozen=True, slots=True)
class WatchdogInfo:
    """The watchdog cluster as ``pcp_watchdog_info`` reports it (PCPWDClusterInfo)."""

    remote_node_count: int
    member_remote_node_count: int  # -1 when the server does not send it
    nodes_required_for_quorum: int  # -1 when the server does not send it
    quorum_status: int
    alive_node_count: int
    escalated: bool
    leader_node_name: str
    leader_host_name: str
    nodes: list[WatchdogNodeInfo] = field(default_factory=list)
