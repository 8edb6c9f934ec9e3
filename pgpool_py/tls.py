"""
TLS, as pgpool-II's ``ssl = on`` means it: clients may negotiate TLS (SSLRequest answered
``S``), and pgpool-py asks every backend reached over TCP for TLS too, falling back to clear
text when the backend answers ``N`` (libpq's ``sslmode=prefer``); with ``ssl_ca_cert`` or
``ssl_ca_cert_dir`` a backend's certificate must be signed by those CAs.

The server context is built from ``ssl_cert``/``ssl_key``/``ssl_ca_cert``... once per process
(with the authentication files) and again on reload, so a SIGHUP swaps the certificate.
A client certificate is asked for when a CA is configured; it is verified when presented and
``cert`` lines in pool_hba.conf require it.

An ``SSLSocket`` may hold decrypted bytes while its descriptor is not readable: every read that
is followed by a wait on the descriptor goes through ``reader`` (relay loops) or ``TlsStream``.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pgpool_py.errors import ConfigError, ProtocolError
from pgpool_py.protocol.stream import Stream
from pgpool_py.stdlib import SSLSocket, os_read, os_write

if TYPE_CHECKING:
    from pgpool_py.config.loader import Config

log = logging.getLogger(__name__)

# pgpool-II 4.3 has no ssl_min_protocol_version; PostgreSQL's default minimum applies.
MIN_PROTOCOL: Final = ssl.TLSVersion.TLSv1_2
PASSPHRASE_COMMAND_TIMEOUT: Final = 30.0


def _passphrase(command: str) -> Callable[[], str]:
    """ssl_passphrase_command: its first output line unlocks an encrypted ssl_key."""

    def run() -> str:
        try:
            out = subprocess.run(
                command, shell=True, capture_output=True, check=True, timeout=PASSPHRASE_COMMAND_TIMEOUT
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(f'ssl_passphrase_command "{command}" failed: {exc}') from exc
        return out.decode(errors="replace").splitlines()[0] if out else ""

    return run


def server_context(cfg: Config) -> ssl.SSLContext | None:
    """The context for client connections, or None when ``ssl`` is off; ConfigError if unusable."""
    if not cfg.ssl:
        return None
    if not cfg.ssl_cert or not cfg.ssl_key:
        raise ConfigError('parameter "ssl": ssl = on needs ssl_cert and ssl_key')
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_PROTOCOL
    try:
        ctx.set_ciphers(cfg.ssl_ciphers)
        if cfg.ssl_prefer_server_ciphers:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        password = _passphrase(cfg.ssl_passphrase_command) if cfg.ssl_passphrase_command else None
        ctx.load_cert_chain(cfg.config_path(cfg.ssl_cert), cfg.config_path(cfg.ssl_key), password)
        if cfg.ssl_ca_cert or cfg.ssl_ca_cert_dir:
            ctx.load_verify_locations(
                cafile=cfg.config_path(cfg.ssl_ca_cert) if cfg.ssl_ca_cert else None,
                capath=cfg.config_path(cfg.ssl_ca_cert_dir) if cfg.ssl_ca_cert_dir else None,
            )
            ctx.verify_mode = ssl.CERT_OPTIONAL
        if cfg.ssl_crl_file:
            ctx.load_verify_locations(cafile=cfg.config_path(cfg.ssl_crl_file))
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if cfg.ssl_ecdh_curve:
            ctx.set_ecdh_curve(cfg.ssl_ecdh_curve)
        if cfg.ssl_dh_params_file:
            ctx.load_dh_params(cfg.config_path(cfg.ssl_dh_params_file))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f'parameter "ssl": could not load the SSL configuration: {exc}') from exc
    return ctx


def backend_context(cfg: Config) -> ssl.SSLContext | None:
    """
    Our side of TLS towards backends, or None when ``ssl`` is off.  As in pgpool-II,
    ``ssl_ca_cert``/``ssl_ca_cert_dir`` make it verify each backend's certificate chain
    (libpq's sslmode=verify-ca: backends are often named by addresses their certificates do
    not list); without them it encrypts without checking (sslmode=prefer).
    """
    if not cfg.ssl:
        return None
    cafile = cfg.config_path(cfg.ssl_ca_cert) if cfg.ssl_ca_cert else None
    capath = cfg.config_path(cfg.ssl_ca_cert_dir) if cfg.ssl_ca_cert_dir else None
    return _backend_context(cafile, capath)


@cache
def _backend_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = MIN_PROTOCOL
    if cafile or capath:
        try:
            ctx.load_verify_locations(cafile=cafile, capath=capath)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f'parameter "ssl_ca_cert": could not load the CA certificates for backends: {exc}') from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def libpq_params(cfg: Config) -> dict[str, str]:
    """
    The backend certificate check for side connections (health checks, sr_check, online
    recovery), which go through libpq: sslmode=verify-ca, trusting what the relay trusts.
    libpq takes one CA file and no directory, so with ``ssl_ca_cert_dir`` it gets a bundle of
    ``ssl_ca_cert`` and the directory's certificates, written to ``work_dir``.
    """
    if not cfg.ssl or not (cfg.ssl_ca_cert or cfg.ssl_ca_cert_dir):
        return {}
    cafile = cfg.config_path(cfg.ssl_ca_cert) if cfg.ssl_ca_cert else None
    if not cfg.ssl_ca_cert_dir:
        return {"sslmode": "verify-ca", "sslrootcert": cafile or ""}
    bundle = os.path.join(cfg.work_dir, CA_BUNDLE_FILE)
    try:
        _write_ca_bundle(bundle, cafile, cfg.config_path(cfg.ssl_ca_cert_dir))
    except OSError as exc:
        # libpq then fails the connection on the missing file: no unverified side connection.
        log.error('parameter "ssl_ca_cert_dir": could not write the CA bundle for libpq to "%s": %s', bundle, exc)
    return {"sslmode": "verify-ca", "sslrootcert": bundle}


# libpq's error when verify-ca meets a backend that answers the SSLRequest with N.  The relay
# goes on in clear text then (only a certificate it gets is checked): side connections retry
# without TLS on this error alone, never on a failed verification.
TLS_NOT_SUPPORTED: Final = "server does not support SSL"

CA_BUNDLE_FILE: Final = "pgpool_ca_bundle.pem"
# What OpenSSL reads from a CA directory: certificates under their subject hash (c_rehash).
_HASHED_CERT_NAME: Final = re.compile(r"[0-9a-f]{8}\.[0-9]+")
_PEM_CERT: Final = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


def _write_ca_bundle(path: str, cafile: str | None, capath: str) -> None:
    """Write the certificates of ``cafile`` and ``capath`` to ``path``, unless it has them."""
    texts = [Path(cafile).read_text(errors="replace")] if cafile else []
    texts += [(Path(capath) / name).read_text(errors="replace")
              for name in sorted(os.listdir(capath)) if _HASHED_CERT_NAME.fullmatch(name)]
    content = "".join(cert if cert.endswith("\n") else cert + "\n"
                      for text in texts for cert in _PEM_CERT.findall(text))
    with contextlib.suppress(OSError):
        if Path(path).read_text() == content:
            return
    # Other processes may read it at any moment: a whole new file, renamed into place.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=CA_BUNDLE_FILE + ".")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def handshake(
    ctx: ssl.SSLContext, sock: _socket.socket, deadline: float | None, *, server_side: bool, who: str
) -> ssl.SSLSocket:
    """Wrap ``sock`` and complete the handshake by ``deadline``; the result is a blocking socket."""
    # ssl wraps socket.socket; a child accepts clients as the C type under it (child._accept).
    plain = sock if isinstance(sock, socket.socket) else socket.socket(sock.family, sock.type, sock.proto, sock.detach())
    tls = ctx.wrap_socket(plain, server_side=server_side, do_handshake_on_connect=False)
    try:
        tls.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
        tls.do_handshake()
        tls.settimeout(None)
    except (ssl.SSLError, OSError) as exc:
        tls.close()
        raise ProtocolError(f"SSL handshake with {who} failed", detail=str(exc)) from exc
    return tls


def client_common_name(sock: ssl.SSLSocket) -> str | None:
    """The common name of the verified client certificate, if the client sent one."""
    cert = sock.getpeercert()
    for rdn in (cert or {}).get("subject", ()):
        for attr in rdn:  # (name, value) pairs
            if attr[0] == "commonName":
                return str(attr[1])
    return None


def reader(sock: _socket.socket) -> Callable[[int], bytes]:
    """``sock.recv`` on a relay's blocking socket; for TLS, a recv that also takes the bytes
    OpenSSL has decrypted already.  A plain socket is read with ``os.read``: the same system
    call, but a socket method's argument parsing and method lookup cost ~400 instructions
    more per call (docs/performance.md).  It holds the descriptor's number, not the socket:
    drop it when the socket is closed, before the number can be reused."""
    if not isinstance(sock, SSLSocket):
        fd = sock.fileno()

        def read(size: int) -> bytes:
            return os_read(fd, size)

        return read
    recv, pending = sock.recv, sock.pending

    def recv_drained(size: int) -> bytes:
        data = recv(size)
        left = pending()
        while left:
            data += recv(left)
            left = pending()
        return data

    return recv_drained


def writer(sock: _socket.socket) -> Callable[[bytes | bytearray | memoryview], None]:
    """``sock.sendall`` on a relay's blocking socket, for a plain one with ``os.write`` (see
    ``reader``, also for how long it may be used)."""
    if isinstance(sock, SSLSocket):
        return sock.sendall
    fd = sock.fileno()

    def write_all(data: bytes | bytearray | memoryview) -> None:
        sent = os_write(fd, data)
        while sent < len(data):  # a signal handled mid-write cuts it short
            sent += os_write(fd, memoryview(data)[sent:])

    return write_all


class TlsStream(Stream):
    """A Stream over an SSLSocket: decrypted bytes waiting in OpenSSL count as readable."""

    def _fill(self, deadline: float | None, what: str) -> None:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        if sock.pending():
            self.buf += sock.recv(sock.pending())
            return
        super()._fill(deadline, what)
