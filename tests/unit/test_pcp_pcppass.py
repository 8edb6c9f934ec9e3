"""``.pcppass`` parsing, matching and the permission check."""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

import pytest

from pcp.pcppass import lookup_password, match_line, pcppass_path


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("db1:9898:admin:secret", "secret"),
        ("*:9898:admin:secret", "secret"),
        ("*:*:*:secret", "secret"),
        ("db1:9898:admin:", ""),
        (r"db1:9898:admin:se\:cr\\et", "se:cr\\et"),
        # The password ends at the next unescaped colon.
        ("db1:9898:admin:secret:more", "secret"),
        ("db2:9898:admin:secret", None),
        ("db1:9899:admin:secret", None),
        ("db1:9898:root:secret", None),
        ("db1:9898:admin", None),
        # Only a bare * is a wildcard; an escaped one is the character.
        (r"\*:9898:admin:secret", None),
        ("db*:9898:admin:secret", None),
    ],
)
def test_match_line(line: str, expected: str | None) -> None:
    assert match_line(line, "db1", "9898", "admin") == expected


def test_escaped_colon_in_host() -> None:
    assert match_line(r"fe80\:\:1:9898:admin:pw", "fe80::1", "9898", "admin") == "pw"


@pytest.fixture
def passfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "pcppass"
    path.write_text(
        "# a comment line matches nothing\n"
        "localhost:9898:admin:local-pw\n"
        "/var/run/pgpool:9898:admin:dir-pw\n"
        "db1:*:admin:first\n"
        "db1:*:admin:second\n"
    )
    path.chmod(0o600)
    monkeypatch.setenv("PCPPASSFILE", str(path))
    return path


def test_lookup(passfile: Path) -> None:
    assert pcppass_path() == str(passfile)
    assert lookup_password("db1", 9898, "admin") == "first"
    assert lookup_password("db2", 9898, "admin") is None
    assert lookup_password("db1", 9898, "") is None


def test_default_socket_matches_localhost(passfile: Path) -> None:
    assert lookup_password(None, 9898, "admin") == "local-pw"
    assert lookup_password("", 9898, "admin") == "local-pw"
    assert lookup_password("/tmp", 9898, "admin") == "local-pw"
    assert lookup_password("/var/run/pgpool", 9898, "admin") == "dir-pw"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o610, 0o601])
def test_group_or_world_access_is_refused(passfile: Path, mode: int, caplog: pytest.LogCaptureFixture) -> None:
    passfile.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="pcp.pcppass"):
        assert lookup_password("db1", 9898, "admin") is None
    assert caplog.messages == [
        f'password file "{passfile}" has group or world access; permissions should be u=rw (0600) or less'
    ]


def test_not_a_plain_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("PCPPASSFILE", str(directory))
    with caplog.at_level(logging.WARNING, logger="pcp.pcppass"):
        assert lookup_password("db1", 9898, "admin") is None
    assert caplog.messages == [f'password file "{directory}" is not a plain file']


def test_missing_file_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PCPPASSFILE", str(tmp_path / "absent"))
    assert lookup_password("db1", 9898, "admin") is None
    assert not caplog.records


def test_home_directory_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PCPPASSFILE", raising=False)
    assert pcppass_path() == os.path.join(pwd.getpwuid(os.geteuid()).pw_dir, ".pcppass")
