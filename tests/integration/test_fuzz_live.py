"""
A bounded fuzz run against a live pgpool-py: random and mutated-valid packets, in the startup
phase and after login, each on its own connection.  Afterwards every process that was there
before is still alive (none died and was respawned), no process logged an unhandled exception,
and a normal client is served.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections import Counter
from typing import Any

import pytest

from pgpool_py.cluster import HOST, SERVER_USER
from pgpool_py.protocol import messages as m
from tests.fix_pgpool import PgpoolServer, _group_members

INPUTS_PER_PHASE = 250  # x2 phases: a few hundred connections per mode, well under a minute
READ_TIMEOUT = 2.0
SEED = 7  # fixed, so a failure can be replayed

# Read-only statements only: a mutation may still run them.
QUERIES = ["SELECT 1", "SELECT now()", "SELECT $1::int", "SHOW server_version", "BEGIN", "COMMIT",
           "SELECT * FROM generate_series(1, 50)", "SHOW POOL_NODES", "PGPOOL SHOW port"]


def _valid_session_messages(rng: random.Random) -> bytes:
    """A plausible client conversation after login: simple and extended queries, COPY bits."""
    sql = rng.choice(QUERIES).encode()
    parts = [
        m.frame(b"Q", sql + b"\0"),
        m.frame(b"P", b"s1\0" + sql + b"\0" + struct.pack("!h", 0)),
        m.frame(b"B", b"p1\0s1\0" + struct.pack("!hhi", 0, 1, 1) + b"7" + struct.pack("!h", 0)),
        m.frame(b"D", b"Ss1\0"),
        m.frame(b"D", b"Pp1\0"),
        m.frame(b"E", b"p1\0" + struct.pack("!i", 0)),
        m.frame(b"C", b"Ss1\0"),
        m.frame(b"H"),
        m.frame(b"S"),
        m.frame(b"d", b"1\t2\n"),
        m.frame(b"c"),
        m.frame(b"f", b"no copy\0"),
        m.frame(b"F", struct.pack("!i", 1242) + b"\0\0\0\0\0\0\0\0\0\0"),
    ]
    return b"".join(rng.sample(parts, rng.randint(1, 6)))


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(4)
        pos = rng.randrange(len(out) + 1)
        if how == 0 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif how == 1:
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif how == 2:
            del out[pos : pos + rng.randint(1, 8)]
        else:
            del out[pos:]  # truncation
    return bytes(out)


def _startup_input(rng: random.Random) -> tuple[str, bytes]:
    valid = m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test"})
    choice = rng.randrange(5)
    if choice == 0:
        return "random", rng.randbytes(rng.randint(1, 64))
    if choice == 1:
        return "mutated startup", _mutate(valid, rng)
    if choice == 2:
        return "mutated ssl/cancel", _mutate(rng.choice([m.ssl_request(), m.cancel_request(rng.randrange(1 << 31),
                                                                                           rng.randbytes(4))]), rng)
    if choice == 3:
        return "startup + garbage", valid + rng.randbytes(rng.randint(1, 32))
    return "random length word", struct.pack("!i", rng.randint(-(1 << 31), (1 << 31) - 1)) + rng.randbytes(8)


def _session_input(rng: random.Random) -> tuple[str, bytes]:
    choice = rng.random()
    if choice < 0.2:
        return "random", rng.randbytes(rng.randint(1, 64))
    if choice < 0.6:
        # Well framed, so it reaches the message parsers: a known type with a bad body, then Sync.
        body = _mutate(rng.choice([b"s1\0SELECT 1\0\0\0", b"p1\0s1\0\0\0\0\0\0\0", b"Ss1\0", b"p1\0\0\0\0\0",
                                   b"SELECT 1\0"]), rng)
        # Half of them after a statement of pgpool's own, so that they reach its parsers too.
        ours = m.frame(b"P", b"s1\0SHOW POOL_VERSION\0\0\0") + m.frame(b"B", b"p1\0s1\0\0\0\0\0\0\0")
        return "bad body", (ours if rng.random() < 0.5 else b"") + m.frame(bytes([rng.choice(b"PBDECQFdcf")]), body) \
            + m.frame(b"S")
    return "mutated", _mutate(_valid_session_messages(rng), rng)


def _drain(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _send(server: PgpoolServer, payload: bytes, *, login: bool) -> str:
    """Send one input on a fresh connection; return how the server answered."""
    if login:
        sock = server.raw_session(READ_TIMEOUT)
    else:
        sock = socket.create_connection((HOST, server.port), timeout=READ_TIMEOUT)
    with sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # an incomplete packet then meets EOF, not a wait
        except OSError:
            return "closed while sending"
        reply = _drain(sock)
    if b"SFATAL\0" in reply or b"SERROR\0" in reply:
        return "error reply"
    return "other reply" if reply else "closed silently"


def _processes(server: PgpoolServer, settle: float = 1.0, limit: float = 10.0) -> set[int]:
    """Main, children and helpers, once the set has stopped changing (helpers start late)."""
    deadline = time.monotonic() + limit
    seen = set(_group_members(server.pid))
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < settle and time.monotonic() < deadline:
        time.sleep(0.2)
        now = set(_group_members(server.pid))
        if now != seen:
            seen, stable_since = now, time.monotonic()
    return seen


@pytest.mark.parametrize("mode", ["raw", "streaming"])
def test_live_fuzz_leaves_every_process_alive(pgpool_factory: Any, pg_cluster: Any, mode: str) -> None:
    extra: dict[str, Any] = {"num_init_children": 4, "authentication_timeout": 5}
    if mode == "raw":
        extra["backend_clustering_mode"] = "raw"
    server = pgpool_factory(pg_cluster, extra=extra)
    before = _processes(server)
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    start = time.monotonic()
    for phase, make, login in (("startup", _startup_input, False), ("session", _session_input, True)):
        for _ in range(INPUTS_PER_PHASE):
            kind, payload = make(rng)
            outcomes[f"{phase}/{kind}/{_send(server, payload, login=login)}"] += 1
    elapsed = time.monotonic() - start

    print(f"\n{mode}: {2 * INPUTS_PER_PHASE} fuzz inputs in {elapsed:.1f}s (seed {SEED}):")
    for key, count in sorted(outcomes.items()):
        print(f"  {count:4d}  {key}")
    after = _processes(server)
    print(f"  processes before {len(before)}, after {len(after)}; died: {sorted(before - after)}")
    assert before <= after, f"processes died during the fuzz run: {sorted(before - after)}"
    assert after == before, f"processes were respawned: {sorted(after - before)}"
    log_text = server.log_text()
    assert "unhandled exception" not in log_text
    # The child survives even a bug (child.py's last line of defence), but bad input must be
    # a protocol error, not an internal error.
    internal = log_text.count("internal error while serving a client")
    print(f"  internal errors logged: {internal}")
    assert internal == 0, "bad input reached a parser that raised something other than ProtocolError"
    with server.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        rows = conn.execute("SHOW POOL_PROCESSES").fetchall()
    assert {int(r[0]) for r in rows} <= after
