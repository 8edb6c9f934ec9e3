"""The PCP codec: exact bytes, round trips, chunked feeding and malformed input."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcp import protocol as proto
from pcp.errors import PcpProtocolError
from pcp.protocol import Packet
from pcp.types import HealthCheckStats, NodeInfo, PoolStatusItem, ProcessInfo

# A NodeInfo record captured from pgpool-II 4.3.5 (weight 1 of 4, node down).
NODE_INFO_4_3_5 = (
    b"NodeInfo\x00127.0.0.1\x0015432\x001\x000\x00unknown\x00536870911.750000\x003\x00unknown\x000\x00\x00\x00"
    b"1795849864\x00"
)

NODE = NodeInfo(
    backend_hostname="127.0.0.1",
    backend_port=15432,
    backend_status=1,
    quarantine=False,
    pg_backend_status="unknown",
    backend_weight=0.25,
    role=3,
    pg_role="unknown",
    standby_delay=0,
    replication_state="",
    replication_sync_state="",
    status_changed_time=1795849864,
)

PROCESS = ProcessInfo(
    pool_pid=7343,
    process_start_time="2026-11-28 09:18:13 (4:30 before process restarting)",
    client_connection_count=3,
    pool_id=1,
    backend_id=0,
    database="test",
    username="alice",
    backend_connection_time="2026-11-28 09:18:20",
    client_connection_time="2026-11-28 09:18:21",
    client_disconnection_time="",
    client_idle_duration="0",
    pool_majorversion=3,
    pool_minorversion=0,
    pool_counter=2,
    pool_backendpid=7400,
    pool_connected=1,
    status="Idle",
)

STATS = HealthCheckStats(
    node_id=1,
    hostname="db1",
    port=5433,
    status="up",
    role="standby",
    last_status_change="2026-11-28 09:18:13",
    total_count=10,
    success_count=9,
    fail_count=1,
    skip_count=0,
    retry_count=2,
    average_retry_count=0.5,
    max_retry_count=2,
    max_health_check_duration=15,
    min_health_check_duration=3,
    average_health_check_duration=4.25,
    last_health_check="2026-11-28 09:20:00",
    last_successful_health_check="2026-11-28 09:20:00",
    last_skip_health_check="",
    last_failed_health_check="2026-11-28 09:19:00",
)


def decode_one(data: bytes, *, requests: bool = False) -> Packet:
    packets, used = proto.decode_packets(data, requests=requests)
    assert used == len(data)
    assert len(packets) == 1
    return packets[0]


def test_framing_bytes() -> None:
    assert proto.node_count_request() == b"L\x00\x00\x00\x04"
    assert proto.node_info_request(-1) == b"I\x00\x00\x00\x07-1\x00"
    assert proto.salt_request() == b"M\x00\x00\x00\x04"
    assert proto.disconnect_request() == b"X\x00\x00\x00\x04"


@pytest.mark.parametrize(
    ("data", "kind", "payload"),
    [
        (proto.auth_request("pcpadmin", "ab" * 16), "R", b"pcpadmin\x00" + b"ab" * 16 + b"\x00"),
        (proto.node_info_request(1), "I", b"1\x00"),
        (proto.health_check_stats_request(0), "H", b"0\x00"),
        (proto.process_count_request(), "N", b""),
        (proto.process_info_request(0), "P", b"0\x00"),
        (proto.pool_status_request(), "B", b""),
        (proto.attach_node_request(1), "C", b"1\x00"),
        (proto.detach_node_request(1), "D", b"1\x00"),
        (proto.detach_node_request(1, gracefully=True), "d", b"1\x00"),
        # libpcp's promote: "<id> " NUL, then the option byte.
        (proto.promote_node_request(1), "J", b"1 \x00n"),
        (proto.promote_node_request(12, gracefully=True, switchover=True), "j", b"12 \x00s"),
        (proto.recovery_node_request(1), "O", b"1\x00"),
        (proto.stop_pgpool_request("f"), "T", b"f"),
        (proto.stop_pgpool_request("i", "c"), "t", b"i"),
        (proto.reload_config_request(), "Z", b"l"),
        (proto.reload_config_request("c"), "Z", b"c"),
        (proto.log_rotate_request(), "V", b"l"),
        (proto.watchdog_info_request(-1), "W", b"-1\x00"),
    ],
)
def test_requests_round_trip(data: bytes, kind: str, payload: bytes) -> None:
    assert decode_one(data, requests=True) == Packet(kind, payload)


def test_request_payload_decoders() -> None:
    auth = decode_one(proto.auth_request("u", "h"), requests=True)
    assert proto.decode_auth_request(auth.payload) == ("u", "h")
    promote = decode_one(proto.promote_node_request(3, switchover=True), requests=True)
    assert proto.decode_promote_request(promote.payload) == ("3", True)
    assert proto.decode_promote_request(b"3 \x00n") == ("3", False)
    assert proto.request_strings(b"7\x00") == ["7"]


def test_bad_request_arguments() -> None:
    with pytest.raises(ValueError):
        proto.stop_pgpool_request("x")
    with pytest.raises(ValueError):
        proto.reload_config_request("local")


def test_node_info_matches_pgpool_bytes() -> None:
    packet = decode_one(proto.node_info_record(NODE))
    assert packet == Packet("i", NODE_INFO_4_3_5)
    assert proto.decode_node_info(NODE_INFO_4_3_5) == NODE


def test_node_info_4_4_layout() -> None:
    # 4.4+ inserts standby_delay_by_time after pg_role.
    fields = NODE_INFO_4_3_5.split(b"\x00")[:-1]
    fields.insert(9, b"1")
    node = proto.decode_node_info(b"\x00".join(fields) + b"\x00")
    assert node.standby_delay == 0 and node.standby_delay_by_time is True
    assert node.status_changed_time == NODE.status_changed_time


def test_list_replies_round_trip() -> None:
    data = proto.node_info_response([NODE, NODE], array_size=2)
    packets, used = proto.decode_packets(data)
    assert used == len(data)
    assert [p.tag for p in packets] == ["ArraySize", "NodeInfo", "NodeInfo", "CommandComplete"]
    assert proto.decode_array_size(packets[0]) == 2

    data = proto.process_info_response([PROCESS], array_size=4)
    packets, _ = proto.decode_packets(data)
    assert proto.decode_array_size(packets[0]) == 4
    assert proto.decode_process_info(packets[1].payload) == PROCESS

    items = [PoolStatusItem("port", "9999", "pgpool accepting port number"), PoolStatusItem("a", "", "")]
    packets, _ = proto.decode_packets(proto.pool_status_response(items))
    # The pool-status ArraySize is a binary int32: "ArraySize\0" + 4 bytes.
    assert packets[0] == Packet("b", b"ArraySize\x00\x00\x00\x00\x02")
    assert proto.decode_array_size(packets[0]) == 2
    assert [proto.decode_pool_status_item(p.payload) for p in packets[1:3]] == items
    assert packets[3] == Packet("b", b"CommandComplete\x00")


def test_single_replies_round_trip() -> None:
    assert proto.decode_node_count(decode_one(proto.node_count_reply(2)).payload) == 2
    assert proto.decode_process_count(decode_one(proto.process_count_reply([11, 12])).payload) == [11, 12]
    assert proto.decode_process_count(decode_one(proto.process_count_reply([])).payload) == []
    assert proto.decode_health_check_stats(decode_one(proto.health_check_stats_reply(STATS)).payload) == STATS
    assert proto.decode_salt(decode_one(proto.salt_reply(b"\x00\xff\x01\x02")).payload) == b"\x00\xff\x01\x02"
    ok = decode_one(proto.auth_ok_reply())
    assert ok == Packet("r", b"AuthenticationOK\x00")
    proto.decode_auth_ok(ok.payload)
    for kind in "cdtzva":
        done = decode_one(proto.command_complete(kind))
        assert done == Packet(kind, b"CommandComplete\x00")
        proto.decode_command_complete(done.payload)


def test_health_check_stats_formats_floats_like_pgpool() -> None:
    fields = decode_one(proto.health_check_stats_reply(STATS)).payload.split(b"\x00")
    assert fields[12] == b"0.500000" and fields[16] == b"4.250000"


def test_process_info_ignores_later_fields() -> None:
    payload = decode_one(proto.process_info_record(PROCESS)).payload + b"1\x00127.0.0.1\x005432\x00SELECT 1\x00"
    assert proto.decode_process_info(payload) == PROCESS


def test_watchdog_info_round_trip() -> None:
    document = {
        "NodeCount": 1,
        "RemoteNodeCount": 0,
        "QuorumStatus": 1,
        "AliveNodeCount": 0,
        "Escalated": 1,
        "LeaderNodeName": "host1:9999 Linux host1",
        "LeaderHostName": "host1",
        "WatchdogNodes": [
            {"ID": 0, "NodeName": "host1:9999 Linux host1", "HostName": "host1", "DelegateIP": "",
             "WdPort": 9000, "PgpoolPort": 9999, "State": 4, "StateName": "LEADER", "Priority": 1}
        ],
    }
    info = proto.decode_watchdog_info(decode_one(proto.watchdog_info_reply(json.dumps(document))).payload)
    assert info.escalated and info.leader_host_name == "host1"
    # Keys that older servers omit get libpcp's defaults.
    assert info.member_remote_node_count == -1 and info.nodes_required_for_quorum == -1
    node = info.nodes[0]
    assert (node.pgpool_port, node.wd_port, node.state_name) == (9999, 9000, "LEADER")
    assert (node.membership_status, node.membership_status_string) == (0, "NOT-Available")
    document["NodeCount"] = 2
    with pytest.raises(PcpProtocolError):
        proto.decode_watchdog_info(decode_one(proto.watchdog_info_reply(json.dumps(document))).payload)


def test_error_and_notice() -> None:
    packet = decode_one(proto.error_response("informing node info failed", "invalid node ID : 7"))
    assert packet.kind == "E"
    # pgpool's field order, as libpcp expects it: S C M D F L, then a final NUL.
    assert packet.payload.startswith(
        b"SERROR\x00CXX000\x00Minforming node info failed\x00Dinvalid node ID : 7\x00F"
    )
    assert packet.payload.endswith(b"\x00\x00")
    assert proto.decode_report(packet.payload) == proto.Report(
        "ERROR", "informing node info failed", "invalid node ID : 7"
    )
    notice = decode_one(proto.notice_response("hello", severity="LOG", hint="h"))
    assert notice.kind == "N"
    assert proto.decode_report(notice.payload) == proto.Report("LOG", "hello", None, "h")
    long = proto.decode_report(decode_one(proto.error_response("x" * 1000, severity="FATAL")).payload)
    assert long.severity == "FATAL" and long.message == "x" * 254


def test_auth_hash_is_pgpool_md5_without_prefix() -> None:
    salt = b"\x01\x02\x03\x04"
    password_md5 = hashlib.md5(b"secret").hexdigest()
    inner = hashlib.md5((password_md5 + "pcpadmin").encode()).hexdigest()
    expected = hashlib.md5(inner.encode() + salt).hexdigest()
    assert proto.md5_hex("secret") == password_md5
    assert proto.auth_hash(password_md5, "pcpadmin", salt) == expected


# --- chunked feeding ------------------------------------------------------------------------

STREAM = b"".join(
    [
        proto.salt_reply(b"abcd"),
        proto.auth_ok_reply(),
        proto.notice_response("n"),
        proto.node_info_response([NODE, NODE]),
        proto.process_info_response([PROCESS]),
        proto.pool_status_response([PoolStatusItem("n", "v", "d")]),
        proto.health_check_stats_reply(STATS),
        proto.error_response("e", "d"),
        proto.command_complete("c"),
    ]
)


def feed(chunks: list[bytes], *, requests: bool = False) -> list[Packet]:
    """Feed chunks as a reader would: append, decode, drop what was used."""
    buf = bytearray()
    packets: list[Packet] = []
    for chunk in chunks:
        buf += chunk
        new, used = proto.decode_packets(buf, requests=requests)
        del buf[:used]
        packets += new
    assert not buf
    return packets


def test_whole_and_byte_by_byte_give_the_same_packets() -> None:
    whole = feed([STREAM])
    assert len(whole) == 16
    assert feed([STREAM[i : i + 1] for i in range(len(STREAM))]) == whole


@given(st.lists(st.integers(min_value=1, max_value=64), max_size=200))
def test_random_chunks_give_the_same_packets(sizes: list[int]) -> None:
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(STREAM[pos : pos + size])
        pos += size
    chunks.append(STREAM[pos:])
    assert feed(chunks) == feed([STREAM])


def test_requests_chunked() -> None:
    stream = proto.salt_request() + proto.auth_request("u", "h") + proto.promote_node_request(1) + b"X\0\0\0\x04"
    whole = feed([stream], requests=True)
    assert [p.kind for p in whole] == ["M", "R", "J", "X"]
    assert feed([stream[i : i + 1] for i in range(len(stream))], requests=True) == whole


def test_partial_packet_waits() -> None:
    data = proto.node_count_reply(3)
    assert proto.decode_packets(data[:4]) == ([], 0)
    assert proto.decode_packets(data[:-1]) == ([], 0)


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [-1, 0, 3])
def test_too_short_length(length: int) -> None:
    data = b"L" + length.to_bytes(4, "big", signed=True)
    for requests in (True, False):
        with pytest.raises(PcpProtocolError) as info:
            proto.decode_packets(b"l" + data[1:] if not requests else data, requests=requests)
        assert info.value.detail == f"incorrect packet length ({length})"


def test_request_length_cap_is_pgpools() -> None:
    ok = b"I" + (259).to_bytes(4, "big") + b"1" * 255
    assert decode_one(ok, requests=True).kind == "I"
    with pytest.raises(PcpProtocolError, match="invalid PCP packet"):
        proto.decode_packets(b"I" + (260).to_bytes(4, "big"), requests=True)
    # A reply may be longer, up to our own cap.
    assert proto.decode_packets(b"w" + (260).to_bytes(4, "big")) == ([], 0)
    with pytest.raises(PcpProtocolError):
        proto.decode_packets(b"w" + (proto.MAX_REPLY_LENGTH + 1).to_bytes(4, "big"))


def test_unknown_kinds() -> None:
    with pytest.raises(PcpProtocolError) as info:
        proto.decode_packets(b"Q\x00\x00\x00\x04", requests=True)
    assert info.value.detail == 'unknown PCP packet type "Q"'
    with pytest.raises(PcpProtocolError):
        proto.decode_packets(b"L\x00\x00\x00\x04")  # a request kind is not a reply


def test_malformed_records() -> None:
    with pytest.raises(PcpProtocolError):
        proto.decode_node_info(b"NodeInfo\x00host\x00")
    with pytest.raises(PcpProtocolError):
        proto.decode_node_count(b"CommandComplete\x00two\x00")
    with pytest.raises(PcpProtocolError):
        proto.decode_node_count(b"CommandComplete\x002")  # not NUL-terminated
    with pytest.raises(PcpProtocolError):
        proto.decode_process_count(b"CommandComplete\x003\x001\x00")
    with pytest.raises(PcpProtocolError):
        proto.decode_salt(b"abc")
    with pytest.raises(PcpProtocolError, match="command failed with reason"):
        proto.decode_command_complete(b"Nope\x00")
