"""
Sans-IO codec of pgpool-II's PCP protocol, byte-compatible with pgpool-II 4.3.5.

Every packet, in both directions::

    +--------+-------------------------------+----------------------------+
    |  kind  |  length: int32, big-endian    |  payload: length - 4 bytes |
    | 1 byte |  counts itself + the payload  |                            |
    +--------+-------------------------------+----------------------------+

Payloads are NUL-terminated strings; numbers travel as decimal ASCII, except the ArraySize of a
pool-status reply (a binary int32). Requests have upper-case kinds; each has its reply kind in
``REPLY_KIND`` (mostly the lower-case letter; recovery answers ``c`` like attach, promote ``d``
like detach). A reply is one packet whose first string is ``CommandComplete``, or, for lists,
``ArraySize``/n, then one packet per record, then ``CommandComplete``. ``E`` (error) and ``N``
(notice) carry PostgreSQL-style fields. The client authenticates first: ``M`` -> ``m`` (4 salt
bytes), ``R`` user/hash -> ``r``.

Nothing here touches a socket. ``decode_packets()`` takes bytes and returns whole packets plus the
number of bytes they used; the encoders return bytes. Both the client (``pcp.client``) and
pgpool-py's PCP server use this module, so the wire format lives in one place.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pcp.errors import PcpProtocolError
from pcp.types import (
    RAND_MAX,
    HealthCheckStats,
    NodeInfo,
    PoolStatusItem,
    ProcessInfo,
    WatchdogInfo,
    WatchdogNodeInfo,
)

# The pgpool-II release whose PCP wire format (and whose tools' output) this package reproduces.
PCP_COMPAT_VERSION = "4.3.5"

_header = struct.Struct("!ci")
_int4 = struct.Struct("!i")
HEADER_SIZE = _header.size

# pgpool-II's PCP worker refuses a request whose length is >= MAX_PCP_PACKET_LENGTH (pcp.h).
MAX_PCP_PACKET_LENGTH = 260
# Replies have no limit in libpcp; ours guards the client against garbage. The largest real reply
# (watchdog JSON for 128 nodes) is far below it.
MAX_REPLY_LENGTH = 1 << 20
# Longest user name or password the server reads from pcp.conf or a request (pcp.h).
MAX_USER_PASSWD_LEN = 128
SALT_LENGTH = 4

# Where a client looks without -h/-p: libpcp's compiled-in Unix socket directory and port,
# which are also the defaults of pgpool's pcp_socket_dir and pcp_port.
DEFAULT_PCP_PORT = 9898
DEFAULT_SOCKET_DIR = "/tmp"

COMMAND_COMPLETE = "CommandComplete"
ARRAY_SIZE = "ArraySize"
AUTHENTICATION_OK = "AuthenticationOK"
NODE_INFO = "NodeInfo"
PROCESS_INFO = "ProcessInfo"
PROCESS_CONFIG = "ProcessConfig"

# Request kind -> the reply kind that answers it (libpcp's process_pcp_response checks).
REPLY_KIND: dict[str, str] = {
    "M": "m",  # md5 salt
    "R": "r",  # authentication
    "L": "l",  # node count
    "I": "i",  # node info
    "H": "h",  # health check stats
    "N": "n",  # process count
    "P": "p",  # process info
    "B": "b",  # pool status
    "C": "c",  # attach node
    "O": "c",  # recovery node: same kind as attach
    "D": "d",  # detach node
    "d": "d",  # detach node gracefully
    "J": "d",  # promote node: same kind as detach
    "j": "d",  # promote node gracefully
    "T": "t",  # stop pgpool, local
    "t": "t",  # stop pgpool, whole watchdog cluster
    "Z": "z",  # reload config
    "V": "v",  # log rotate (pgpool-II 4.6+)
    "G": "g",  # invalidate query cache (pgpool-II 4.6+)
    "W": "w",  # watchdog info
    "A": "a",  # set a worker parameter (client_min_messages)
}
# F (legacy "stop online recovery") gets no reply; X ends the connection.
REQUEST_KINDS = frozenset(REPLY_KIND) | {"F", "X"}
REPLY_KINDS = frozenset(REPLY_KIND.values()) | {"E", "N"}

SHUTDOWN_MODES = {"smart": "s", "fast": "f", "immediate": "i"}
COMMAND_SCOPES = {"local": "l", "cluster": "c"}

_ENCODING = "utf-8"
# Undecodable bytes survive a decode/encode round trip, as they would in pgpool's C strings.
_ERRORS = "surrogateescape"
# pgpool's elog truncates each field of an E/N packet (code char included) to this many bytes.
_MAX_REPORT_FIELD = 255
_INVALID_RESPONSE = "command failed. invalid response"
# Fields after the tag in pgpool-II 4.3.5's records (later versions add some, see the decoders).
_NODE_INFO_FIELDS = 12
_PROCESS_INFO_FIELDS = 17
_HEALTH_CHECK_STATS_FIELDS = 20


@dataclass(frozen=True, slots=True)
class Packet:
    kind: str
    payload: bytes

    @property
    def tag(self) -> str:
        """The first string of the payload: "CommandComplete", "ArraySize", "NodeInfo", ..."""
        return self.payload.split(b"\0", 1)[0].decode(_ENCODING, _ERRORS)


@dataclass(frozen=True, slots=True)
class Report:
    """The fields of an ``E``/``N`` packet that clients use."""

    severity: str
    message: str
    detail: str | None = None
    hint: str | None = None
    code: str = "XX000"


# --- framing -------------------------------------------------------------------------------


def decode_packets(buf: bytes | bytearray | memoryview, *, requests: bool = False) -> tuple[list[Packet], int]:
    """Split ``buf`` into whole packets; returns them and the number of bytes they used.

    ``requests=True`` decodes what a client sends (the server side): lengths are capped as
    pgpool-II caps them and only request kinds are accepted. Otherwise replies are decoded.
    A partial packet at the end is left for the next call. Raises PcpProtocolError.
    """
    if requests:
        max_length, kinds = MAX_PCP_PACKET_LENGTH - 1, REQUEST_KINDS
    else:
        max_length, kinds = MAX_REPLY_LENGTH, REPLY_KINDS
    packets: list[Packet] = []
    pos = 0
    with memoryview(buf) as view:
        end = len(view)
        while end - pos >= HEADER_SIZE:
            kind_byte, length = _header.unpack_from(view, pos)
            if length < 4 or length > max_length:
                raise PcpProtocolError("invalid PCP packet", f"incorrect packet length ({length})")
            kind = kind_byte.decode("latin-1")
            if kind not in kinds:
                # The request wording is what pgpool-II's PCP worker reports (FATAL) to the client.
                message = "PCP processing request" if requests else "invalid response"
                raise PcpProtocolError(message, f'unknown PCP packet type "{kind}"')
            if end - pos < 1 + length:
                break
            packets.append(Packet(kind, bytes(view[pos + HEADER_SIZE : pos + 1 + length])))
            pos += 1 + length
    return packets, pos


def _packet(kind: str, payload: bytes = b"") -> bytes:
    return _header.pack(kind.encode("ascii"), len(payload) + 4) + payload


def _cstrings(*values: str) -> bytes:
    return b"".join(v.encode(_ENCODING, _ERRORS) + b"\0" for v in values)


def _strings(payload: bytes) -> list[str]:
    """The NUL-terminated strings of a payload."""
    if not payload.endswith(b"\0"):
        raise PcpProtocolError(_INVALID_RESPONSE, "a string is not NUL-terminated")
    return [s.decode(_ENCODING, _ERRORS) for s in payload[:-1].split(b"\0")]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PcpProtocolError(_INVALID_RESPONSE, f"not an integer: {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PcpProtocolError(_INVALID_RESPONSE, f"not a number: {text!r}") from None


def _fields(payload: bytes, tag: str, count: int, *, at_least: bool = False) -> list[str]:
    """The strings of a record after its tag, checking the tag and the field count."""
    values = _strings(payload)
    if values[0] != tag or len(values) - 1 < count or (not at_least and len(values) - 1 != count):
        raise PcpProtocolError(_INVALID_RESPONSE, f"expected {tag} with {count} fields, got {values[:2]}...")
    return values[1:]


# --- authentication ------------------------------------------------------------------------


def md5_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode(_ENCODING, _ERRORS)
    return hashlib.md5(data).hexdigest()


def auth_hash(password_md5: str, username: str, salt: bytes) -> str:
    """``md5hex(md5hex(password_md5 + username) + salt)``: what R carries and the server checks.

    ``password_md5`` is md5hex(password): the client hashes the password it was given, the
    server takes it from pcp.conf. No "md5" prefixes anywhere (pgpool's pool_md5_encrypt).
    """
    inner = md5_hex(password_md5 + username)
    return md5_hex(inner.encode("ascii") + salt)


# --- requests (client -> server) -----------------------------------------------------------


def salt_request() -> bytes:
    return _packet("M")


def auth_request(username: str, password_hash: str) -> bytes:
    return _packet("R", _cstrings(username, password_hash))


def node_count_request() -> bytes:
    return _packet("L")


def node_info_request(node_id: int) -> bytes:
    """``node_id`` -1 asks for every node."""
    return _packet("I", _cstrings(str(node_id)))


def health_check_stats_request(node_id: int) -> bytes:
    return _packet("H", _cstrings(str(node_id)))


def process_count_request() -> bytes:
    return _packet("N")


def process_info_request(pid: int) -> bytes:
    """``pid`` 0 asks for every child."""
    return _packet("P", _cstrings(str(pid)))


def pool_status_request() -> bytes:
    return _packet("B")


def attach_node_request(node_id: int) -> bytes:
    return _packet("C", _cstrings(str(node_id)))


def detach_node_request(node_id: int, gracefully: bool = False) -> bytes:
    return _packet("d" if gracefully else "D", _cstrings(str(node_id)))


def promote_node_request(node_id: int, gracefully: bool = False, switchover: bool = False) -> bytes:
    # libpcp sends "<id> " NUL then one option byte; the server splits at the space.
    return _packet("j" if gracefully else "J", _cstrings(f"{node_id} ") + (b"s" if switchover else b"n"))


def recovery_node_request(node_id: int) -> bytes:
    return _packet("O", _cstrings(str(node_id)))


def _scope_char(scope: str) -> str:
    if scope not in COMMAND_SCOPES.values():
        raise ValueError(f"invalid command scope {scope!r}, must be 'l' or 'c'")
    return scope


def stop_pgpool_request(mode: str, scope: str = "l") -> bytes:
    """``mode`` is s, f or i; ``scope`` l (this pgpool) or c (the whole watchdog cluster)."""
    if mode not in SHUTDOWN_MODES.values():
        raise ValueError(f"invalid shutdown mode {mode!r}, must be 's', 'f' or 'i'")
    return _packet("T" if _scope_char(scope) == "l" else "t", mode.encode("ascii"))


def reload_config_request(scope: str = "l") -> bytes:
    return _packet("Z", _scope_char(scope).encode("ascii"))


def log_rotate_request(scope: str = "l") -> bytes:
    return _packet("V", _scope_char(scope).encode("ascii"))


def watchdog_info_request(wd_index: int) -> bytes:
    """``wd_index`` -1 asks for every watchdog node, 0 for the local one."""
    return _packet("W", _cstrings(str(wd_index)))


def disconnect_request() -> bytes:
    return _packet("X")


# --- request payloads, for the server ------------------------------------------------------


def request_strings(payload: bytes) -> list[str]:
    """The NUL-terminated strings of a request payload (node id, pid, user ...)."""
    return _strings(payload)


def decode_auth_request(payload: bytes) -> tuple[str, str]:
    """The (user name, hash) of an ``R`` request."""
    values = _strings(payload)
    if len(values) < 2:
        raise PcpProtocolError("failed to authenticate PCP user", "error while reading authentication packet")
    return values[0], values[1]


def decode_promote_request(payload: bytes) -> tuple[str, bool]:
    """The (node id text, switchover) of a ``J``/``j`` request."""
    node_id, _, option = payload.partition(b"\0")
    return node_id.split(b" ", 1)[0].decode("ascii", "replace"), option[:1] == b"s"


# --- replies (server -> client) ------------------------------------------------------------


def salt_reply(salt: bytes) -> bytes:
    if len(salt) != SALT_LENGTH:
        raise ValueError(f"the salt must be {SALT_LENGTH} bytes")
    return _packet("m", salt)


def auth_ok_reply() -> bytes:
    return _packet("r", _cstrings(AUTHENTICATION_OK))


def command_complete(kind: str) -> bytes:
    """The reply of a command without data (``c``, ``d``, ``t``, ``z``, ``v``, ``a``, ...),
    and the last packet of a list reply (``i``, ``p``, ``b``)."""
    return _packet(kind, _cstrings(COMMAND_COMPLETE))


def node_count_reply(count: int) -> bytes:
    return _packet("l", _cstrings(COMMAND_COMPLETE, str(count)))


def process_count_reply(pids: Sequence[int]) -> bytes:
    return _packet("n", _cstrings(COMMAND_COMPLETE, str(len(pids)), *map(str, pids)))


def array_size_reply(kind: str, size: int) -> bytes:
    """The first packet of a node-info (``i``) or process-info (``p``) reply."""
    return _packet(kind, _cstrings(ARRAY_SIZE, str(size)))


def pool_status_array_size(size: int) -> bytes:
    """The first packet of a pool-status reply: the only binary number in PCP."""
    return _packet("b", _cstrings(ARRAY_SIZE) + _int4.pack(size))


def node_info_record(node: NodeInfo) -> bytes:
    """One NodeInfo record in pgpool-II 4.3.5's 12-field layout."""
    return _packet(
        "i",
        _cstrings(
            NODE_INFO,
            node.backend_hostname,
            str(node.backend_port),
            str(node.backend_status),
            str(int(node.quarantine)),
            node.pg_backend_status,
            f"{node.backend_weight * RAND_MAX:f}",
            str(node.role),
            node.pg_role,
            str(node.standby_delay),
            node.replication_state,
            node.replication_sync_state,
            str(node.status_changed_time),
        ),
    )


def _process_info_fields(row: ProcessInfo) -> list[str]:
    return [
        str(row.pool_pid),
        row.process_start_time,
        str(row.client_connection_count),
        str(row.pool_id),
        str(row.backend_id),
        row.database,
        row.username,
        row.backend_connection_time,
        row.client_connection_time,
        row.client_disconnection_time,
        row.client_idle_duration,
        str(row.pool_majorversion),
        str(row.pool_minorversion),
        str(row.pool_counter),
        str(row.pool_backendpid),
        str(row.pool_connected),
        row.status,
    ]


def process_info_record(row: ProcessInfo) -> bytes:
    return _packet("p", _cstrings(PROCESS_INFO, *_process_info_fields(row)))


def pool_status_record(item: PoolStatusItem) -> bytes:
    return _packet("b", _cstrings(PROCESS_CONFIG, item.name, item.value, item.desc))


def health_check_stats_reply(stats: HealthCheckStats) -> bytes:
    return _packet(
        "h",
        _cstrings(
            COMMAND_COMPLETE,
            str(stats.node_id),
            stats.hostname,
            str(stats.port),
            stats.status,
            stats.role,
            stats.last_status_change,
            str(stats.total_count),
            str(stats.success_count),
            str(stats.fail_count),
            str(stats.skip_count),
            str(stats.retry_count),
            f"{stats.average_retry_count:f}",
            str(stats.max_retry_count),
            str(stats.max_health_check_duration),
            str(stats.min_health_check_duration),
            f"{stats.average_health_check_duration:f}",
            stats.last_health_check,
            stats.last_successful_health_check,
            stats.last_skip_health_check,
            stats.last_failed_health_check,
        ),
    )


def watchdog_info_reply(json_text: str) -> bytes:
    return _packet("w", _cstrings(COMMAND_COMPLETE, json_text))


def node_info_response(nodes: Sequence[NodeInfo], array_size: int | None = None) -> bytes:
    """A whole node-info reply. pgpool-II announces NUM_BACKENDS for "all nodes", 1 for one."""
    size = len(nodes) if array_size is None else array_size
    return array_size_reply("i", size) + b"".join(map(node_info_record, nodes)) + command_complete("i")


def process_info_response(rows: Sequence[ProcessInfo], array_size: int | None = None) -> bytes:
    """A whole process-info reply. For one pid pgpool-II announces max_pool * NUM_BACKENDS."""
    size = len(rows) if array_size is None else array_size
    return array_size_reply("p", size) + b"".join(map(process_info_record, rows)) + command_complete("p")


def pool_status_response(items: Sequence[PoolStatusItem]) -> bytes:
    return pool_status_array_size(len(items)) + b"".join(map(pool_status_record, items)) + command_complete("b")


def _report(
    kind: str, severity: str, message: str, detail: str | None, hint: str | None, code: str, file: str, line: int
) -> bytes:
    parts = [f"S{severity}", f"C{code}", f"M{message}"]
    if detail is not None:
        parts.append(f"D{detail}")
    if hint is not None:
        parts.append(f"H{hint}")
    parts += [f"F{file}", f"L{line}"]
    # Same order as pgpool's elog: libpcp's parser relies on S and M coming before F and L.
    payload = b"".join(p.encode(_ENCODING, _ERRORS)[:_MAX_REPORT_FIELD] + b"\0" for p in parts)
    return _packet(kind, payload + b"\0")


def error_response(
    message: str,
    detail: str | None = None,
    hint: str | None = None,
    *,
    severity: str = "ERROR",
    code: str = "XX000",
    file: str = "",
    line: int = 0,
) -> bytes:
    """An ``E`` packet. ``severity`` FATAL tells the client that the connection ends."""
    return _report("E", severity, message, detail, hint, code, file, line)


def notice_response(
    message: str,
    detail: str | None = None,
    hint: str | None = None,
    *,
    severity: str = "NOTICE",
    code: str = "XX000",
    file: str = "",
    line: int = 0,
) -> bytes:
    """An ``N`` packet (NOTICE, WARNING, LOG, DEBUG): informational, the reply continues."""
    return _report("N", severity, message, detail, hint, code, file, line)


# --- reply decoders (for the client) -------------------------------------------------------


def decode_salt(payload: bytes) -> bytes:
    if len(payload) != SALT_LENGTH:
        raise PcpProtocolError(_INVALID_RESPONSE, f"salt of {len(payload)} bytes")
    return payload


def decode_auth_ok(payload: bytes) -> None:
    reason = _strings(payload)[0]
    if reason != AUTHENTICATION_OK:
        raise PcpProtocolError("authentication failed", f'reason="{reason}"')


def decode_command_complete(payload: bytes) -> None:
    tag = _strings(payload)[0]
    if tag != COMMAND_COMPLETE:
        raise PcpProtocolError(f'command failed with reason: "{tag}"')


def decode_node_count(payload: bytes) -> int:
    return _int(_fields(payload, COMMAND_COMPLETE, 1)[0])


def decode_process_count(payload: bytes) -> list[int]:
    values = _fields(payload, COMMAND_COMPLETE, 1, at_least=True)
    count = _int(values[0])
    if len(values) != count + 1:
        raise PcpProtocolError(_INVALID_RESPONSE, f"{count} processes announced, {len(values) - 1} sent")
    return [_int(v) for v in values[1:]]


def decode_array_size(packet: Packet) -> int:
    """The record count announced by the first packet of a list reply."""
    if packet.kind == "b":
        head, sep, size = packet.payload.partition(b"\0")
        if head.decode(_ENCODING, _ERRORS) != ARRAY_SIZE or len(size) != _int4.size:
            raise PcpProtocolError(_INVALID_RESPONSE, "bad pool status ArraySize")
        return int(_int4.unpack(size)[0])
    return _int(_fields(packet.payload, ARRAY_SIZE, 1)[0])


def decode_node_info(payload: bytes) -> NodeInfo:
    """A NodeInfo record: 12 fields from pgpool-II 4.3, 13 from 4.4+ (standby_delay_by_time)."""
    v = _fields(payload, NODE_INFO, _NODE_INFO_FIELDS, at_least=True)
    by_time: bool | None = None
    if len(v) == _NODE_INFO_FIELDS + 1:
        by_time = bool(_int(v.pop(8)))
    elif len(v) != _NODE_INFO_FIELDS:
        raise PcpProtocolError(_INVALID_RESPONSE, f"NodeInfo with {len(v)} fields")
    return NodeInfo(
        backend_hostname=v[0],
        backend_port=_int(v[1]),
        backend_status=_int(v[2]),
        quarantine=bool(_int(v[3])),
        pg_backend_status=v[4],
        backend_weight=_float(v[5]) / RAND_MAX,
        role=_int(v[6]),
        pg_role=v[7],
        standby_delay=_int(v[8]),
        replication_state=v[9],
        replication_sync_state=v[10],
        status_changed_time=_int(v[11]),
        standby_delay_by_time=by_time,
    )


def decode_process_info(payload: bytes) -> ProcessInfo:
    """A ProcessInfo record; the fields later pgpool-II versions append are ignored, as libpcp does."""
    v = _fields(payload, PROCESS_INFO, _PROCESS_INFO_FIELDS, at_least=True)
    return ProcessInfo(
        pool_pid=_int(v[0]),
        process_start_time=v[1],
        client_connection_count=_int(v[2]),
        pool_id=_int(v[3]),
        backend_id=_int(v[4]),
        database=v[5],
        username=v[6],
        backend_connection_time=v[7],
        client_connection_time=v[8],
        client_disconnection_time=v[9],
        client_idle_duration=v[10],
        pool_majorversion=_int(v[11]),
        pool_minorversion=_int(v[12]),
        pool_counter=_int(v[13]),
        pool_backendpid=_int(v[14]),
        pool_connected=_int(v[15]),
        status=v[16],
    )


def decode_pool_status_item(payload: bytes) -> PoolStatusItem:
    name, value, desc = _fields(payload, PROCESS_CONFIG, 3)
    return PoolStatusItem(name=name, value=value, desc=desc)


def decode_health_check_stats(payload: bytes) -> HealthCheckStats:
    v = _fields(payload, COMMAND_COMPLETE, _HEALTH_CHECK_STATS_FIELDS)
    return HealthCheckStats(
        node_id=_int(v[0]),
        hostname=v[1],
        port=_int(v[2]),
        status=v[3],
        role=v[4],
        last_status_change=v[5],
        total_count=_int(v[6]),
        success_count=_int(v[7]),
        fail_count=_int(v[8]),
        skip_count=_int(v[9]),
        retry_count=_int(v[10]),
        average_retry_count=_float(v[11]),
        max_retry_count=_int(v[12]),
        max_health_check_duration=_int(v[13]),
        min_health_check_duration=_int(v[14]),
        average_health_check_duration=_float(v[15]),
        last_health_check=v[16],
        last_successful_health_check=v[17],
        last_skip_health_check=v[18],
        last_failed_health_check=v[19],
    )


def _json_int(obj: dict[str, object], key: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int):
        raise PcpProtocolError(_INVALID_RESPONSE, f"watchdog info: {key} is missing or not an integer")
    return value


def _json_str(obj: dict[str, object], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise PcpProtocolError(_INVALID_RESPONSE, f"watchdog info: {key} is missing or not a string")
    return value


def decode_watchdog_info(payload: bytes) -> WatchdogInfo:
    """The JSON of a ``w`` reply, with the defaults libpcp uses for keys older servers omit."""
    (text,) = _fields(payload, COMMAND_COMPLETE, 1)
    try:
        root = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: deep nesting, found by fuzzing
        raise PcpProtocolError(_INVALID_RESPONSE, f"watchdog info is not JSON: {e}") from None
    nodes = root.get("WatchdogNodes") if isinstance(root, dict) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise PcpProtocolError(_INVALID_RESPONSE, "watchdog info has no WatchdogNodes list")
    if _json_int(root, "NodeCount") != len(nodes):
        raise PcpProtocolError(_INVALID_RESPONSE, "watchdog info: NodeCount does not match WatchdogNodes")
    return WatchdogInfo(
        remote_node_count=_json_int(root, "RemoteNodeCount"),
        member_remote_node_count=_json_int(root, "MemberRemoteNodeCount", -1),
        nodes_required_for_quorum=_json_int(root, "NodesRequireForQuorum", -1),
        quorum_status=_json_int(root, "QuorumStatus"),
        alive_node_count=_json_int(root, "AliveNodeCount"),
        escalated=_json_int(root, "Escalated") != 0,
        leader_node_name=_json_str(root, "LeaderNodeName"),
        leader_host_name=_json_str(root, "LeaderHostName"),
        nodes=[
            WatchdogNodeInfo(
                id=_json_int(n, "ID"),
                node_name=_json_str(n, "NodeName"),
                host_name=_json_str(n, "HostName"),
                delegate_ip=_json_str(n, "DelegateIP"),
                pgpool_port=_json_int(n, "PgpoolPort"),
                wd_port=_json_int(n, "WdPort"),
                state=_json_int(n, "State"),
                state_name=_json_str(n, "StateName"),
                membership_status=_json_int(n, "Membership", 0),
                membership_status_string=_json_str(n, "MembershipString", "NOT-Available"),
                wd_priority=_json_int(n, "Priority"),
            )
            for n in nodes
        ],
    )


def decode_report(payload: bytes) -> Report:
    """The fields of an ``E`` or ``N`` packet: ``<code char><text>\\0`` ... then a final ``\\0``."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if not part:
            break
        text = part.decode(_ENCODING, _ERRORS)
        fields.setdefault(text[0], text[1:])
    return Report(
        severity=fields.get("S", "ERROR"),
        message=fields.get("M", "missing error text"),
        detail=fields.get("D"),
        hint=fields.get("H"),
        code=fields.get("C", "XX000"),
    )
