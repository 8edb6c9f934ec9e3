"""
Following message boundaries in a backend → client byte stream without buffering it.

The relays forward backend data as it arrives, even mid-message, so a huge row or a COPY OUT
stream never piles up in a child; they only need to know when a ReadyForQuery went by (and its
transaction status byte), how many ErrorResponses did (SHOW POOL_BACKEND_STATS), and whether
a CopyInResponse did (the client sends nothing more until it has it).
"""

from __future__ import annotations

from pgpool_py.protocol import messages as m

_Z = ord("Z")
_E = ord("E")
_COPY_IN = (ord("G"), ord("W"))  # CopyInResponse, CopyBothResponse


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
            self.skip = 0
        found = 0
        unpack = m.unpack_uint32_from
        while pos < n:
            # Need the header and, for ReadyForQuery, its status byte.
            if n - pos < 6 and (n - pos < 5 or data[pos] == _Z):
                self.carry = data[pos:]
                return found
            typ = data[pos]
            (length,) = unpack(data, pos + 1)
            if typ == _Z:
                self.tx_status = data[pos + 5]
                self.copy_in = False
                found += 1
            elif typ == _E:
                self.errors += 1
            elif typ in _COPY_IN:
                self.copy_in = True
            end = pos + 1 + length
            if end > n:
                self.skip = end - n
                return found
            pos = end
        return found
