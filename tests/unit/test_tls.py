"""pgpool_py.tls over socketpairs: the server context, handshakes, client CN, draining reads."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from pgpool_py.config import load_config
from pgpool_py.errors import ConfigError, ProtocolError
from pgpool_py.tls import (
    TlsStream,
    backend_context,
    client_common_name,
    handshake,
    libpq_params,
    reader,
    server_context,
    writer,
)
from tests.tls_certs import Certs, KeyPair


def _config(tmp_path: Path, text: str) -> object:
    conf = tmp_path / "pgpool.conf"
    conf.write_text("backend_hostname0 = 'localhost'\nbackend_port0 = 5432\n" + text)
    return load_config(str(conf))


def _ctx(tmp_path: Path, pair: KeyPair, certs: Certs | None = None, more: str = "") -> ssl.SSLContext:
    text = f"ssl = on\nssl_cert = '{pair.cert}'\nssl_key = '{pair.key}'\n" + more
    if certs is not None:
        text += f"ssl_ca_cert = '{certs.ca}'\n"
    ctx = server_context(_config(tmp_path, text))  # type: ignore[arg-type]
    assert ctx is not None
    return ctx


def test_ssl_off_means_no_context(tmp_path: Path) -> None:
    assert server_context(_config(tmp_path, "ssl = off\n")) is None  # type: ignore[arg-type]


def test_unusable_configuration_is_a_config_error(tmp_path: Path, server_pair: KeyPair) -> None:
    with pytest.raises(ConfigError, match="needs ssl_cert and ssl_key"):
        server_context(_config(tmp_path, "ssl = on\n"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="could not load the SSL configuration"):
        server_context(_config(tmp_path, f"ssl = on\nssl_cert = '{server_pair.cert}'\nssl_key = 'missing.key'\n"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="could not load the SSL configuration"):
        _ctx(tmp_path, server_pair, more="ssl_ciphers = 'NO-SUCH-CIPHER'\n")


def test_relative_paths_are_relative_to_the_config_directory(tmp_path: Path, server_pair: KeyPair) -> None:
    (tmp_path / "s.crt").write_bytes(server_pair.cert.read_bytes())
    (tmp_path / "s.key").write_bytes(server_pair.key.read_bytes())
    assert server_context(_config(tmp_path, "ssl = on\nssl_cert = 's.crt'\nssl_key = 's.key'\n")) is not None  # type: ignore[arg-type]


def test_context_settings(tmp_path: Path, certs: Certs, server_pair: KeyPair) -> None:
    plain = _ctx(tmp_path, server_pair, more="ssl_prefer_server_ciphers = on\n")
    assert plain.verify_mode == ssl.CERT_NONE
    assert plain.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2
    assert _ctx(tmp_path, server_pair, certs).verify_mode == ssl.CERT_OPTIONAL


def _pair_over_tls(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    a, b = socket.socketpair()
    result: dict[str, ssl.SSLSocket] = {}
    t = threading.Thread(target=lambda: result.update(c=handshake(client_ctx, b, None, server_side=False, who="x")))
    t.start()
    server = handshake(server_ctx, a, None, server_side=True, who="client")
    t.join(10)
    return server, result["c"]


def _client_ctx(certs: Certs, pair: KeyPair | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs.ca))
    ctx.check_hostname = False
    if pair is not None:
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
    return ctx


def test_client_common_name(tmp_path: Path, certs: Certs, server_pair: KeyPair) -> None:
    ctx = _ctx(tmp_path, server_pair, certs)
    server, client = _pair_over_tls(ctx, _client_ctx(certs, certs.issue("alice", "alice")))
    assert client_common_name(server) == "alice"
    server2, client2 = _pair_over_tls(ctx, _client_ctx(certs))
    assert client_common_name(server2) is None
    for s in (server, client, server2, client2):
        s.close()


def test_reader_drains_decrypted_bytes(tmp_path: Path, certs: Certs, server_pair: KeyPair) -> None:
    server, client = _pair_over_tls(_ctx(tmp_path, server_pair), _client_ctx(certs))
    client.sendall(b"x" * 1000)  # one TLS record
    # A small read leaves the rest of the record inside OpenSSL, invisible to poll().
    assert len(reader(server)(10)) == 1000
    for s in (server, client):
        s.close()


def test_reader_and_writer_of_a_plain_socket_use_its_descriptor() -> None:
    plain_a, plain_b = socket.socketpair()
    write_all = writer(plain_a)
    assert write_all != plain_a.sendall  # os.write on the descriptor
    big = bytes(range(256)) * 4096  # more than the socket buffer takes at once
    received = bytearray()
    done = threading.Thread(target=lambda: received.extend(_recv_exactly(plain_b, len(big) + 6)))
    done.start()
    write_all(big)
    write_all(bytearray(b"abc"))
    write_all(memoryview(b"xdefx")[1:4])
    done.join(10)
    assert received == big + b"abcdef"
    plain_b.sendall(b"reply")
    assert reader(plain_a)(100) == b"reply"
    plain_b.close()
    assert reader(plain_a)(100) == b""
    plain_a.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_tls_stream_reads_what_openssl_holds(tmp_path: Path, certs: Certs, server_pair: KeyPair) -> None:
    server, client = _pair_over_tls(_ctx(tmp_path, server_pair), _client_ctx(certs))
    client.sendall(b"abcdef")
    assert server.recv(2) == b"ab"  # the rest waits in OpenSSL; the fd has nothing more
    stream = TlsStream(server, "client", lambda fds, timeout: [], lambda: None)  # a wait would time out
    assert stream.read_exact(4, None, "test") == b"cdef"
    server.close()
    client.close()


def test_handshake_failure_is_a_protocol_error(certs: Certs) -> None:
    a, b = socket.socketpair()
    b.sendall(b"not a TLS hello at all, just text\n" * 4)
    b.close()
    with pytest.raises(ProtocolError, match="SSL handshake with the client failed"):
        handshake(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), a, None, server_side=True, who="the client")


def test_backend_context_verifies_with_ssl_ca_cert(tmp_path: Path, certs: Certs, server_pair: KeyPair) -> None:
    assert backend_context(_config(tmp_path, "ssl = off\n")) is None  # type: ignore[arg-type]
    assert libpq_params(_config(tmp_path, f"ssl = off\nssl_ca_cert = '{certs.ca}'\n")) == {}  # type: ignore[arg-type]
    plain = _config(tmp_path, "ssl = on\n")
    ctx = backend_context(plain)  # type: ignore[arg-type]
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert libpq_params(plain) == {}  # type: ignore[arg-type]
    # The CA file, relative to the configuration directory: the chain is checked, not the name.
    (tmp_path / "root.crt").write_bytes(certs.ca.read_bytes())
    verifying = _config(tmp_path, "ssl = on\nssl_ca_cert = 'root.crt'\n")
    ctx = backend_context(verifying)  # type: ignore[arg-type]
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    assert libpq_params(verifying) == {"sslmode": "verify-ca", "sslrootcert": str(tmp_path / "root.crt")}  # type: ignore[arg-type]
    server, client = _pair_over_tls(_ctx(tmp_path, server_pair), ctx)
    server.close()
    client.close()
    with pytest.raises(ConfigError, match='parameter "ssl_ca_cert": could not load the CA certificates'):
        backend_context(_config(tmp_path, "ssl = on\nssl_ca_cert = 'missing.crt'\n"))  # type: ignore[arg-type]
