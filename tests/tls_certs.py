"""Throwaway X.509 material for TLS tests, made with the openssl command line tool, and the
fixtures that hand it out (a plugin: see conftest.py)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

DAYS = "2"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    directory: Path

    def issue(self, name: str, cn: str, *, server: bool = False) -> KeyPair:
        """A key and a certificate for ``cn`` signed by the CA (a server one names 127.0.0.1)."""
        d = self.directory
        key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key.name, "-out", csr.name,
                 "-subj", f"/CN={cn}", cwd=d)
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "basicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", csr.name, "-CA", self.ca.name, "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", DAYS, "-extfile", ext.name, "-out", cert.name, cwd=d)
        os.chmod(key, 0o600)
        return KeyPair(cert, key)


def make_ca(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", DAYS, "-subj", "/CN=pgpool-py test CA", cwd=directory)
    return Certs(directory / "ca.crt", directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA of the test module's own."""
    return make_ca(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server_pair(certs: Certs) -> KeyPair:
    """A server certificate for localhost and 127.0.0.1, signed by ``certs``."""
    return certs.issue("server", "localhost", server=True)
