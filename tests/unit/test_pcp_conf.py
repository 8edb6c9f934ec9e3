"""pcp.conf parsing: pgpool-II's format, and a file:line error for what could never log in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pgpool_py.errors import ConfigError
from pgpool_py.pcp_server.pcp_conf import load_pcp_conf, parse_pcp_conf

MD5_A = hashlib.md5(b"secret").hexdigest()
MD5_B = hashlib.md5(b"other").hexdigest()


def test_users_comments_and_first_line_wins() -> None:
    text = f"# USERID:MD5PASSWD\n\npostgres:{MD5_A}\nadmin:{MD5_B}\r\npostgres:{MD5_B}\n"
    assert parse_pcp_conf(text, "pcp.conf") == ({"postgres": MD5_A, "admin": MD5_B}, [])


def test_empty_file_has_no_users() -> None:
    assert parse_pcp_conf("# only comments\n  # indented too\n", "pcp.conf") == ({}, [])


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("postgres", "expected \"username:md5 hash of the password\""),
        (f":{MD5_A}", "expected \"username:md5 hash of the password\""),
        ("postgres:secret", 'the password of user "postgres" is not an md5 hash'),
        (f"postgres:{MD5_A.upper()}", "is not an md5 hash"),
        (f"{'u' * 129}:{MD5_A}", "user name is longer than 128 characters"),
    ],
)
def test_bad_line_is_skipped_naming_file_and_line(line: str, why: str) -> None:
    # pgpool-II skips it silently; refusing every PCP login for one bad line locked out all.
    users, skipped = parse_pcp_conf(f"# header\nok:{MD5_A}\n{line}\nlast:{MD5_B}\n", "/etc/pcp.conf")
    assert users == {"ok": MD5_A, "last": MD5_B}
    assert len(skipped) == 1 and skipped[0].startswith("/etc/pcp.conf:3: ") and why in skipped[0]


def test_load_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pcp.conf"
    path.write_text(f"postgres:{MD5_A}\n")
    assert load_pcp_conf(str(path)) == ({"postgres": MD5_A}, [])


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match=f'could not read PCP password file "{path}": No such file'):
        load_pcp_conf(str(path))
