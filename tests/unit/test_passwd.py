from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pgpool_py.child.passwd import (
    PasswordEntry,
    ScramSecret,
    aes_decrypt_password,
    classify_password,
    load_pool_passwd,
    pg_md5,
    read_pool_key,
)
from pgpool_py.errors import ConfigError

# Made with pgpool-II 4.3.5's own tool: `pg_enc -K secretkey <password>`.
PG_ENC_KEY = "secretkey"
PG_ENC_FOO = "sbPRgNtGiwnkzYmhYORmUw=="
PG_ENC_LONG = "BYX97YXrduIDnsXMvAaRTvIXNL+U1dx4/PZ/BR26McOv3rTGxSbn7rZh+DTgjqom"  # password-longer-than-sixteen-bytes
# `pg_enc -K 'k3y with space' '日本語パスワード'`
PG_ENC_UNICODE = "Ngnfr1wVeorl+6Z1evixC+O6UOmgAZSRBZwTALj3gIs="

# The verifier for password "pencil" with RFC 7677's example salt and 4096 iterations.
RFC7677_VERIFIER = (
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
)


def test_pg_md5_matches_postgresql() -> None:
    # pgpool-II's `pg_md5 secretalice`, i.e. md5hex(password + user)
    assert pg_md5("secret", "alice") == "md54a0a68b43b6cd5cf266fa02f196e2371"


@pytest.mark.parametrize(
    ("stored", "kind", "value", "plain"),
    [
        ("md5" + "a" * 32, "md5", "md5" + "a" * 32, None),
        ("TEXTsecret", "text", "secret", "secret"),
        ("secret", "text", "secret", "secret"),  # no prefix: plain text, as pgpool-II
        ("md5short", "text", "md5short", "md5short"),  # "md5" of the wrong length is plain too
        (RFC7677_VERIFIER, "scram", RFC7677_VERIFIER, None),
    ],
)
def test_classify(stored: str, kind: str, value: str, plain: str | None) -> None:
    entry = classify_password(stored)
    assert (entry.kind, entry.value, entry.plaintext()) == (kind, value, plain)


def test_md5_hash_property() -> None:
    assert classify_password(pg_md5("pw", "u")).md5_hash == pg_md5("pw", "u")
    assert classify_password("TEXTpw").md5_hash is None


def test_aes_decrypts_pg_enc_output() -> None:
    assert aes_decrypt_password(PG_ENC_FOO, PG_ENC_KEY) == "foo"
    assert aes_decrypt_password(PG_ENC_LONG, PG_ENC_KEY) == "password-longer-than-sixteen-bytes"
    assert aes_decrypt_password(PG_ENC_UNICODE, "k3y with space") == "日本語パスワード"


def test_aes_wrong_key_or_garbage_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="wrong pool key"):
        aes_decrypt_password(PG_ENC_LONG, "not the key")
    with pytest.raises(ValueError, match="base64"):
        aes_decrypt_password("!!!", PG_ENC_KEY)
    with pytest.raises(ValueError, match="length"):
        aes_decrypt_password("YWJj", PG_ENC_KEY)


def test_aes_entry_without_key_says_why() -> None:
    entry = classify_password("AES" + PG_ENC_FOO)
    assert entry.kind == "aes" and entry.plaintext() is None
    assert entry.problem is not None and "pgpoolkey" in entry.problem
    assert classify_password("AES" + PG_ENC_FOO, PG_ENC_KEY).plaintext() == "foo"


def test_load_pool_passwd(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pool_passwd"
    path.write_text(
        "\n".join(
            [
                f"alice:{pg_md5('secret', 'alice')}",
                "bob:TEXTbob pw",
                f"carol:AES{PG_ENC_FOO}",
                "dave:plain",
                "we\\:ird:pa\\:ss",  # backslash escapes ':'
                "",
                "nopassword:",
                "garbage line",
                f"erin:{RFC7677_VERIFIER}",
                "alice:TEXTsecond entry ignored",
                "mapped:TEXTpw:backend_user:TEXTbackend_pw",
            ]
        )
        + "\n"
    )
    with caplog.at_level(logging.WARNING):
        entries = load_pool_passwd(str(path), PG_ENC_KEY)
    assert entries["alice"] == PasswordEntry("md5", pg_md5("secret", "alice"))
    assert entries["bob"].plaintext() == "bob pw"
    assert entries["carol"].plaintext() == "foo"
    assert entries["dave"] == PasswordEntry("text", "plain")
    assert entries["we:ird"].plaintext() == "pa:ss"
    assert entries["erin"].kind == "scram"
    assert entries["mapped"].plaintext() == "pw"
    assert "nopassword" not in entries and "garbage line" not in entries
    assert f"{path}:8" in caplog.text  # the garbage line is reported with file:line
    assert "user mapping" in caplog.text


def test_missing_pool_passwd_is_empty(tmp_path: Path) -> None:
    assert load_pool_passwd(str(tmp_path / "absent")) == {}


def test_invalid_scram_verifier_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pool_passwd"
    path.write_text("a:TEXTx\nb:SCRAM-SHA-256$4096:bm90$bad\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: invalid SCRAM verifier"):
        load_pool_passwd(str(path))


def test_scram_secret_parse_and_check() -> None:
    secret = ScramSecret.parse(RFC7677_VERIFIER)
    assert secret is not None and secret.iterations == 4096
    assert secret.matches_password("pencil")
    assert not secret.matches_password("pencil2")
    fresh = ScramSecret.from_password("pencil")
    assert fresh.matches_password("pencil") and fresh.salt != secret.salt
    for bad in ["SCRAM-SHA-256$x:abc$def:ghi", "SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==", "TEXTx"]:
        assert ScramSecret.parse(bad) is None


def test_read_pool_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "key"
    key.write_text("secretkey\nsecond line\n")
    os.chmod(key, 0o600)
    assert read_pool_key(str(key)) == "secretkey"
    monkeypatch.setenv("PGPOOLKEYFILE", str(key))
    assert read_pool_key() == "secretkey"
    os.chmod(key, 0o644)
    with caplog.at_level(logging.WARNING):
        assert read_pool_key() == "secretkey"
    assert "group or world access" in caplog.text
    monkeypatch.setenv("PGPOOLKEYFILE", str(tmp_path / "absent"))
    assert read_pool_key() is None
