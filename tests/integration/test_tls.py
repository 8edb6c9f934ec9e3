"""
TLS end to end: clients with sslmode=require and verify-full, hostssl/hostnossl lines, cert
authentication, TLS to a backend that only accepts it, and a certificate swapped by a reload.
Large replies check that no decrypted bytes are left waiting in OpenSSL while the relay polls.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgpool_py.cluster import SERVER_USER, PgNode
from pgpool_py.config.loader import Config, load_config
from pgpool_py.health import probe
from pgpool_py.protocol import messages as m
from pgpool_py.tls import libpq_params
from tests.tls_certs import Certs, KeyPair, make_ca

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
RAW = {"backend_clustering_mode": "raw"}
BIG = 3_000_000  # bytes in one DataRow: many TLS records


def _ssl_conf(pair: KeyPair, certs: Certs | None = None) -> dict[str, str | int | bool]:
    conf: dict[str, str | int | bool] = {"ssl": True, "ssl_cert": str(pair.cert), "ssl_key": str(pair.key)}
    if certs is not None:
        conf["ssl_ca_cert"] = str(certs.ca)
    return conf


def _exercise(conn: psycopg.Connection[Any]) -> None:
    """Replies far larger than a TLS record, by simple and extended protocol."""
    (text,) = conn.execute("SELECT repeat('x', %s)", (BIG,)).fetchone()  # type: ignore[misc]
    assert len(text) == BIG
    rows = conn.execute("SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g").fetchall()
    assert len(rows) == 20000 and rows[-1][0] == 20000
    big_arg = "z" * 200_000
    assert conn.execute("SELECT length(%s::text)", (big_arg,)).fetchone() == (len(big_arg),)


@pytest.mark.parametrize("mode", ["raw", "streaming"])
def test_sslmode_require_and_verify_full(pgpool_factory: Any, certs: Certs, server_pair: KeyPair, mode: str) -> None:
    extra = {**_ssl_conf(server_pair), **(RAW if mode == "raw" else {})}
    server = pgpool_factory(extra=extra)
    with server.connect(sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
        _exercise(conn)
    with server.connect(sslmode="verify-full", sslrootcert=str(certs.ca)) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with server.connect(sslmode="disable") as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    print(f"{mode}: TLS sessions with {BIG}-byte rows, 20000-row results and a 200 kB argument relayed")


def test_ssl_off_answers_n(pgpool_factory: Any) -> None:
    server = pgpool_factory(extra=RAW)
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
        server.connect(sslmode="require")


def test_hostssl_and_hostnossl(pgpool_factory: Any, server_pair: KeyPair) -> None:
    hba = (
        "hostnossl postgres all 127.0.0.1/32 trust\n"
        "hostssl all all 127.0.0.1/32 trust\n"
    )
    server = pgpool_factory(extra={**RAW, **_ssl_conf(server_pair), "enable_pool_hba": True}, hba_text=hba)
    with server.connect(sslmode="require") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    expected = 'no pool_hba.conf entry for host "127.0.0.1", user "postgres", database "test", no encryption'
    with pytest.raises(psycopg.OperationalError, match=expected):
        server.connect(sslmode="disable")
    # hostnossl matches only clients without TLS.
    with server.connect(sslmode="disable", dbname="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cert_authentication(pgpool_factory: Any, certs: Certs, server_pair: KeyPair) -> None:
    good = certs.issue("client", SERVER_USER)
    other = certs.issue("other", "someone_else")
    hba = "hostssl postgres all 127.0.0.1/32 cert\nhost test all 127.0.0.1/32 trust\n"
    server = pgpool_factory(extra={**RAW, **_ssl_conf(server_pair, certs), "enable_pool_hba": True}, hba_text=hba)
    with server.connect(dbname="postgres", sslmode="require", sslcert=str(good.cert), sslkey=str(good.key)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (SERVER_USER,)
    with pytest.raises(psycopg.OperationalError, match="connection requires a valid client certificate"):
        server.connect(dbname="postgres", sslmode="require")
    with pytest.raises(psycopg.OperationalError, match=f'certificate authentication failed for user "{SERVER_USER}"'):
        server.connect(dbname="postgres", sslmode="require", sslcert=str(other.cert), sslkey=str(other.key))


def _backend_requiring_tls(node: PgNode, pair: KeyPair) -> None:
    for src, name in ((pair.cert, "server.crt"), (pair.key, "server.key")):
        dst = os.path.join(node.datadir, name)
        shutil.copy(src, dst)
        shutil.chown(dst, SERVER_USER, SERVER_USER)
        os.chmod(dst, 0o600)
    with open(os.path.join(node.datadir, "postgresql.conf"), "a") as f:
        f.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    with open(os.path.join(node.datadir, "pg_hba.conf"), "w") as f:
        f.write("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
    node.stop()
    node.start()


def test_tls_to_a_backend_that_requires_it(pgpool_factory: Any, pg_cluster_factory: Any, server_pair: KeyPair) -> None:
    (node,) = pg_cluster_factory(num_nodes=1, mode="native")
    _backend_requiring_tls(node, server_pair)
    server = pgpool_factory([node], extra={**RAW, **_ssl_conf(server_pair)})
    with server.connect(sslmode="disable") as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
        _exercise(conn)
    # Without ssl pgpool-py talks clear text, which this backend refuses.
    plain = pgpool_factory([node], extra={**RAW, "health_check_period": 0}, wait_ready=False)
    deadline = time.monotonic() + 10
    while True:
        try:
            plain.connect().close()
        except psycopg.OperationalError as exc:
            if "no encryption" in str(exc):
                break
            assert time.monotonic() < deadline, str(exc)
            time.sleep(0.2)
        else:
            pytest.fail("a backend with hostssl only accepted a clear-text connection")


def _first_error(server: Any, **kw: Any) -> str:
    """The error a client gets once the server takes connections (it is not ready otherwise)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            server.connect(**kw).close()
        except psycopg.OperationalError as exc:
            if "Connection refused" not in str(exc) or time.monotonic() > deadline:
                return str(exc)
            time.sleep(0.2)
        else:
            pytest.fail("the connection succeeded")


def test_ssl_ca_cert_verifies_backend_certificates(pgpool_factory: Any, pg_cluster_factory: Any, certs: Certs,
                                                   server_pair: KeyPair, tmp_path: Path) -> None:
    # As in pgpool-II, ssl_ca_cert also checks the backends' certificates (their chain, like
    # libpq's sslmode=verify-ca), on the relay's connections and on libpq's side connections.
    (node,) = pg_cluster_factory(num_nodes=1, mode="native")
    _backend_requiring_tls(node, server_pair)
    trusted = pgpool_factory([node], extra={**RAW, **_ssl_conf(server_pair, certs)})
    with trusted.connect(sslmode="disable") as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    target = probe.Target(node.host, node.port, SERVER_USER, "", "postgres",
                          (("sslmode", "verify-ca"), ("sslrootcert", str(certs.ca))))
    assert probe.query(target, "SELECT 1", 5) == [("1",)]

    other = make_ca(tmp_path / "other-ca")
    untrusted = pgpool_factory([node], extra={**RAW, **_ssl_conf(server_pair), "ssl_ca_cert": str(other.ca),
                                              "health_check_period": 0}, wait_ready=False)
    error = _first_error(untrusted, sslmode="disable")
    assert "SSL handshake with backend node 0 failed" in error and "certificate verify failed" in error, error
    with pytest.raises(probe.ProbeFailed, match="certificate verify failed"):
        probe.query(dataclasses.replace(target, tls=(("sslmode", "verify-ca"), ("sslrootcert", str(other.ca)))),
                    "SELECT 1", 5)


def _served_certificate(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der


def _der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_reload_swaps_certificate(pgpool_factory: Any, certs: Certs, server_pair: KeyPair, tmp_path: Path) -> None:
    live = KeyPair(tmp_path / "live.crt", tmp_path / "live.key")
    shutil.copy(server_pair.cert, live.cert)
    shutil.copy(server_pair.key, live.key)
    server = pgpool_factory(extra={**RAW, **_ssl_conf(live), "num_init_children": 2})
    assert _served_certificate(server.port) == _der(server_pair.cert)
    renewed = certs.issue("renewed", "localhost", server=True)
    shutil.copy(renewed.cert, live.cert)
    shutil.copy(renewed.key, live.key)
    server.signal(1)  # SIGHUP
    deadline = time.monotonic() + 10
    seen = 0
    # Every child must have rebuilt its context: several new-certificate answers in a row.
    while seen < 6:
        assert time.monotonic() < deadline, "the renewed certificate was not served after SIGHUP"
        seen = seen + 1 if _served_certificate(server.port) == _der(renewed.cert) else 0
        time.sleep(0.05)
    with server.connect(sslmode="verify-full", sslrootcert=str(certs.ca)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _read_until_closed(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass  # closed with our unread bytes still queued


def test_bad_or_stalled_handshake_ends_only_that_session(pgpool_factory: Any, server_pair: KeyPair) -> None:
    server = pgpool_factory(extra={**RAW, **_ssl_conf(server_pair), "num_init_children": 1,
                                   "authentication_timeout": 1})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        sock.sendall(b"this is no TLS ClientHello\r\n" * 20)
        _read_until_closed(sock)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        start = time.monotonic()
        _read_until_closed(sock)  # stalls in the handshake: cut off by authentication_timeout
        assert time.monotonic() - start < 4
    with server.connect(sslmode="require") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert "SSL handshake with the client failed" in server.log_text()


class _HandDrivenTls:
    """A TLS client over a plain socket, driven by hand so that it can stall anywhere: after
    the server's "S", or part-way through its ClientHello."""

    def __init__(self, sock: socket.socket) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock, self.incoming, self.outgoing = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing)
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.client_hello = self.outgoing.read()

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.incoming.write(data)

    def finish_handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._receive()
        self.sock.sendall(self.outgoing.read())

    def log_in(self) -> None:
        """A startup packet through the TLS session, then its replies up to ReadyForQuery."""
        self.tls.write(m.startup_message(m.PROTOCOL_3_0, {"user": SERVER_USER, "database": "test"}))
        self.sock.sendall(self.outgoing.read())
        replies = b""
        while not replies.endswith(b"Z\x00\x00\x00\x05I"):
            try:
                replies += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._receive()


def test_clients_that_stall_after_the_ssl_answer_do_not_tie_up_children(pgpool_factory: Any,
                                                                         server_pair: KeyPair) -> None:
    """
    With ssl = on the "S" is answered in the accept loop, and a client stays pending there
    until its ClientHello is all in: clients that stall after the "S" or part-way through
    their ClientHello hold neither of the two children (before, each held one until
    authentication_timeout).  Each is served once it goes on.
    """
    server = pgpool_factory(extra={**RAW, **_ssl_conf(server_pair), "num_init_children": 2,
                                   "authentication_timeout": 30})
    stalled: list[_HandDrivenTls] = []
    try:
        for i in range(6):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(SSL_REQUEST)
            assert sock.recv(1) == b"S"
            client = _HandDrivenTls(sock)
            if i % 2:
                sock.sendall(client.client_hello[:10])
            stalled.append(client)
        started = time.monotonic()
        with server.connect(sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use and conn.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - started < 3
        for i, client in enumerate(stalled[:2]):
            client.sock.sendall(client.client_hello[10:] if i % 2 else client.client_hello)
            client.finish_handshake()
            client.log_in()
    finally:
        for client in stalled:
            client.sock.close()
    with server.connect(sslmode="require") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def load_config_text(node: PgNode, text: str, directory: Path) -> Config:
    """A configuration with ``node`` and ``text``, as pgpool-py would load it."""
    path = directory / "pgpool.conf"
    path.write_text(f"backend_hostname0 = '{node.host}'\nbackend_port0 = {node.port}\n" + text)
    return load_config(str(path))


def _hashed_ca_dir(directory: Path, *cas: Path) -> Path:
    """A CA directory as OpenSSL reads it: each certificate under its subject hash (c_rehash)."""
    directory.mkdir()
    for ca in cas:
        subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca)],
                                      check=True, capture_output=True, text=True).stdout.strip()
        shutil.copy(ca, directory / f"{subject_hash}.0")
    return directory


def test_ssl_ca_cert_dir_alone_verifies_side_connections(pgpool_factory: Any, pg_cluster_factory: Any,
                                                        certs: Certs, server_pair: KeyPair, tmp_path: Path) -> None:
    # libpq takes no CA directory: side connections get a bundle of it in work_dir, holding
    # exactly what OpenSSL would read from the directory for the relay.
    (node,) = pg_cluster_factory(num_nodes=1, mode="native")
    _backend_requiring_tls(node, server_pair)
    other = make_ca(tmp_path / "other-ca")
    work_dir = tmp_path / "work"
    work_dir.mkdir()

    def side_connection(ca_dir: Path) -> list[tuple[str, ...]]:
        text = f"ssl = on\nssl_ca_cert_dir = '{ca_dir}'\nwork_dir = '{work_dir}'\n"
        tls = libpq_params(load_config_text(node, text, tmp_path))
        assert tls == {"sslmode": "verify-ca", "sslrootcert": str(work_dir / "pgpool_ca_bundle.pem")}
        return probe.query(probe.Target(node.host, node.port, SERVER_USER, "", "postgres", tuple(tls.items())),
                           "SELECT 1", 5)

    assert side_connection(_hashed_ca_dir(tmp_path / "trusted", other.ca, certs.ca)) == [("1",)]
    with pytest.raises(probe.ProbeFailed, match="certificate verify failed"):
        side_connection(_hashed_ca_dir(tmp_path / "untrusted", other.ca))
    # A certificate not under its hash is not read by OpenSSL, so it is not in the bundle either.
    unhashed = _hashed_ca_dir(tmp_path / "unhashed", other.ca)
    shutil.copy(certs.ca, unhashed / "ca.crt")
    with pytest.raises(probe.ProbeFailed, match="certificate verify failed"):
        side_connection(unhashed)

    server = pgpool_factory([node], extra={**RAW, **_ssl_conf(server_pair),
                                           "ssl_ca_cert_dir": str(tmp_path / "trusted")})
    with server.connect(sslmode="disable") as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


def test_ssl_ca_cert_with_a_backend_without_tls(pgpool_factory: Any, pg_cluster_factory: Any, certs: Certs,
                                                server_pair: KeyPair, tmp_path: Path) -> None:
    # ssl_ca_cert checks a backend's certificate when it speaks TLS; one that answers the
    # SSLRequest with N is reached in clear text, by the relay and by the side connections
    # alike.  Before, libpq's verify-ca failed every health check: the cluster failed over.
    (node,) = pg_cluster_factory(num_nodes=1, mode="native")  # no TLS on the backend
    tls = tuple(libpq_params(load_config_text(node, f"ssl = on\nssl_ca_cert = '{certs.ca}'\n", tmp_path)).items())
    target = probe.Target(node.host, node.port, SERVER_USER, "", "postgres", tls)
    assert probe.query(target, "SELECT 1", 5) == [("1",)]
    server = pgpool_factory([node], extra={**RAW, **_ssl_conf(server_pair, certs), "health_check_period": 1})
    with server.connect(sslmode="disable") as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with server.connect(sslmode="disable") as conn:
            (success, fail) = conn.execute("SHOW POOL_HEALTH_CHECK_STATS").fetchone()[7:9]
        if int(success) >= 2:
            break
        time.sleep(0.2)
    assert (int(success) >= 2, fail) == (True, "0")
