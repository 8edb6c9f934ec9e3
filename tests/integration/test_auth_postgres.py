"""
The authentication exchanges against the real thing: BackendAuth logging in to PostgreSQL,
and libpq (psycopg) logging in to our FrontendAuth server side.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest

from pgpool_py.child.auth import BackendAuth, FrontendAuth, make_frontend_auth
from pgpool_py.child.passwd import PasswordEntry, classify_password, pg_md5
from pgpool_py.cluster import PgNode
from pgpool_py.errors import AuthError, PgError
from pgpool_py.protocol import messages as m
from tests.fix_pg import _clusters

PASSWORD = "pässwörd 1"

PG_HBA = """\
local all all trust
host all md5user 127.0.0.1/32 md5
host all scramuser 127.0.0.1/32 scram-sha-256
host all pwuser 127.0.0.1/32 password
host all all 127.0.0.1/32 trust
"""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return buf


def _read_message(sock: socket.socket) -> tuple[int, bytes]:
    header = _recv_exact(sock, 5)
    total = m.message_length(header, 0)
    return header[0], _recv_exact(sock, total - 5)


@pytest.fixture(scope="module")
def node() -> Iterator[PgNode]:
    with _clusters() as build:
        (pg,) = build(num_nodes=1, mode="native")
        pg.psql(
            "SET password_encryption = 'md5';"
            f"CREATE ROLE md5user LOGIN PASSWORD '{PASSWORD}';"
            "SET password_encryption = 'scram-sha-256';"
            f"CREATE ROLE scramuser LOGIN PASSWORD '{PASSWORD}';"
            f"CREATE ROLE pwuser LOGIN PASSWORD '{PASSWORD}';"
        )
        with open(os.path.join(pg.datadir, "pg_hba.conf"), "w") as f:
            f.write(PG_HBA)
        pg.psql("SELECT pg_reload_conf()")
        yield pg


def _login(node: PgNode, user: str, auth: BackendAuth) -> list[int]:
    """Startup + authentication over a raw socket; returns the auth request codes seen."""
    codes: list[int] = []
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(m.startup_message(m.PROTOCOL_3_0, {"user": user, "database": "postgres"}))
        while True:
            typ, body = _read_message(sock)
            if typ == ord("R"):
                req = m.parse_authentication(body)
                codes.append(req.code)
                reply = auth.feed(req.code, req.data)
                if reply:
                    sock.sendall(reply)
            elif typ == ord("E"):
                fields = m.parse_error_fields(body)
                raise PgError(fields["M"], sqlstate=fields["C"])
            elif typ == ord("Z"):
                sock.sendall(m.TERMINATE)
                return codes


def test_md5_with_password_and_with_hash_only(node: PgNode) -> None:
    assert _login(node, "md5user", BackendAuth("md5user", PASSWORD)) == [m.AUTH_MD5, m.AUTH_OK]
    stored = node.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5user'")
    assert stored == pg_md5(PASSWORD, "md5user")
    assert _login(node, "md5user", BackendAuth("md5user", None, stored)) == [m.AUTH_MD5, m.AUTH_OK]


def test_scram(node: PgNode) -> None:
    codes = _login(node, "scramuser", BackendAuth("scramuser", PASSWORD))
    assert codes == [m.AUTH_SASL, m.AUTH_SASL_CONTINUE, m.AUTH_SASL_FINAL, m.AUTH_OK]


def test_cleartext(node: PgNode) -> None:
    assert _login(node, "pwuser", BackendAuth("pwuser", PASSWORD)) == [m.AUTH_CLEARTEXT, m.AUTH_OK]


@pytest.mark.parametrize("user", ["md5user", "scramuser", "pwuser"])
def test_wrong_password_is_refused_by_postgresql(node: PgNode, user: str) -> None:
    with pytest.raises(PgError) as info:
        _login(node, user, BackendAuth(user, "wrong"))
    assert info.value.sqlstate == "28P01"
    assert info.value.message == f'password authentication failed for user "{user}"'


def test_scram_with_md5_hash_only_is_explained(node: PgNode) -> None:
    with pytest.raises(AuthError, match="cannot authenticate to backend node with scram-sha-256"):
        _login(node, "scramuser", BackendAuth("scramuser", None, pg_md5(PASSWORD, "scramuser")))


# ---------------------------------------------------------------- libpq against our server side


def _serve_one(listener: socket.socket, auth: FrontendAuth, errors: list[BaseException]) -> None:
    """Accept one client, authenticate it with ``auth``, then say ready and wait for Terminate."""
    conn, _ = listener.accept()
    with conn:
        try:
            while True:  # libpq may ask for SSL or GSS encryption first: say no
                length = m.startup_length(_recv_exact(conn, 4))
                startup = m.parse_startup_payload(_recv_exact(conn, length))
                if isinstance(startup, m.StartupMessage):
                    break
                conn.sendall(b"N")
            out = auth.first()
            done = not out
            if out:
                conn.sendall(out)
            while not done:
                out, done = auth.feed(*_read_message(conn))
                if out:
                    conn.sendall(out)
            conn.sendall(m.AUTHENTICATION_OK + m.parameter_status("server_version", "15.0") + m.ready_for_query())
            _read_message(conn)
        except PgError as exc:
            errors.append(exc)
            conn.sendall(m.error_response(exc.message, exc.sqlstate, severity="FATAL"))


def _libpq_login(auth: FrontendAuth, password: str) -> list[BaseException]:
    errors: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = threading.Thread(target=_serve_one, args=(listener, auth, errors))
        server.start()
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="alice", password=password, dbname="d", connect_timeout=10
            ):
                pass
        except psycopg.OperationalError as exc:
            errors.append(exc)
        finally:
            server.join(10)
    return errors


@pytest.mark.parametrize(
    ("method", "entry"),
    [
        ("md5", PasswordEntry("text", PASSWORD)),
        ("md5", classify_password(pg_md5(PASSWORD, "alice"))),
        ("scram-sha-256", PasswordEntry("text", PASSWORD)),
        ("password", PasswordEntry("text", PASSWORD)),
    ],
)
def test_libpq_logs_in_to_our_server(method: str, entry: PasswordEntry) -> None:
    auth = make_frontend_auth(method, "alice", entry)
    assert _libpq_login(auth, PASSWORD) == []
    assert auth.password == entry.plaintext()  # the clear text is known unless only a hash is stored


def test_libpq_logs_in_with_a_postgresql_scram_verifier(node: PgNode) -> None:
    stored = node.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'scramuser'")
    entry = classify_password(stored)
    assert entry.kind == "scram"
    assert _libpq_login(make_frontend_auth("scram-sha-256", "alice", entry), PASSWORD) == []


@pytest.mark.parametrize("method", ["md5", "scram-sha-256", "password"])
def test_libpq_wrong_password(method: str) -> None:
    errors = _libpq_login(make_frontend_auth(method, "alice", PasswordEntry("text", PASSWORD)), "wrong")
    assert len(errors) == 2
    assert 'password authentication failed for user "alice"' in str(errors[1])
