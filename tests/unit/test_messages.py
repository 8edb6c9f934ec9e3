from __future__ import annotations

import random
import struct

import pytest

from pgpool_py.errors import ProtocolError
from pgpool_py.protocol import messages as m


def _startup_payload(code: int, body: bytes = b"") -> bytes:
    return struct.pack("!i", code) + body


def _params(*pairs: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in pairs) + b"\0"


# ---------------------------------------------------------------- startup phase


@pytest.mark.parametrize(("length", "ok"), [(7, False), (8, True), (10004, True), (10005, False), (-1, False)])
def test_startup_length_bounds(length: int, ok: bool) -> None:
    header = struct.pack("!i", length)
    if ok:
        assert m.startup_length(header) == length - 4
    else:
        with pytest.raises(ProtocolError, match="invalid length of startup packet"):
            m.startup_length(header)


def test_ssl_gssenc_and_cancel_requests() -> None:
    assert m.ssl_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert m.parse_startup_payload(m.ssl_request()[4:]) == m.SSLRequest()
    assert m.parse_startup_payload(b"\x04\xd2\x16\x30") == m.GSSENCRequest()
    cancel = m.cancel_request(4242, b"\x01\x02\x03\x04")
    assert cancel == b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x10\x92\x01\x02\x03\x04"
    assert m.startup_length(cancel[:4]) == len(cancel) - 4
    assert m.parse_startup_payload(cancel[4:]) == m.CancelRequest(4242, b"\x01\x02\x03\x04")


@pytest.mark.parametrize("key_len", [3, 257])
def test_cancel_request_key_length_checked(key_len: int) -> None:
    with pytest.raises(ProtocolError, match="invalid length of cancel request"):
        m.parse_startup_payload(_startup_payload(m.CANCEL_REQUEST_CODE, b"\0\0\0\1" + b"k" * key_len))


def test_startup_message() -> None:
    payload = _startup_payload(m.PROTOCOL_3_0, _params("user", "alice", "database", "db", "application_name", "psql"))
    msg = m.parse_startup_payload(payload)
    assert isinstance(msg, m.StartupMessage)
    assert (msg.major, msg.minor, msg.user, msg.database, msg.application_name) == (3, 0, "alice", "db", "psql")
    assert msg.unsupported_options == ()
    # The backend copy is a normal 3.0 startup packet with the same options.
    again = msg.to_backend_bytes()
    assert m.startup_length(again[:4]) == len(again) - 4
    back = m.parse_startup_payload(again[4:])
    assert isinstance(back, m.StartupMessage)
    assert (back.major, back.minor, back.params, back.unsupported_options) == (3, 0, msg.params, ())


def test_startup_database_defaults_to_user_and_empty_values_are_kept() -> None:
    msg = m.parse_startup_payload(_startup_payload(m.PROTOCOL_3_0, _params("user", "bob", "options", "")))
    assert isinstance(msg, m.StartupMessage)
    assert msg.database == "bob" and msg.params["options"] == ""


def test_pool_key_ignores_option_order() -> None:
    a = m.parse_startup_payload(_startup_payload(m.PROTOCOL_3_0, _params("user", "u", "database", "d")))
    b = m.parse_startup_payload(_startup_payload(m.PROTOCOL_3_0, _params("database", "d", "user", "u")))
    c = m.parse_startup_payload(_startup_payload(m.PROTOCOL_3_0, _params("database", "d", "user", "v")))
    assert isinstance(a, m.StartupMessage) and isinstance(b, m.StartupMessage) and isinstance(c, m.StartupMessage)
    assert a.pool_key_bytes() == b.pool_key_bytes() == b"database\0d\0user\0u\0"
    assert c.pool_key_bytes() != a.pool_key_bytes()


def test_protocol_3_2_and_pq_options_are_collected() -> None:
    payload = _startup_payload(m.PROTOCOL_3_2, _params("user", "u", "_pq_.compression", "on", "_pq_.other", "1"))
    msg = m.parse_startup_payload(payload)
    assert isinstance(msg, m.StartupMessage)
    assert (msg.major, msg.minor) == (3, 2)
    assert msg.unsupported_options == ("_pq_.compression", "_pq_.other")
    assert "_pq_.compression" not in msg.params


@pytest.mark.parametrize("version", [(2, 0), (4, 0), (1234, 5681)])
def test_unsupported_protocol_versions(version: tuple[int, int]) -> None:
    major, minor = version
    with pytest.raises(ProtocolError) as info:
        m.parse_startup_payload(_startup_payload((major << 16) | minor, _params("user", "u")))
    assert info.value.sqlstate == "0A000" and info.value.severity == "FATAL"
    assert f"unsupported frontend protocol {major}.{minor}" in info.value.message


@pytest.mark.parametrize("body", [_params("database", "d"), _params("user", ""), b"\0"])
def test_missing_user(body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        m.parse_startup_payload(_startup_payload(m.PROTOCOL_3_0, body))
    assert info.value.sqlstate == "28000"
    assert info.value.message == "no PostgreSQL user name specified in startup packet"


@pytest.mark.parametrize("body", [b"", b"user\0u\0", b"user\0\0", b"user\0u"])
def test_bad_startup_layout(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid startup packet layout"):
        m.parse_startup_payload(_startup_payload(m.PROTOCOL_3_0, body))


def test_non_utf8_option_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="UTF-8"):
        m.parse_startup_payload(_startup_payload(m.PROTOCOL_3_0, b"user\0\xff\0\0"))


# ---------------------------------------------------------------- framing

_STREAM = b"".join(
    [
        m.query("select 1"),
        m.SYNC,
        m.password_message(b"x" * 300),
        m.FLUSH,
        m.data_row(["a", None, "ccc"]),
        m.TERMINATE,
    ]
)


def _feed(chunks: list[bytes]) -> list[bytes]:
    """Split messages as a reader does: append what arrives, take the complete ones."""
    buf = bytearray()
    pos = 0
    out: list[bytes] = []
    for chunk in chunks:
        buf += chunk
        found, pos = m.split_messages(buf, pos)
        out.extend(bytes(buf[start:end]) for _, start, end in found)
    assert pos == len(buf)
    return out


def test_split_messages_whole_bytewise_and_random_chunks() -> None:
    whole = _feed([_STREAM])
    assert [msg[0] for msg in whole] == [ord(c) for c in "QSpHDX"]
    assert b"".join(whole) == _STREAM
    assert _feed([_STREAM[i : i + 1] for i in range(len(_STREAM))]) == whole
    rng = random.Random(1234)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(_STREAM)), rng.randint(1, 20)))
        pieces = [_STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(_STREAM)])]
        assert _feed(pieces) == whole


def test_split_messages_reports_types_and_incomplete_tail() -> None:
    found, pos = m.split_messages(_STREAM[:-1])
    assert [t for t, _, _ in found] == [ord(c) for c in "QSpHD"]
    assert pos == len(_STREAM) - len(m.TERMINATE)
    assert m.split_messages(memoryview(b"Q\0\0"))[0] == []


@pytest.mark.parametrize("length", [0x80000000, 0xFFFFFFFF, 0x40000000, 3, 0])
def test_absurd_lengths_are_protocol_errors(length: int) -> None:
    data = b"Q" + struct.pack("!I", length) + b"select"
    with pytest.raises(ProtocolError, match="invalid message length"):
        m.split_messages(data)
    with pytest.raises(ProtocolError, match="invalid message length"):
        m.message_length(data, 0)


def test_message_length() -> None:
    assert m.message_length(_STREAM, 0) == len(m.query("select 1"))


# ---------------------------------------------------------------- builders, checked byte by byte


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (m.query("select 1"), b"Q\x00\x00\x00\x0dselect 1\x00"),
        (m.TERMINATE, b"X\x00\x00\x00\x04"),
        (m.SYNC, b"S\x00\x00\x00\x04"),
        (m.FLUSH, b"H\x00\x00\x00\x04"),
        (m.AUTHENTICATION_OK, b"R\x00\x00\x00\x08\x00\x00\x00\x00"),
        (m.authentication(m.AUTH_CLEARTEXT), b"R\x00\x00\x00\x08\x00\x00\x00\x03"),
        (m.authentication(m.AUTH_MD5, b"salt"), b"R\x00\x00\x00\x0c\x00\x00\x00\x05salt"),
        (m.authentication_sasl(["SCRAM-SHA-256"]), b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00"),
        (m.password_message(b"pw\x00"), b"p\x00\x00\x00\x07pw\x00"),
        (
            m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x"),
            b"p\x00\x00\x00\x1fSCRAM-SHA-256\x00\x00\x00\x00\x09n,,n=,r=x",
        ),
        (m.startup_message(m.PROTOCOL_3_0, {"user": "u"}), b"\x00\x00\x00\x10\x00\x03\x00\x00user\x00u\x00\x00"),
        (m.parameter_status("a", "b"), b"S\x00\x00\x00\x08a\x00b\x00"),
        (m.backend_key_data(1, b"\x00\x00\x00\x02"), b"K\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x02"),
        (m.ready_for_query(), b"Z\x00\x00\x00\x05I"),
        (m.ready_for_query(m.TX_FAILED), b"Z\x00\x00\x00\x05E"),
        (m.negotiate_protocol_version(0, ["_pq_.x"]), b"v\x00\x00\x00\x13\x00\x03\x00\x00\x00\x00\x00\x01_pq_.x\x00"),
        (m.command_complete("SELECT 1"), b"C\x00\x00\x00\x0dSELECT 1\x00"),
        (m.data_row(["x", None]), b"D\x00\x00\x00\x0f\x00\x02\x00\x00\x00\x01x\xff\xff\xff\xff"),
        (
            m.row_description(["a"]),
            b"T\x00\x00\x00\x1a\x00\x01a\x00"
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00",
        ),
        (
            m.error_response("boom", "42000", detail="d"),
            b"E\x00\x00\x00\x23SERROR\x00VERROR\x00C42000\x00Mboom\x00Dd\x00\x00",
        ),
        (m.EMPTY_QUERY_RESPONSE, b"I\x00\x00\x00\x04"),
    ],
)
def test_builder_bytes(built: bytes, expected: bytes) -> None:
    assert built == expected


def test_bind_and_execute_parsers() -> None:
    body = b"p1\0s1\0" + b"\0\x01\0\x01" + b"\0\x02" + b"\0\0\0\x02ab" + b"\xff\xff\xff\xff" + b"\0\x02\0\x01\0\0"
    assert m.parse_bind(body) == m.Bind("p1", "s1", 2, (1, 0))
    assert m.parse_bind(b"\0\0\0\0\0\0\0\0") == m.Bind("", "", 0, ())
    for bad in (b"p1\0s1", b"\0\0\0\x01", b"\0\0\0\0\0\x01\0\0\0\x09ab", b"\0\0\0\0\0\0\0\x02\0\x01"):
        with pytest.raises(ProtocolError, match="invalid Bind message"):
            m.parse_bind(bad)
    assert m.parse_execute(b"cur\0\0\0\0\x0a") == ("cur", 10)
    with pytest.raises(ProtocolError, match="invalid Execute message"):
        m.parse_execute(b"cur\0\0\0")


def test_row_description_takes_the_binds_result_formats() -> None:
    def formats(msg: bytes) -> list[int]:
        return [int.from_bytes(msg[i + 18 : i + 20], "big") for i in (7, 27)]  # one-letter names

    assert formats(m.row_description(["a", "b"])) == [0, 0]
    assert formats(m.row_description(["a", "b"], (1,))) == [1, 1]
    assert formats(m.row_description(["a", "b"], (0, 1))) == [0, 1]


def test_parsers() -> None:
    fields = m.parse_error_fields(m.error_response("boom", "42000", hint="h")[5:])
    assert fields == {"S": "ERROR", "V": "ERROR", "C": "42000", "M": "boom", "H": "h"}
    assert m.parse_authentication(m.authentication(m.AUTH_MD5, b"salt")[5:]) == m.AuthRequest(5, b"salt")
    assert m.parse_query(m.query("select 1")[5:]) == "select 1"
    assert m.parse_parse(b"stmt\0select $1\0\0\0") == ("stmt", "select $1")
    notice = m.parse_error_fields(m.notice_response("hello")[5:])
    assert notice["S"] == "NOTICE" and notice["M"] == "hello"


def test_query_bytes_of_a_whole_message() -> None:
    assert m.query_bytes(m.query("SELECT 'é'")) == "SELECT 'é'".encode()
    assert m.query_bytes(b"Q\x00\x00\x00\x07abc") == b"abc"        # no NUL: everything after the header
    assert m.query_bytes(b"Q\x00\x00\x00\x08a\x00bc") == b"a"       # up to the first NUL, as parse_query
    assert m.query_bytes(b"Q\x00\x00\x00\x05\xff") == b"\xff"      # undecoded: not UTF-8 is no error
    assert m.parse_query(b"\xff\x00") == "\ufffd"                    # decoded: replaced, never raised
