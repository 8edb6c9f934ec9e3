"""
Exceptions with pgpool-II's level semantics.

- ``PgError`` carries what a client sees in an ErrorResponse (SQLSTATE, message, detail, hint).
- ``SessionError`` (pgpool's ERROR) ends the current client session; the child lives on.
- ``ProcessFatal`` (pgpool's FATAL) exits the process with a chosen exit code.
- ``ServerHalt`` stops the whole server; it derives from BaseException so that a stray
  ``except Exception`` cannot swallow it.
- ``ConfigError`` is one clear line naming the file, line and parameter.
"""

from __future__ import annotations


class PgError(Exception):
    """An error with PostgreSQL's fields, ready to become an ErrorResponse."""

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str = "XX000",
        detail: str | None = None,
        hint: str | None = None,
        severity: str = "ERROR",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.severity = severity

    def __str__(self) -> str:
        text = self.message
        if self.detail:
            text += f" (detail: {self.detail})"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ProtocolError(PgError):
    """The peer broke the wire protocol; the session ends after the error is reported."""

    def __init__(self, message: str, *, sqlstate: str = "08P01", **kw: str | None) -> None:
        super().__init__(message, sqlstate=sqlstate, severity="FATAL", **kw)  # type: ignore[arg-type]


class SessionError(PgError):
    """Ends the current client session; the child process keeps serving."""


class AuthError(PgError):
    """Authentication failed; says no more than PostgreSQL would."""

    def __init__(self, message: str, *, sqlstate: str = "28P01", **kw: str | None) -> None:
        super().__init__(message, sqlstate=sqlstate, severity="FATAL", **kw)  # type: ignore[arg-type]


class ProcessFatal(Exception):
    """Exits the current process with ``exit_code`` (see process.ExitCode)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServerHalt(BaseException):
    """Stops the server: raised in main, never swallowed by ``except Exception``."""

    def __init__(self, reason: str, exit_status: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_status = exit_status


class ConfigError(Exception):
    """A configuration problem, rendered as one line: ``file:line: parameter "x": why``."""
