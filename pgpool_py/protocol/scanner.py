"""
Following message boundaries in a backend → client byte stream without buffering it.

The relays forward backend data as it arrives, even mid-message, so a huge row or a COPY OUT
stream never piles up in a child; they only need to know when a ReadyForQuery went by (and its
transaction status byte), how many ErrorResponses did (SHOW POOL_BACKEND_STATS), and whether
a CopyInResponse did (the client sends nothing more until it has it).
"""

from __future__ import annotations

from typing import Final

from pgpool_py.protocol.messages import uint32_at

_Z: Final = ord("Z")
_E: Final = ord("E")
_COPY_IN: Final = (ord("G"), ord("W"))  # CopyInResponse, CopyBothResponse
_NOTABLE: Final = frozenset((_Z, _E, *_COPY_IN))  # the types feed() looks at; it only steps over others


class ReplyScanner:
    __slots__ = ("skip", "carry", "tx_status", "errors", "copy_in")

    def __init__(self, tx_status: int) -> None:
        self.skip = 0  # bytes of the current message still to pass
        self.carry = b""  # an incomplete header (< 6 bytes) from the previous chunk
        self.tx_status = tx_status
        self.errors = 0  # ErrorResponses seen; the caller takes and resets the count
        self.copy_in = False  # a CopyInResponse went by (the caller may reset it), until ReadyForQuery

    def feed(self, data: bytes) -> int:
        """Scan a chunk; return how many ReadyForQuery messages completed in it."""
        n = len(data)
        if self.skip >= n:
            self.skip -= n
            return 0
        if self.carry:
            data = self.carry + data
            n = len(data)
            self.carry = b""
            pos = 0
        else:
            pos = self.skip
        found = 0
        # Every message header here is whole, with ReadyForQuery's status byte: the loop runs
        # once per message of a reply, so it does as little as it can for the common types.
        last_whole = n - 6
        while pos <= last_whole:
            typ = data[pos]
            if typ in _NOTABLE:
                found += self._notable(typ, data, pos)
            pos += 1 + uint32_at(data, pos + 1)
        # Fewer than 6 bytes left: a header may be cut, or a ReadyForQuery's status byte.
        while pos < n:
            typ = data[pos]
            if n - pos < 5 or typ == _Z:
                self.carry = data[pos:]
                self.skip = 0
                return found
            if typ in _NOTABLE:
                self._notable(typ, data, pos)
            pos += 1 + uint32_at(data, pos + 1)
        self.skip = pos - n
        return found

    def _notable(self, typ: int, data: bytes, pos: int) -> int:
        """Note a message feed() looks at; 1 for a ReadyForQuery, else 0."""
        if typ == _Z:
            self.tx_status = data[pos + 5]
            self.copy_in = False
            return 1
        if typ == _E:
            self.errors += 1
        else:
            self.copy_in = True
        return 0
