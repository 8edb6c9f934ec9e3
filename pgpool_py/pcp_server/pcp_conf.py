"""
pcp.conf: the PCP server's accounts, one ``username:md5hex(password)`` per line.

pgpool-II's format: lines that are empty or start with ``#`` are skipped, the first line of a
user wins, and user names and hashes are at most 128 characters (MAX_USER_PASSWD_LEN).
Unlike pgpool-II, which reads the file at every login and silently skips what it cannot use,
a bad line is reported with its file:line, and a value that is not an md5 hash is refused:
it could never match, and the fix (``pg_md5 PASSWORD``) is easy to name.
"""

from __future__ import annotations

import re

from pcp.protocol import MAX_USER_PASSWD_LEN
from pgpool_py.errors import ConfigError

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def parse_pcp_conf(text: str, path: str) -> dict[str, str]:
    """User name -> md5 hex of the password. Raises ConfigError naming ``path:line``."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, md5 = line.partition(":")
        md5 = md5.strip()
        if not sep or not user:
            raise ConfigError(f'{where}: invalid pcp.conf line: expected "username:md5 hash of the password"')
        if len(user) > MAX_USER_PASSWD_LEN:
            raise ConfigError(f"{where}: user name is longer than {MAX_USER_PASSWD_LEN} characters")
        if not _MD5_HEX.fullmatch(md5):
            raise ConfigError(
                f'{where}: the password of user "{user}" is not an md5 hash '
                "(32 lower-case hex digits; make one with: pg_md5 PASSWORD)"
            )
        users.setdefault(user, md5)
    return users


def load_pcp_conf(path: str) -> dict[str, str]:
    """Read and parse ``path``; an unreadable file is a ConfigError too."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f'could not read PCP password file "{path}": {exc.strerror}') from exc
    return parse_pcp_conf(text, path)
