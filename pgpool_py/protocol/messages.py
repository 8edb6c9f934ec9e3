"""
Sans-IO codec for the PostgreSQL v3 wire protocol.

Nothing here touches a socket: parsers take bytes and return messages plus the number of
bytes consumed (or "need more"); builders return bytes.  ``protocol/stream.py`` and the
session code do the I/O.

Framing::

    startup phase:  int32 length (includes itself) | int32 code | payload
    normal phase:   byte1 type | int32 length (includes itself, not the type) | payload
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final, Iterable, Sequence

from pgpool_py.errors import ProtocolError

# Precompiled packers (psycopg's _struct.py habit): the relay calls these per message.
_I32: Final = struct.Struct("!i")
_U32: Final = struct.Struct("!I")
_I16: Final = struct.Struct("!h")
_HDR: Final = struct.Struct("!cI")
_TWO_I32: Final = struct.Struct("!ii")
pack_int32 = _I32.pack
unpack_int32_from = _I32.unpack_from

PROTOCOL_3_0: Final = 3 << 16
PROTOCOL_3_2: Final = (3 << 16) | 2
LATEST_MINOR: Final = 0  # we speak 3.0 and offer it back through NegotiateProtocolVersion
CANCEL_REQUEST_CODE: Final = (1234 << 16) | 5678
SSL_REQUEST_CODE: Final = (1234 << 16) | 5679
GSSENC_REQUEST_CODE: Final = (1234 << 16) | 5680

# pgpool-II accepts startup payloads of 4..10000 bytes; PostgreSQL's own limit is 10000 too.
MAX_STARTUP_PAYLOAD: Final = 10000
# A regular message may be large (COPY data, big bind parameters) but a length field beyond
# PostgreSQL's MaxAllocSize (1 GB - 1) can only be garbage or an attack.
MAX_MESSAGE_LENGTH: Final = 0x3FFFFFFF

# Transaction status bytes in ReadyForQuery.
TX_IDLE: Final = ord("I")
TX_IN_BLOCK: Final = ord("T")
TX_FAILED: Final = ord("E")


# ---------------------------------------------------------------- startup phase


class StartupMessage:
    # A plain class, not a dataclass: compiled, that keeps the interpreted __init__ the
    # dataclass module writes (child/router.py says more), and one is made per connection.
    def __init__(self, major: int, minor: int, params: dict[str, str], unsupported_options: tuple[str, ...] = ()) -> None:
        self.major = major
        self.minor = minor
        self.params = params
        # Options the client asked for that we do not know (``_pq_.*``): answered with
        # NegotiateProtocolVersion instead of refusing the connection.
        self.unsupported_options = unsupported_options

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def database(self) -> str:
        return self.params.get("database") or self.user

    @property
    def application_name(self) -> str:
        return self.params.get("application_name", "")

    def pool_key_bytes(self) -> bytes:
        """The startup options sorted by name, as pgpool-II compares them for pool reuse."""
        params = self.params
        parts: list[str] = []
        for name in sorted(params):  # names, not (name, value) pairs: no tuple per option
            parts.append(name)
            parts.append(params[name])
        parts.append("")  # each value ends with a NUL too
        return "\0".join(parts).encode()

    def to_backend_bytes(self) -> bytes:
        """The startup packet we send to a backend: always protocol 3.0, known options only."""
        return startup_message(PROTOCOL_3_0, self.params)


@dataclass(frozen=True)
class SSLRequest:
    pass


@dataclass(frozen=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True)
class CancelRequest:
    pid: int
    key: bytes


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def startup_length(header: bytes) -> int:
    """Validate the int32 length at the start of a startup packet; return the payload size."""
    (length,) = _I32.unpack_from(header, 0)
    payload = length - 4
    if payload < 4 or payload > MAX_STARTUP_PAYLOAD:
        raise ProtocolError(
            "invalid length of startup packet",
            detail=f"length {length} is outside 8..{MAX_STARTUP_PAYLOAD + 4}",
        )
    return payload


def parse_startup_payload(payload: bytes) -> StartupPacket:
    """Parse the bytes after the length word of a startup-phase packet."""
    (code,) = _I32.unpack_from(payload, 0)
    if code == SSL_REQUEST_CODE and len(payload) == 4:
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE and len(payload) == 4:
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        if len(payload) < 12 or len(payload) > 4 + 4 + 256:
            raise ProtocolError("invalid length of cancel request packet")
        (pid,) = _I32.unpack_from(payload, 4)
        return CancelRequest(pid, bytes(payload[8:]))
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        # PostgreSQL's wording; pgpool-II 4.3 just closed the socket here.
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.{LATEST_MINOR}",
            sqlstate="0A000",
        )
    return _parse_startup_params(major, minor, payload[4:])


def _parse_startup_params(major: int, minor: int, data: bytes) -> StartupMessage:
    data = bytes(data)
    if not data or data[-1] != 0:
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    # name\0value\0 ... \0: drop the list terminator, then the last value's NUL.
    parts = data[:-2].split(b"\0") if len(data) > 1 else []
    if len(parts) % 2 or (len(data) > 1 and data[-2] != 0):
        raise ProtocolError("invalid startup packet layout: expected terminator as last byte")
    params: dict[str, str] = {}
    unsupported: list[str] = []
    try:
        for i in range(0, len(parts), 2):
            name, value = parts[i].decode(), parts[i + 1].decode()
            if name.startswith("_pq_."):
                unsupported.append(name)
                continue
            params[name] = value
    except UnicodeDecodeError as exc:
        raise ProtocolError("invalid startup packet: option is not valid UTF-8") from exc
    if not params.get("user"):
        raise ProtocolError("no PostgreSQL user name specified in startup packet", sqlstate="28000")
    return StartupMessage(major, minor, params, tuple(unsupported))


# ---------------------------------------------------------------- framing


def split_messages(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """
    Find the complete messages in ``buf[pos:]``.

    Returns ``([(type, start, end), ...], next_pos)`` where ``buf[start:end]`` is the whole
    message including its type byte and ``next_pos`` is where the first incomplete one begins.
    """
    if isinstance(buf, bytes):
        return _split_bytes(buf, pos)
    out: list[tuple[int, int, int]] = []
    n = len(buf)
    unpack = _U32.unpack_from
    while n - pos >= 5:
        (length,) = unpack(buf, pos + 1)
        end = pos + 1 + _checked_length(buf[pos], length)
        if end > n:
            break
        out.append((buf[pos], pos, end))
        pos = end
    return out, pos


def uint32_at(buf: bytes, pos: int) -> int:
    """The big-endian unsigned 32-bit integer at ``buf[pos:pos + 4]`` (a message's length).
    Compiled, four byte reads and shifts are native code, where struct's unpack_from is a
    call that makes a tuple: this runs once per message of every reply and batch."""
    return (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]


def _split_bytes(buf: bytes, pos: int) -> tuple[list[tuple[int, int, int]], int]:
    """split_messages of bytes, the usual case (a client's chunk, routed as it came), with
    native indexing and uint32_at."""
    out: list[tuple[int, int, int]] = []
    n = len(buf)
    while n - pos >= 5:
        end = pos + 1 + _checked_length(buf[pos], uint32_at(buf, pos + 1))
        if end > n:
            break
        out.append((buf[pos], pos, end))
        pos = end
    return out, pos


def _checked_length(typ: int, length: int) -> int:
    """A message's length word, refused outside 4..MAX_MESSAGE_LENGTH."""
    if length < 4 or length > MAX_MESSAGE_LENGTH:
        raise ProtocolError("invalid message length", detail=f"message type 0x{typ:02x} has length {length}")
    return length


def message_length(buf: bytes | bytearray | memoryview, pos: int) -> int:
    """Total size (type byte included) of the message starting at ``pos``; needs 5 bytes."""
    (length,) = _U32.unpack_from(buf, pos + 1)
    return 1 + _checked_length(buf[pos], length)


def frame(kind: bytes, body: bytes = b"") -> bytes:
    """One protocol message: its type byte, its length, its body."""
    return _HDR.pack(kind, len(body) + 4) + body


def _cstr(s: str) -> bytes:
    return s.encode() + b"\0"


# ---------------------------------------------------------------- frontend messages (we send to backends)


def startup_message(version: int, params: dict[str, str]) -> bytes:
    body = _I32.pack(version) + b"".join(_cstr(k) + _cstr(v) for k, v in params.items()) + b"\0"
    return _I32.pack(len(body) + 4) + body


def cancel_request(pid: int, key: bytes) -> bytes:
    body = _TWO_I32.pack(CANCEL_REQUEST_CODE, pid) + key
    return _I32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return _TWO_I32.pack(8, SSL_REQUEST_CODE)


def query(sql: str) -> bytes:
    return frame(b"Q", _cstr(sql))


def password_message(data: bytes) -> bytes:
    """PasswordMessage / SASLInitialResponse / SASLResponse all use type 'p'."""
    return frame(b"p", data)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return frame(b"p", _cstr(mechanism) + _I32.pack(len(data)) + data)


TERMINATE: Final = frame(b"X")
SYNC: Final = frame(b"S")
FLUSH: Final = frame(b"H")


# ---------------------------------------------------------------- backend messages (we send to clients)

AUTH_OK: Final = 0
AUTH_CLEARTEXT: Final = 3
AUTH_MD5: Final = 5
AUTH_SASL: Final = 10
AUTH_SASL_CONTINUE: Final = 11
AUTH_SASL_FINAL: Final = 12


def authentication(code: int, data: bytes = b"") -> bytes:
    return frame(b"R", _I32.pack(code) + data)


AUTHENTICATION_OK: Final = authentication(AUTH_OK)


def authentication_sasl(mechanisms: Sequence[str]) -> bytes:
    return authentication(AUTH_SASL, b"".join(_cstr(m) for m in mechanisms) + b"\0")


def parameter_status(name: str, value: str) -> bytes:
    return frame(b"S", _cstr(name) + _cstr(value))


def backend_key_data(pid: int, key: bytes) -> bytes:
    return frame(b"K", _I32.pack(pid) + key)


def ready_for_query(status: int = TX_IDLE) -> bytes:
    return frame(b"Z", bytes((status,)))


def negotiate_protocol_version(newest_minor: int, unsupported: Sequence[str]) -> bytes:
    body = _I32.pack(PROTOCOL_3_0 | newest_minor) + _I32.pack(len(unsupported))
    return frame(b"v", body + b"".join(_cstr(o) for o in unsupported))


def _fields(fields: Iterable[tuple[bytes, str | None]]) -> bytes:
    return b"".join(code + _cstr(value) for code, value in fields if value is not None) + b"\0"


def error_response(
    message: str,
    sqlstate: str = "XX000",
    *,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    return frame(
        b"E",
        _fields(
            [
                (b"S", severity),
                (b"V", severity),
                (b"C", sqlstate),
                (b"M", message),
                (b"D", detail),
                (b"H", hint),
            ]
        ),
    )


def notice_response(message: str, *, severity: str = "NOTICE", sqlstate: str = "00000", detail: str | None = None,
                    hint: str | None = None) -> bytes:
    return frame(b"N", _fields([(b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", message), (b"D", detail),
                                (b"H", hint)]))


def parse_error_fields(body: bytes | memoryview) -> dict[str, str]:
    """Fields of an ErrorResponse/NoticeResponse body (after the length word), keyed by code letter."""
    out: dict[str, str] = {}
    raw = bytes(body)
    pos = 0
    while pos < len(raw) and raw[pos] != 0:
        code = chr(raw[pos])
        end = raw.find(b"\0", pos + 1)
        if end < 0:  # fuzzing found it: a ValueError would escape the session and kill the child
            raise ProtocolError("invalid error or notice message: field is not NUL-terminated")
        out[code] = raw[pos + 1 : end].decode(errors="replace")
        pos = end + 1
    return out


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int = 25  # text; pgpool-II sends 0, which some drivers cannot decode


def row_description(columns: Sequence[Column | str], formats: Sequence[int] = ()) -> bytes:
    """``formats``: a Bind's result format codes (none: all text; one: for every column)."""
    parts = [_I16.pack(len(columns))]
    for i, col in enumerate(columns):
        c = col if isinstance(col, Column) else Column(col)
        code = formats[i] if len(formats) > 1 else formats[0] if formats else 0
        # table oid 0, column 0, type oid, size -1, typmod -1, format
        parts.append(_cstr(c.name) + struct.pack("!ihihih", 0, 0, c.type_oid, -1, -1, code))
    return frame(b"T", b"".join(parts))


def data_row(values: Sequence[str | None]) -> bytes:
    parts = [_I16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(_I32.pack(-1))
        else:
            b = v.encode()
            parts.append(_I32.pack(len(b)) + b)
    return frame(b"D", b"".join(parts))


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a RowDescription."""

    name: bytes
    table_oid: int
    column: int
    type_oid: int
    size: int
    type_modifier: int
    format: int


_FIELD: Final = struct.Struct("!IhIhih")


def parse_row_description(body: bytes) -> list[Field]:
    """A RowDescription ('T') message body (after the length word)."""
    try:
        (count,) = _I16.unpack_from(body, 0)
        pos, fields = 2, []
        for _ in range(count):
            end = body.index(b"\0", pos)
            fields.append(Field(body[pos:end], *_FIELD.unpack_from(body, end + 1)))
            pos = end + 1 + _FIELD.size
    except (ValueError, struct.error):
        raise ProtocolError("invalid RowDescription message") from None
    return fields


def parse_data_row(body: bytes | memoryview) -> list[str | None]:
    """A DataRow's values as text (NULL: None)."""
    (count,) = _I16.unpack_from(body, 0)
    pos = 2
    row: list[str | None] = []
    for _ in range(count):
        (size,) = _I32.unpack_from(body, pos)
        pos += 4
        if size < 0:
            row.append(None)
        else:
            row.append(bytes(body[pos : pos + size]).decode(errors="replace"))
            pos += size
    return row


def command_complete(tag: str) -> bytes:
    return frame(b"C", _cstr(tag))


EMPTY_QUERY_RESPONSE: Final = frame(b"I")
PARSE_COMPLETE: Final = frame(b"1")
BIND_COMPLETE: Final = frame(b"2")
CLOSE_COMPLETE: Final = frame(b"3")
NO_DATA: Final = frame(b"n")
PORTAL_SUSPENDED: Final = frame(b"s")
NO_PARAMETERS: Final = frame(b"t", _I16.pack(0))  # ParameterDescription of a statement without any


# ---------------------------------------------------------------- parsing backend replies


@dataclass
class AuthRequest:
    code: int
    data: bytes = b""


def parse_authentication(body: bytes | memoryview) -> AuthRequest:
    if len(body) < 4:  # fuzzing found it: struct.error is no protocol error
        raise ProtocolError("invalid authentication request: message too short")
    (code,) = _I32.unpack_from(body, 0)
    return AuthRequest(code, bytes(body[4:]))


def query_bytes(msg: bytes) -> bytes:
    """The SQL of a whole Query message (type byte and length included), undecoded: the bytes
    up to the first NUL (or the end)."""
    return _to_nul(msg, 5)


def parse_query(body: bytes | memoryview) -> str:
    """The SQL text of a Query ('Q') message body, never failing on bad UTF-8."""
    return _to_nul(bytes(body), 0).decode(errors="replace")


def _to_nul(raw: bytes, start: int) -> bytes:
    end = raw.find(b"\0", start)
    return raw[start : end if end >= 0 else len(raw)]


def parse_parse(body: bytes | memoryview) -> tuple[str, str]:
    """(statement name, query text) of a Parse ('P') message body."""
    name, text = parse_parse_bytes(bytes(body), 0)
    return name.decode(errors="replace"), text.decode(errors="replace")


def parse_parse_bytes(raw: bytes, start: int = 5) -> tuple[bytes, bytes]:
    """``parse_parse`` undecoded, from ``start`` (5: a whole message)."""
    e1 = raw.find(b"\0", start)
    e2 = raw.find(b"\0", e1 + 1) if e1 >= 0 else -1
    if e2 < 0:  # fuzzing found it: a ValueError here escaped the session and killed the child
        raise ProtocolError("invalid Parse message: name or query is not NUL-terminated")
    return raw[start:e1], raw[e1 + 1 : e2]


_EXECUTE: Final = ord("E")
_DESCRIBE: Final = ord("D")
_TARGET_KINDS: Final = (ord("S"), ord("P"))  # Describe/Close of a statement or a portal


def _name_at(buf: bytes | bytearray, start: int, end: int, what: str) -> tuple[str, int]:
    """The NUL-terminated name at ``buf[start:end]``, and where the next field begins."""
    nul = buf.find(b"\0", start, end)
    if nul < 0:
        raise ProtocolError(f"invalid {what} message: a name is not NUL-terminated")
    return (bytes(buf[start:nul]).decode(errors="replace") if nul > start else ""), nul + 1


def bind_names(buf: bytes | bytearray, start: int, end: int) -> tuple[str, str]:
    """Bind at ``buf[start:end]``: (portal, statement)."""
    if end - start > 6 and not buf[start + 5] and not buf[start + 6]:
        return "", ""  # the unnamed portal and statement: most Binds
    portal, pos = _name_at(buf, start + 5, end, "Bind")
    return portal, _name_at(buf, pos, end, "Bind")[0]


def target_name(buf: bytes | bytearray, start: int, end: int, typ: int) -> tuple[str, str]:
    """Describe/Close at ``buf[start:end]``: ('S' or 'P', name); Execute: ('P', portal)."""
    if typ == _EXECUTE:
        return "P", _name_at(buf, start + 5, end, "Execute")[0]
    kind = buf[start + 5] if end - start > 5 else 0
    if kind not in _TARGET_KINDS:
        raise ProtocolError(f"invalid {'Describe' if typ == _DESCRIBE else 'Close'} message: bad target type")
    return chr(kind), _name_at(buf, start + 6, end, "Describe or Close")[0]


@dataclass(frozen=True, slots=True)
class Bind:
    portal: str
    statement: str
    parameters: int
    result_formats: tuple[int, ...]  # none: all text; one: for every column; else per column


def parse_bind(body: bytes) -> Bind:
    """A Bind ('B') message body (after the length word)."""
    try:
        e1 = body.index(b"\0")
        e2 = body.index(b"\0", e1 + 1)
        pos = e2 + 1
        (count,) = _I16.unpack_from(body, pos)
        pos += 2 + 2 * count  # the parameters' format codes
        (parameters,) = _I16.unpack_from(body, pos)
        pos += 2
        for _ in range(parameters):
            (size,) = _I32.unpack_from(body, pos)
            pos += 4 + max(size, 0)
        (count,) = _I16.unpack_from(body, pos)
        formats = struct.unpack_from(f"!{count}h", body, pos + 2)
    except (ValueError, struct.error):
        raise ProtocolError("invalid Bind message") from None
    decode = bytes.decode
    return Bind(decode(body[:e1], errors="replace"), decode(body[e1 + 1 : e2], errors="replace"), parameters, formats)


def parse_execute(body: bytes) -> tuple[str, int]:
    """An Execute ('E') message body: (portal, the row limit; 0 for none)."""
    end = body.find(b"\0")
    if end < 0 or len(body) < end + 5:
        raise ProtocolError("invalid Execute message")
    return body[:end].decode(errors="replace"), _I32.unpack_from(body, end + 1)[0]


@dataclass
class ParameterSet:
    """The ParameterStatus messages a backend sent at startup, replayed to clients on reuse."""

    values: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return b"".join(parameter_status(k, v) for k, v in self.values.items())
