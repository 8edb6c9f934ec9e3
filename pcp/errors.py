"""
Exceptions of the PCP client and codec.

- ``PcpError``: the server answered with an ``E`` packet (pgpool's ereport ERROR or FATAL).
- ``PcpAuthError``: the server refused the user name or password (a FATAL ``E`` during auth).
- ``PcpProtocolError``: bytes that are not valid PCP (bad length, unknown kind, bad record).
- ``PcpConnectionError``: the socket could not be opened, or broke, or timed out.

The messages of the last two follow libpcp's wording, so the tools print what pgpool-II's print.
"""

from __future__ import annotations


class PcpError(Exception):
    """An error reported by the PCP server: severity, message and optional detail."""

    def __init__(
        self, message: str, detail: str | None = None, *, severity: str = "ERROR", hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.severity = severity
        self.hint = hint  # what to do about it (pgpool-py servers send one; pgpool-II's tools drop it)

    def __str__(self) -> str:
        if self.detail:
            return f"{self.message} (detail: {self.detail})"
        return self.message


class PcpAuthError(PcpError):
    """The server rejected the credentials; it closes the connection afterwards."""


class PcpProtocolError(Exception):
    """Malformed PCP data; ``message``/``detail`` are what pgpool-II reports for it."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        if self.detail:
            return f"{self.message}: {self.detail}"
        return self.message


class PcpConnectionError(Exception):
    """The connection could not be made or was lost (libpcp's ``ERROR: ...`` one-liners)."""
