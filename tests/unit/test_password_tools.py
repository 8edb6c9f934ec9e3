"""pgpool-py-md5 / pgpool-py-enc, against outputs of pgpool-II 4.3.5's pg_md5 and pg_enc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgpool_py.child.passwd import aes_decrypt_password, load_pool_passwd, pg_md5
from pgpool_py.tools.passwords import enc_main, md5_main

# `pg_enc -K mykey secret` and `pg_md5 secret` print these.
PG_ENC_SECRET_MYKEY = "V7IMV7YNworqqZU1Z46Wgw=="
PG_MD5_SECRET = "5ebe2294ecd0e0f08eab7690d2a6ee69"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "pgpool.conf"
    path.write_text("backend_hostname0 = 'localhost'\nbackend_port0 = 5432\npool_passwd = 'pool_passwd'\n")
    return path


def test_md5_prints_the_bare_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert md5_main(["secret"]) == 0
    assert capsys.readouterr().out == PG_MD5_SECRET + "\n"
    assert md5_main(["-u", "bob", "secret"]) == 0  # -u matters only with -m, as in pg_md5
    assert capsys.readouterr().out == PG_MD5_SECRET + "\n"


def test_md5_writes_and_replaces_pool_passwd_entries(conf: Path) -> None:
    passwd = conf.parent / "pool_passwd"
    passwd.write_text("alice:TEXTx\n")
    assert md5_main(["-m", "-u", "bob", "-f", str(conf), "secret"]) == 0
    assert md5_main(["-m", "-u", "bob", "-f", str(conf), "other"]) == 0
    assert passwd.read_text() == f"alice:TEXTx\nbob:{pg_md5('other', 'bob')}\n"
    assert load_pool_passwd(str(passwd))["bob"].md5_hash == pg_md5("other", "bob")


def test_enc_matches_pg_enc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("mykey\n")
    os.chmod(key_file, 0o600)
    assert enc_main(["-k", str(key_file), "secret"]) == 0
    assert capsys.readouterr().out == f"{PG_ENC_SECRET_MYKEY}\npool_passwd string: AES{PG_ENC_SECRET_MYKEY}\n"
    assert enc_main(["-K", "mykey", "secret"]) == 0
    assert PG_ENC_SECRET_MYKEY in capsys.readouterr().out


def test_enc_input_file_into_pool_passwd(conf: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    pairs.write_text("u1:p1\nu:2:pass:with:colons\n")
    assert enc_main(["-K", "k3y", "-m", "-i", str(pairs), "-f", str(conf)]) == 0
    entries = load_pool_passwd(str(conf.parent / "pool_passwd"), "k3y")
    assert entries["u1"].plaintext() == "p1"
    assert entries["u"].plaintext() == "2:pass:with:colons"
    assert aes_decrypt_password(entries["u1"].value, "k3y") == "p1"
    assert (conf.parent / "pool_passwd").stat().st_mode & 0o077 == 0


def test_enc_without_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PGPOOLKEYFILE", str(tmp_path / "missing"))
    assert enc_main(["secret"]) == 1
    assert "could not read the encryption key" in capsys.readouterr().err
