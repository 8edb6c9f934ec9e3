"""
pcp.conf: the PCP server's accounts, one ``username:md5hex(password)`` per line.

pgpool-II's format: lines that are empty or start with ``#`` are skipped, the first line of a
user wins, and user names and hashes are at most 128 characters (MAX_USER_PASSWD_LEN).
Like pgpool-II, a line that cannot be used is skipped and the other users can log in; unlike
it, each such line is reported with its file:line and why (a value that is not an md5 hash
could never match, and the fix, ``pg_md5 PASSWORD``, is easy to name).
"""

from __future__ import annotations

import re

from pcp.protocol import MAX_USER_PASSWD_LEN
from pgpool_py.errors import ConfigError

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def parse_pcp_conf(text: str, path: str) -> tuple[dict[str, str], list[str]]:
    """User name -> md5 hex of the password, and a ``path:line: why`` for each line skipped."""
    users: dict[str, str] = {}
    skipped: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, md5 = line.partition(":")
        md5 = md5.strip()
        if not sep or not user:
            skipped.append(f'{where}: invalid pcp.conf line: expected "username:md5 hash of the password"')
        elif len(user) > MAX_USER_PASSWD_LEN:
            skipped.append(f"{where}: user name is longer than {MAX_USER_PASSWD_LEN} characters")
        elif not _MD5_HEX.fullmatch(md5):
            skipped.append(
                f'{where}: the password of user "{user}" is not an md5 hash '
                "(32 lower-case hex digits; make one with: pg_md5 PASSWORD)"
            )
        else:
            users.setdefault(user, md5)
    return users, skipped


def load_pcp_conf(path: str) -> tuple[dict[str, str], list[str]]:
    """Read and parse ``path``; an unreadable file is a ConfigError."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f'could not read PCP password file "{path}": {exc.strerror}') from exc
    return parse_pcp_conf(text, path)
