"""
Authentication hardening end to end: authentication_timeout cuts off stalling clients, the
pool_hba.conf methods, AES pool_passwd entries from pgpool-II's pg_enc, the helper commands,
allow_clear_text_frontend_auth, failed logins that say no more than PostgreSQL, and secrets that
never reach the log or SHOW.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgpool_py.child.passwd import aes_encrypt_password
from pgpool_py.cluster import PgNode
from pgpool_py.tools.passwords import enc_main
from tests.fix_pg import _clusters

PASSWORD = "Hardened-p4ss"
RAW = {"backend_clustering_mode": "raw"}
READY_LINE = "host test postgres 127.0.0.1/32 trust\n"
PG_HBA = """\
local all all trust
host all scramuser 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""
AUTH_TIMEOUT = 1


@pytest.fixture(scope="module")
def node() -> Iterator[PgNode]:
    with _clusters() as build:
        (pg,) = build(num_nodes=1, mode="native")
        pg.psql(f"SET password_encryption = 'scram-sha-256'; CREATE ROLE scramuser LOGIN PASSWORD '{PASSWORD}';"
                "CREATE ROLE trustuser LOGIN")
        with open(os.path.join(pg.datadir, "pg_hba.conf"), "w") as f:
            f.write(PG_HBA)
        pg.psql("SELECT pg_reload_conf()")
        yield pg


def _connect(server: Any, user: str, password: str | None = None, dbname: str = "test") -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=server.port, user=user, dbname=dbname, password=password,
                           connect_timeout=5, autocommit=True, sslmode="disable")


def _startup(user: str, database: str = "test") -> bytes:
    body = struct.pack("!i", 196608) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!i", len(body) + 4) + body


def _first_reply(port: int, user: str) -> tuple[bytes, int, socket.socket]:
    """Send a startup packet; return the first message's type, its Authentication code, the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(_startup(user))
    header = sock.recv(9, socket.MSG_WAITALL)
    code = struct.unpack("!i", header[5:9])[0] if header[:1] == b"R" else -1
    return header[:1], code, sock


def _seconds_until_closed(sock: socket.socket) -> float:
    start = time.monotonic()
    while sock.recv(4096):
        pass
    return time.monotonic() - start


# ---------------------------------------------------------------- authentication_timeout


@pytest.mark.parametrize("relayed", [False, True])
def test_authentication_timeout_cuts_off_stalling_clients(pgpool_factory: Any, node: PgNode, tmp_path: Path,
                                                          relayed: bool) -> None:
    extra: dict[str, Any] = {**RAW, "authentication_timeout": AUTH_TIMEOUT, "num_init_children": 1}
    if relayed:
        # No pool_hba.conf, no pool_passwd: the backend's SASL request is relayed to the client.
        server = pgpool_factory([node], extra=extra)
    else:
        passwd = tmp_path / "pool_passwd"
        passwd.write_text(f"scramuser:TEXT{PASSWORD}\n")
        server = pgpool_factory([node], extra={**extra, "enable_pool_hba": True, "pool_passwd": str(passwd)},
                                hba_text=READY_LINE + "host all all 127.0.0.1/32 scram-sha-256\n")
    # Stalling mid-authentication: SASL request received, never answered.
    typ, code, sock = _first_reply(server.port, "scramuser")
    assert (typ, code) == (b"R", 10)
    with sock:
        waited = _seconds_until_closed(sock)
    # Stalling before the startup packet.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent:
        silent_waited = _seconds_until_closed(silent)
    print(f"stalled clients cut off after {waited:.2f}s and {silent_waited:.2f}s (authentication_timeout = 1)")
    assert AUTH_TIMEOUT * 0.8 < waited < AUTH_TIMEOUT + 3
    assert AUTH_TIMEOUT * 0.8 < silent_waited < AUTH_TIMEOUT + 3
    # The only child is free again, and the backend was not taken for failed.
    with _connect(server, "scramuser", PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)


# ---------------------------------------------------------------- pool_hba methods


def test_trust_and_reject(pgpool_factory: Any, node: PgNode) -> None:
    hba = READY_LINE + "host all rejected 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n"
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True}, hba_text=hba)
    with _connect(server, "trustuser") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("trustuser",)
    with pytest.raises(psycopg.OperationalError,
                       match='pool_hba.conf rejects connection for host "127.0.0.1", user "rejected"'):
        _connect(server, "rejected")


def test_failed_login_says_no_more_than_postgresql(pgpool_factory: Any, node: PgNode, tmp_path: Path) -> None:
    passwd = tmp_path / "pool_passwd"
    passwd.write_text(f"scramuser:TEXT{PASSWORD}\n")
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True, "pool_passwd": str(passwd)},
                            hba_text=READY_LINE + "host all all 127.0.0.1/32 scram-sha-256\n")
    def server_says(port: int, user: str) -> str:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(host="127.0.0.1", port=port, user=user, dbname="test", password="wrong",
                            connect_timeout=5, sslmode="disable")
        return str(info.value).split("FATAL:", 1)[1].strip()

    # PostgreSQL's own words, nothing more (no DETAIL, no HINT), for a wrong password and for a
    # user pool_passwd does not know.
    assert server_says(server.port, "scramuser") == server_says(node.port, "scramuser")
    assert server_says(server.port, "nosuchuser") == 'password authentication failed for user "nosuchuser"'
    # The administrator learns why from the log.
    time.sleep(0.3)
    assert 'pool_passwd has no entry for user "nosuchuser"' in server.log_text()


def test_unchecked_clear_text_password_never_reuses_a_pooled_connection(pgpool_factory: Any, node: PgNode) -> None:
    # "password" without a pool_passwd entry: only the backend can check the password.
    hba = READY_LINE + "host all all 127.0.0.1/32 password\n"
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True, "num_init_children": 1, "max_pool": 1},
                            hba_text=hba)
    with _connect(server, "scramuser", PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "scramuser"'):
        _connect(server, "scramuser", "wrong")


def test_pool_hba_trust_does_not_open_a_cached_connection_to_unchecked_passwords(
        pgpool_factory: Any, node: PgNode, tmp_path: Path) -> None:
    # The slot was made for a client pool_hba trusted, and the backend's SCRAM was answered
    # from pool_passwd.  Once the entry is gone, a 'password' client can be checked only by
    # the backend: it must not get that slot (it did, with any password: CVE-2025-46801's kind).
    passwd = tmp_path / "pool_passwd"
    passwd.write_text(f"scramuser:TEXT{PASSWORD}\n")
    hba = READY_LINE + "local all all trust\nhost all all 127.0.0.1/32 password\n"
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True, "num_init_children": 1, "max_pool": 2,
                                           "pool_passwd": str(passwd)}, hba_text=hba)
    socket_dir = str(server.conf_path.parent / "run")
    with psycopg.connect(host=socket_dir, port=server.port, user="scramuser", dbname="test") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)
    passwd.write_text("")
    with open(server.conf_path, "a") as f:
        f.write("log_min_messages = 'warning'\n")  # a change the child shows once it has reloaded
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while server.psql("PGPOOL SHOW log_min_messages") != "warning" and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "scramuser"'):
        _connect(server, "scramuser", "wrong")
    with _connect(server, "scramuser", PASSWORD) as conn:  # the backend checks it, on a new connection
        assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)


@pytest.mark.parametrize("header", [b"Q\x30\x00\x00\x00", b"p\x30\x00\x00\x00"], ids=["query", "huge password"])
def test_a_client_logging_in_is_refused_on_a_message_header(pgpool_factory: Any, node: PgNode,
                                                            header: bytes) -> None:
    # Asked for its password, a client announces an 800 MB message.  Before, the child read
    # any message whole (a Query) before looking at its type, holding up to 1 GB; now the
    # header is enough, as in PostgreSQL.
    hba = READY_LINE + "host all all 127.0.0.1/32 password\n"
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True}, hba_text=hba)
    typ, code, sock = _first_reply(server.port, "scramuser")
    with sock:
        assert (typ, code) == (b"R", 3)  # AuthenticationCleartextPassword
        sock.settimeout(5)
        sock.sendall(header)
        reply = sock.recv(4096)
    assert reply[:1] == b"E" and b"28P01" not in reply, reply
    assert b"expected password response" in reply or b"invalid password packet length" in reply, reply


# ---------------------------------------------------------------- AES pool_passwd


def test_aes_pool_passwd_from_pg_enc(pgpool_factory: Any, node: PgNode, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    key = "the pool key"
    key_file = tmp_path / "pgpoolkey"
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    pg_enc = shutil.which("pg_enc") or "/usr/sbin/pg_enc"
    out = subprocess.run([pg_enc, "-k", str(key_file), PASSWORD], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    entry = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("pool_passwd string:"))
    # pgpool-py-enc writes the very same string.
    assert enc_main(["-k", str(key_file), PASSWORD]) == 0
    assert f"pool_passwd string: {entry}\n" in capsys.readouterr().out
    passwd = tmp_path / "pool_passwd"
    passwd.write_text(f"scramuser:{entry}\n")
    monkeypatch.setenv("PGPOOLKEYFILE", str(key_file))
    hba = READY_LINE + "host all all 127.0.0.1/32 scram-sha-256\n"
    server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True, "pool_passwd": str(passwd)},
                            hba_text=hba)
    # The backend asks for SCRAM too: only the decrypted password can answer it.
    with _connect(server, "scramuser", PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "scramuser"'):
        _connect(server, "scramuser", "wrong")
    # With the wrong key nobody gets in, and the log says why.
    monkeypatch.setenv("PGPOOLKEYFILE", str(tmp_path / "no-such-key"))
    locked = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True, "pool_passwd": str(passwd)},
                            hba_text=hba)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "scramuser"'):
        _connect(locked, "scramuser", PASSWORD)
    assert "could not decrypt the password" in locked.log_text()


def test_pool_key_file_from_the_command_line(pgpool_factory: Any, node: PgNode, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # pgpool-II's -k/--key-file names the key that decrypts AES entries of pool_passwd.
    key_file = tmp_path / "the-key"
    key_file.write_text("command line key\n")
    os.chmod(key_file, 0o600)
    passwd = tmp_path / "pool_passwd"
    passwd.write_text(f"scramuser:AES{aes_encrypt_password(PASSWORD, 'command line key')}\n")
    monkeypatch.delenv("PGPOOLKEYFILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpoolkey either
    hba = READY_LINE + "host all all 127.0.0.1/32 scram-sha-256\n"
    for option in (["-k", str(key_file)], [f"--key-file={key_file}"]):
        server = pgpool_factory([node], extra={**RAW, "enable_pool_hba": True, "pool_passwd": str(passwd)},
                                hba_text=hba, args=option)
        with _connect(server, "scramuser", PASSWORD) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)


# ---------------------------------------------------------------- allow_clear_text_frontend_auth


@pytest.mark.parametrize("allow", [True, False])
def test_allow_clear_text_frontend_auth(pgpool_factory: Any, node: PgNode, allow: bool) -> None:
    server = pgpool_factory([node], extra={**RAW, "allow_clear_text_frontend_auth": allow})
    typ, code, sock = _first_reply(server.port, "scramuser")
    sock.close()
    # No pool_passwd entry: ask the client for its password in clear, or relay the backend's SASL.
    assert (typ, code) == (b"R", 3 if allow else 10)
    with _connect(server, "scramuser", PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("scramuser",)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "scramuser"'):
        _connect(server, "scramuser", "wrong")


# ---------------------------------------------------------------- secrets


def test_secrets_never_in_log_or_show(pgpool_factory: Any, node: PgNode, tmp_path: Path) -> None:
    secrets = {
        "pool_passwd": "PoolPasswdSecret-1",
        "health_check_password": "HealthCheckSecret-2",
        "sr_check_password": "SrCheckSecret-3",
        "recovery_password": "RecoverySecret-4",
        "wd_authkey": "WdAuthkeySecret-5",
        "clear text login": "ClearTextSecret-6",
        "wrong clear text login": "WrongClearSecret-7",
    }
    passwd = tmp_path / "pool_passwd"
    passwd.write_text(f"scramuser:TEXT{PASSWORD}\nclearuser:TEXT{secrets['pool_passwd']}\n")
    hba = READY_LINE + "host all clearuser 127.0.0.1/32 password\nhost all all 127.0.0.1/32 scram-sha-256\n"
    extra = {**RAW, "enable_pool_hba": True, "pool_passwd": str(passwd), "log_min_messages": "debug5",
             "client_min_messages": "debug5",
             **{k: v for k, v in secrets.items() if k.endswith(("_password", "_authkey"))}}
    server = pgpool_factory([node], extra=extra, hba_text=hba)
    with _connect(server, "scramuser", PASSWORD) as conn:
        shown = [str(row) for sql in ("PGPOOL SHOW ALL", "SHOW POOL_STATUS", "SHOW POOL_POOLS")
                 for row in conn.execute(sql).fetchall()]
    # A clear-text password the client sends, right or wrong, is not logged either.
    for attempt in (secrets["clear text login"], secrets["wrong clear text login"], PASSWORD):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _connect(server, "clearuser", attempt)
    time.sleep(0.3)
    log = server.log_text()
    shown_text = "\n".join(shown)
    assert "health_check_password" in shown_text  # the parameters are there, masked
    leaks = [name for name, value in [*secrets.items(), ("scramuser's password", PASSWORD)]
             if value in log or value in shown_text]
    print(f"{len(log.splitlines())} debug5 log lines and {len(shown)} SHOW rows checked for {len(secrets) + 1} secrets")
    assert leaks == []
