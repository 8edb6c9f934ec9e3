"""
``.pcppass``: stored PCP passwords, read the way pgpool-II 4.3's libpcp reads them.

The file is ``$PCPPASSFILE``, or ``.pcppass`` in the home directory of the effective user.
Each line is ``hostname:port:username:password``. A field that is exactly ``*`` matches
anything, and ``\\`` escapes ``:`` and ``\\``. The first matching line wins.

A connection through the default Unix socket directory (no host, or ``/tmp``) matches the
hostname ``localhost``; another socket directory matches its own path.

The file is ignored, with a warning on the ``pcp.pcppass`` logger, when it is not a regular file
or when group or others have any permission on it.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat

from pcp.protocol import DEFAULT_SOCKET_DIR

log = logging.getLogger(__name__)

PCPPASSFILE_ENV = "PCPPASSFILE"
PCPPASSFILE_NAME = ".pcppass"


def pcppass_path() -> str | None:
    """$PCPPASSFILE, else ~/.pcppass of the effective user (libpcp's getPoolPassFilename)."""
    path = os.environ.get(PCPPASSFILE_ENV)
    if path is not None:
        return path
    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None
    return os.path.join(home, PCPPASSFILE_NAME)


def _split_fields(line: str) -> list[tuple[str, bool]]:
    """The fields of a line, unescaped, each with "is it the bare * wildcard"."""
    fields: list[tuple[str, bool]] = []
    text: list[str] = []
    raw: list[str] = []
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line):
            i += 1
            text.append(line[i])
            raw.append("\\" + line[i])
        elif char == ":":
            fields.append(("".join(text), "".join(raw) == "*"))
            text, raw = [], []
        else:
            text.append(char)
            raw.append(char)
        i += 1
    fields.append(("".join(text), "".join(raw) == "*"))
    return fields


def match_line(line: str, hostname: str, port: str, username: str) -> str | None:
    """The password of ``line`` if its first three fields match, else None."""
    fields = _split_fields(line)
    if len(fields) < 4:
        return None
    for (text, wildcard), wanted in zip(fields, (hostname, port, username)):
        if not wildcard and text != wanted:
            return None
    return fields[3][0]


def _usable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        log.warning('password file "%s" is not a plain file', path)
        return False
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            'password file "%s" has group or world access; permissions should be u=rw (0600) or less', path
        )
        return False
    return True


def lookup_password(host: str | None, port: int, username: str, path: str | None = None) -> str | None:
    """The stored password for a connection, or None (no file, unsafe file, no matching line).

    ``host`` is what the user gave: None or "" for the default Unix socket, a directory for a
    Unix socket elsewhere, else a host name. ``path`` defaults to ``pcppass_path()``.
    """
    if not username:
        return None
    hostname = "localhost" if not host or host == DEFAULT_SOCKET_DIR else host
    path = path if path is not None else pcppass_path()
    if path is None or not _usable(path):
        return None
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                password = match_line(line.removesuffix("\n"), hostname, str(port), username)
                if password is not None:
                    return password
    except OSError:
        return None
    return None
