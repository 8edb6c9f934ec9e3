"""
Property tests (hypothesis) of the two sans-IO codecs: the PostgreSQL wire codec
(``pgpool_py.protocol.messages``) and the PCP codec (``pcp.protocol``).

The promise under test: any byte string, cut anywhere, either decodes into the same messages
as when it arrives whole, or raises the codec's protocol error (ProtocolError /
PcpProtocolError) — never another exception that would escape a session and kill its process.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pcp import protocol as proto
from pcp.errors import PcpProtocolError
from pcp.types import NodeInfo
from pgpool_py.errors import ProtocolError
from pgpool_py.protocol import messages as m

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Decoder = Callable[[bytearray], tuple[list[Any], int]]


def _feed(decode: Decoder, data: bytes, cuts: list[int]) -> tuple[list[Any], bytes]:
    """Deliver ``data`` in pieces cut at ``cuts``, decoding after each piece as a reader does."""
    buf = bytearray()
    out: list[Any] = []
    edges = sorted({c % (len(data) + 1) for c in cuts} | {len(data)})
    start = 0
    for edge in edges:
        buf += data[start:edge]
        start = edge
        found, used = decode(buf)
        out.extend(found)
        del buf[:used]
    return out, bytes(buf)


def _check_split_invariance(decode: Decoder, error: type[Exception], data: bytes, cuts: list[int]) -> None:
    try:
        whole, used = decode(bytearray(data))
    except error:
        # The bad header is still there however the bytes arrive: the cut stream fails too.
        with pytest.raises(error):
            _feed(decode, data, cuts)
        return
    pieces, rest = _feed(decode, data, cuts)
    assert pieces == whole
    assert rest == data[used:]


# ---------------------------------------------------------------- PostgreSQL codec


def _pg_decode(buf: bytearray) -> tuple[list[bytes], int]:
    found, used = m.split_messages(buf)
    return [bytes(buf[s:e]) for _t, s, e in found], used


def _pg_message(kind: int, body: bytes) -> bytes:
    return bytes((kind,)) + struct.pack("!I", len(body) + 4) + body


# Well-formed messages of both directions, built by the codec's own builders or by hand.
pg_valid = st.one_of(
    st.text(max_size=40).map(lambda s: m.query(s.replace("\0", ""))),
    st.binary(max_size=40).map(m.password_message),
    st.tuples(st.text(max_size=20), st.text(min_size=5, max_size=5)).map(
        lambda t: m.error_response(t[0].replace("\0", ""), t[1].replace("\0", "0"))
    ),
    st.lists(st.one_of(st.none(), st.text(max_size=10)), max_size=4).map(m.data_row),
    st.sampled_from([m.TERMINATE, m.SYNC, m.FLUSH, m.PARSE_COMPLETE, m.ready_for_query(m.TX_IN_BLOCK)]),
    st.tuples(st.integers(0, 255), st.binary(max_size=30)).map(lambda t: _pg_message(*t)),
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    """Overwrite a few bytes: the way a corrupted but mostly valid stream looks."""
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
@example(b"Q\x00\x00\x00\x03", [])
@example(b"Q\xff\xff\xff\xff", [1, 2, 3])
def test_pg_random_bytes_split_anywhere(data: bytes, cuts: list[int]) -> None:
    _check_split_invariance(_pg_decode, ProtocolError, data, cuts)


@FUZZ
@given(
    st.lists(pg_valid, max_size=8).map(b"".join),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=3),
    st.lists(st.integers(0, 1000), max_size=8),
)
def test_pg_mutated_valid_stream_split_anywhere(data: bytes, edits: list[tuple[int, int]], cuts: list[int]) -> None:
    _check_split_invariance(_pg_decode, ProtocolError, _mutate(data, edits), cuts)


@FUZZ
@given(st.lists(pg_valid, max_size=8), st.lists(st.integers(0, 1000), max_size=8))
def test_pg_valid_stream_round_trips(msgs: list[bytes], cuts: list[int]) -> None:
    assert _feed(_pg_decode, b"".join(msgs), cuts) == (msgs, b"")


@FUZZ
@given(st.binary(max_size=80))
@example(b"")
@example(b"name-without-terminator")
@example(b"Mno terminator")
def test_pg_body_parsers_raise_only_protocol_errors(body: bytes) -> None:
    """The parsers the session applies to message bodies from clients and backends."""
    for parse in (m.parse_query, m.parse_parse, m.parse_error_fields, m.parse_authentication):
        try:
            parse(body)
        except ProtocolError:
            pass


def _read_startup(data: bytes) -> m.StartupPacket | None:
    """What Stream.read_startup does with a buffer: None while the packet is incomplete."""
    if len(data) < 4:
        return None
    size = m.startup_length(data[:4])
    if len(data) < 4 + size:
        return None
    return m.parse_startup_payload(data[4 : 4 + size])


@FUZZ
@given(st.binary(max_size=120))
@example(b"\x00\x00\x00\x08\x04\xd2\x16\x2e")  # a cancel request without pid and key
@example(b"\x00\x00\x00\x0b\x00\x03\x00\x00\xff\x00\x00")  # a non-UTF-8 option name
def test_startup_random_bytes(data: bytes) -> None:
    try:
        _read_startup(data)
    except ProtocolError:
        pass


# What a C string in a startup packet can hold: UTF-8 text without NUL.
cstring_chars = st.characters(codec="utf-8", exclude_characters="\0")
startup_params = st.dictionaries(st.text(cstring_chars, min_size=1, max_size=10),
                                 st.text(cstring_chars, max_size=10), max_size=4)


@FUZZ
@given(startup_params, st.text(cstring_chars, min_size=1, max_size=10),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=2))
def test_startup_valid_and_mutated(params: dict[str, str], user: str, edits: list[tuple[int, int]]) -> None:
    assume(not any(k.startswith("_pq_.") for k in params))
    params = {**params, "user": user}
    packet = m.startup_message(m.PROTOCOL_3_0, params)
    parsed = _read_startup(packet)
    assert isinstance(parsed, m.StartupMessage) and parsed.params == params
    try:
        _read_startup(_mutate(packet, edits))
    except ProtocolError:
        pass


# ---------------------------------------------------------------- PCP codec


def _pcp_decoder(requests: bool) -> Decoder:
    return lambda buf: proto.decode_packets(buf, requests=requests)


NODE = NodeInfo(
    backend_hostname="localhost", backend_port=5432, backend_status=2, quarantine=False, pg_backend_status="up",
    backend_weight=0.5, role=0, pg_role="primary", standby_delay=0, replication_state="", replication_sync_state="",
    status_changed_time=0,
)

pcp_requests = st.one_of(
    st.sampled_from([proto.salt_request(), proto.node_count_request(), proto.process_count_request(),
                     proto.pool_status_request(), proto.disconnect_request(), proto.reload_config_request()]),
    st.integers(-2, 200).map(proto.node_info_request),
    st.tuples(st.text(max_size=20), st.text(max_size=40)).map(lambda t: proto.auth_request(*t)),
    st.tuples(st.integers(0, 9), st.booleans(), st.booleans()).map(lambda t: proto.promote_node_request(*t)),
)
pcp_replies = st.one_of(
    st.sampled_from([proto.auth_ok_reply(), proto.command_complete("c"), proto.node_info_response([NODE]),
                     proto.pool_status_array_size(3), proto.salt_reply(b"abcd")]),
    st.integers(0, 999).map(proto.node_count_reply),
    st.text(max_size=30).map(lambda s: proto.error_response(s, severity="FATAL")),
    st.lists(st.integers(1, 99999), max_size=5).map(proto.process_count_reply),
)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8), st.booleans())
@example(b"R\x00\x00\x01\x04", [], True)  # pgpool-II's cap: length 260 is refused
@example(b"m\x00\x00\x00\x03", [2], False)
def test_pcp_random_bytes_split_anywhere(data: bytes, cuts: list[int], requests: bool) -> None:
    _check_split_invariance(_pcp_decoder(requests), PcpProtocolError, data, cuts)


@FUZZ
@given(
    st.booleans().flatmap(lambda req: st.tuples(st.just(req), st.lists(pcp_requests if req else pcp_replies,
                                                                       max_size=6))),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=3),
    st.lists(st.integers(0, 1000), max_size=8),
)
def test_pcp_valid_and_mutated_streams(stream: tuple[bool, list[bytes]], edits: list[tuple[int, int]],
                                       cuts: list[int]) -> None:
    requests, packets = stream
    data = b"".join(packets)
    decoded, rest = _feed(_pcp_decoder(requests), data, cuts)
    # Some replies are several packets: compare the re-framed bytes.
    assert b"".join(proto._header.pack(p.kind.encode("latin-1"), len(p.payload) + 4) + p.payload
                    for p in decoded) == data
    assert rest == b""
    _check_split_invariance(_pcp_decoder(requests), PcpProtocolError, _mutate(data, edits), cuts)


# Every payload decoder either side applies to bytes from the network.
PCP_PAYLOAD_DECODERS: list[Callable[[bytes], object]] = [
    proto.request_strings, proto.decode_auth_request, proto.decode_promote_request, proto.decode_salt,
    proto.decode_auth_ok, proto.decode_command_complete, proto.decode_node_count, proto.decode_process_count,
    proto.decode_node_info, proto.decode_process_info, proto.decode_pool_status_item,
    proto.decode_health_check_stats, proto.decode_watchdog_info, proto.decode_report,
    lambda p: proto.decode_array_size(proto.Packet("b", p)), lambda p: proto.decode_array_size(proto.Packet("i", p)),
]


@FUZZ
@given(st.one_of(
    st.binary(max_size=120),
    # Records with the right tag and random fields reach the number and JSON parsers.
    st.tuples(st.sampled_from([proto.COMMAND_COMPLETE, proto.NODE_INFO, proto.PROCESS_INFO, proto.ARRAY_SIZE,
                               proto.PROCESS_CONFIG]),
              st.lists(st.text(max_size=8), max_size=21)).map(lambda t: proto._cstrings(t[0], *t[1])),
))
@example(proto._cstrings(proto.COMMAND_COMPLETE, "[" * 100_000))  # JSON nested past the recursion limit
@example(proto._cstrings(proto.COMMAND_COMPLETE, '{"WatchdogNodes": [], "NodeCount": 0}'))
def test_pcp_payload_decoders_raise_only_protocol_errors(payload: bytes) -> None:
    for decode in PCP_PAYLOAD_DECODERS:
        try:
            decode(payload)
        except PcpProtocolError:
            pass
