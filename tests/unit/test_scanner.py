"""ReplyScanner: ReadyForQuery, errors and CopyInResponse found in a reply cut anywhere."""

from __future__ import annotations

import random

import pytest

from pgpool_py.protocol import messages as m
from pgpool_py.protocol.scanner import ReplyScanner

_TYPES = b"TDCnsEZGWA1234"


def _reply(rng: random.Random, messages: int) -> list[bytes]:
    """Random backend messages: ReadyForQuery with a random status, the others with bodies
    of 0 to 40 bytes (byte values that look like headers included)."""
    out = []
    for _ in range(messages):
        typ = rng.choice(_TYPES)
        if typ == ord("Z"):
            out.append(m.frame(b"Z", bytes([rng.choice(b"IET")])))
        else:
            out.append(m.frame(bytes([typ]), bytes(rng.choice(b"Z\0\5IE") for _ in range(rng.randrange(41)))))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_the_scanner_finds_what_a_whole_reply_holds_however_it_is_cut(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        _check_one_reply(rng)


def _check_one_reply(rng: random.Random) -> None:
    messages = _reply(rng, rng.randrange(1, 30))
    stream = b"".join(messages)
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 12))))
    scanner = ReplyScanner(ord("I"))
    found, status, copy_in = 0, ord("I"), False
    expected_found = expected_errors = 0
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        found += scanner.feed(stream[start:end])
    for msg in messages:
        if msg[0] == ord("Z"):
            expected_found, status, copy_in = expected_found + 1, msg[5], False
        elif msg[0] == ord("E"):
            expected_errors += 1
        elif msg[0] in b"GW":
            copy_in = True
    assert (found, scanner.errors, scanner.tx_status, scanner.copy_in) == (expected_found, expected_errors, status,
                                                                             copy_in)
    assert scanner.skip == 0 and scanner.carry == b""  # at a message boundary at the end


def test_a_readyforquery_cut_before_its_status_byte_counts_once_whole() -> None:
    scanner = ReplyScanner(ord("I"))
    reply = m.command_complete("SELECT 1") + m.ready_for_query(ord("T"))
    assert scanner.feed(reply[:-1]) == 0
    assert scanner.tx_status == ord("I")
    assert scanner.feed(reply[-1:]) == 1
    assert scanner.tx_status == ord("T")
