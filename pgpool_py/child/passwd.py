"""
``pool_passwd``: the passwords pgpool-py needs to authenticate clients and, on their behalf,
backends.

One ``user:password`` entry per line, as pgpool-II's ``pg_md5 --md5auth`` and ``pg_enc -m``
write them.  The password's prefix gives its kind (pgpool-II's ``get_password_type``):

- ``md5`` + 32 characters: ``md5(password + user)`` as PostgreSQL stores it;
- ``AES<base64>``: AES-256-CBC encrypted with the key from ``~/.pgpoolkey`` (``pg_enc``);
- ``SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey``: a SCRAM verifier as in ``pg_authid``;
- ``TEXT<password>``, or no known prefix at all: the password in plain text.

A backslash escapes a ``:`` inside a name or password.  There are no comments.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from functools import cache
from typing import Literal

from scramp import ScramException  # type: ignore[import-untyped]
from scramp.utils import saslprep  # type: ignore[import-untyped]

from pgpool_py.errors import ConfigError

log = logging.getLogger("pgpool_py.child.passwd")

PasswordKind = Literal["md5", "text", "aes", "scram"]

_MD5_PREFIX = "md5"
_MD5_LENGTH = 35  # "md5" + 32 hex digits
_AES_PREFIX = "AES"
_SCRAM_PREFIX = "SCRAM-SHA-256$"
_TEXT_PREFIX = "TEXT"
SCRAM_ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def pg_md5(password: str, user: str) -> str:
    """PostgreSQL's stored md5 password: ``'md5' + md5hex(password + user)``."""
    return _MD5_PREFIX + hashlib.md5((password + user).encode()).hexdigest()


@dataclass(frozen=True)
class ScramSecret:
    """A SCRAM-SHA-256 verifier: what the server needs to check a client's proof."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def parse(cls, text: str) -> ScramSecret | None:
        """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, or None if malformed."""
        if not text.startswith(_SCRAM_PREFIX):
            return None
        try:
            head, keys = text[len(_SCRAM_PREFIX) :].split("$")
            iterations, salt = head.split(":")
            stored_key, server_key = keys.split(":")
            secret = cls(
                int(iterations),
                base64.b64decode(salt, validate=True),
                base64.b64decode(stored_key, validate=True),
                base64.b64decode(server_key, validate=True),
            )
        except (ValueError, binascii.Error):
            return None
        if secret.iterations < 1 or len(secret.stored_key) != 32 or len(secret.server_key) != 32:
            return None
        return secret

    @classmethod
    def from_password(cls, password: str) -> ScramSecret:
        """A fresh verifier for a known password: random salt, PostgreSQL's 4096 iterations."""
        salt = secrets.token_bytes(16)
        stored_key, server_key = _scram_keys(password, salt, SCRAM_ITERATIONS)
        return cls(SCRAM_ITERATIONS, salt, stored_key, server_key)

    def matches_password(self, password: str) -> bool:
        stored_key, _ = _scram_keys(password, self.salt, self.iterations)
        return hmac.compare_digest(stored_key, self.stored_key)


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 for a password."""
    # PostgreSQL's rule: SASLprep the password, but use it as is when SASLprep refuses it.
    try:
        normalized = saslprep(password).encode()
    except ScramException:
        normalized = password.encode()
    salted = hashlib.pbkdf2_hmac("sha256", normalized, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


@dataclass(frozen=True)
class PasswordEntry:
    """
    One ``pool_passwd`` entry.

    ``value`` is the password as stored after its prefix: the plain text for ``text``, the whole
    ``md5…`` hash, the base64 ciphertext for ``aes``, the whole verifier for ``scram``.
    ``decrypted`` holds an ``aes`` entry's plain text once the key opened it; otherwise
    ``problem`` says why it could not.
    """

    kind: PasswordKind
    value: str
    decrypted: str | None = None
    problem: str | None = None

    def plaintext(self) -> str | None:
        if self.kind == "text":
            return self.value
        if self.kind == "aes":
            return self.decrypted
        return None

    @property
    def md5_hash(self) -> str | None:
        """The stored ``md5…`` hash, if that is what the entry holds."""
        return self.value if self.kind == "md5" else None


def classify_password(stored: str, pool_key: str | None = None) -> PasswordEntry:
    """The entry for one stored password, by its prefix (pgpool-II's ``get_password_type``)."""
    if stored.startswith(_MD5_PREFIX) and len(stored) == _MD5_LENGTH:
        return PasswordEntry("md5", stored.lower())
    if stored.startswith(_AES_PREFIX):
        cipher = stored[len(_AES_PREFIX) :]
        if pool_key is None:
            return PasswordEntry("aes", cipher, problem="no pool key: create ~/.pgpoolkey or set PGPOOLKEYFILE")
        try:
            return PasswordEntry("aes", cipher, decrypted=aes_decrypt_password(cipher, pool_key))
        except ValueError as exc:
            return PasswordEntry("aes", cipher, problem=str(exc))
    if stored.startswith(_SCRAM_PREFIX):
        return PasswordEntry("scram", stored)
    if stored.startswith(_TEXT_PREFIX):
        return PasswordEntry("text", stored[len(_TEXT_PREFIX) :])
    # An "md5" prefix of the wrong length is a plain password too, as in pgpool-II.
    return PasswordEntry("text", stored)


def _split_escaped(line: str) -> list[str]:
    """Split on ``:`` not preceded by a backslash; the backslash escapes any character."""
    fields: list[str] = []
    current: list[str] = []
    chars = iter(line)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
        elif c == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
    fields.append("".join(current))
    return fields


def load_pool_passwd(path: str, pool_key: str | None = None) -> dict[str, PasswordEntry]:
    """
    Read ``pool_passwd``; a missing file is an empty one (pgpool-II creates it on demand).

    ``pool_key`` decrypts ``AES`` entries (see ``read_pool_key``).  Lines without a password are
    skipped as pgpool-II skips them; the first entry for a user wins.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: could not read pool_passwd: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: could not read pool_passwd: {exc}") from exc
    entries: dict[str, PasswordEntry] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = _split_escaped(line)
        if len(fields) < 2 or not fields[0] or not fields[1]:
            log.warning("%s:%d: pool_passwd line is not \"user:password\", ignored", path, lineno)
            continue
        user, stored = fields[0], fields[1]
        if stored.startswith(_SCRAM_PREFIX):
            # A verifier holds two ':' of its own (pgpool-II 4.3 cut it there and failed).
            stored = ":".join(fields[1:])
        elif len(fields) > 2:
            # pgpool-II reads "user:password:backend_user:backend_password" (user mapping).
            log.warning("%s:%d: user mapping in pool_passwd is not supported by pgpool-py, ignored", path, lineno)
        if user in entries:
            continue
        entry = classify_password(stored, pool_key)
        if entry.kind == "scram" and ScramSecret.parse(entry.value) is None:
            raise ConfigError(f"{path}:{lineno}: invalid SCRAM verifier for user \"{user}\"")
        if entry.problem:
            log.warning("%s:%d: could not decrypt the password of user \"%s\": %s", path, lineno, user, entry.problem)
        entries[user] = entry
    return entries


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def set_pool_passwd_entry(path: str, user: str, stored: str) -> None:
    """
    Write ``user:stored`` into ``pool_passwd``, replacing the user's entry or appending one
    (what ``pg_md5 -m`` and ``pg_enc -m`` do).  A new file is made readable by its owner only.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    line = f"{_escape(user)}:{_escape(stored)}"
    for i, old in enumerate(lines):
        if _split_escaped(old)[0] == user:
            lines[i] = line
            break
    else:
        lines.append(line)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if os.path.exists(path):
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    os.replace(tmp, path)


def read_pool_key(key_file: str | None = None) -> str | None:
    """
    The AES key: the first line of ``key_file`` (pgpool's ``-k``), else of ``$PGPOOLKEYFILE``,
    else of ``~/.pgpoolkey``.  None when there is no readable key file.
    """
    path = key_file or os.environ.get("PGPOOLKEYFILE") or os.path.expanduser("~/.pgpoolkey")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                log.warning("pool key file \"%s\" is not a plain file", path)
                return None
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning(
                    "pool key file \"%s\" has group or world access; permissions should be u=rw (0600) or less", path
                )
            first = f.readline()
    except OSError:
        return None
    key = first.rstrip(b"\n").decode("utf-8", errors="surrogateescape")
    return key or None


# ---------------------------------------------------------------- AES, as pgpool-II's pg_enc


def _evp_bytes_to_key(passphrase: bytes) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey(aes-256-cbc, sha1, no salt, 1 round): 32-byte key, 16-byte IV."""
    out = b""
    block = b""
    while len(out) < 48:
        block = hashlib.sha1(block + passphrase).digest()
        out += block
    return out[:32], out[32:48]


@cache
def _libcrypto() -> ctypes.CDLL:
    """OpenSSL's libcrypto, which CPython's ssl module already loads: no extra package for AES."""
    name = ctypes.util.find_library("crypto")
    if name is None:
        raise ValueError("AES passwords need OpenSSL's libcrypto, which was not found")
    lib = ctypes.CDLL(name)
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    lib.EVP_aes_256_cbc.restype = ctypes.c_void_p
    lib.EVP_CipherInit_ex.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
    ]
    lib.EVP_CipherUpdate.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_int,
    ]
    lib.EVP_CipherFinal_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    return lib


def _aes_256_cbc(data: bytes, pool_key: str, encrypt: bool) -> bytes | None:
    """AES-256-CBC with PKCS#7 padding, key and IV derived as pg_enc does; None on failure."""
    key, iv = _evp_bytes_to_key(pool_key.encode())
    lib = _libcrypto()
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise ValueError("could not create an OpenSSL cipher context")
    try:
        out = ctypes.create_string_buffer(len(data) + 32)
        n1, n2 = ctypes.c_int(0), ctypes.c_int(0)
        ok = (
            lib.EVP_CipherInit_ex(ctx, lib.EVP_aes_256_cbc(), None, key, iv, int(encrypt)) == 1
            and lib.EVP_CipherUpdate(ctx, out, ctypes.byref(n1), data, len(data)) == 1
            and lib.EVP_CipherFinal_ex(ctx, ctypes.addressof(out) + n1.value, ctypes.byref(n2)) == 1
        )
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)
    return out.raw[: n1.value + n2.value] if ok else None


def aes_decrypt_password(cipher_b64: str, pool_key: str) -> str:
    """Decrypt the text after ``AES`` in a pool_passwd entry; ValueError if the key does not fit."""
    try:
        data = base64.b64decode(cipher_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError("the AES password is not valid base64") from exc
    if not data or len(data) % 16:
        raise ValueError("the AES password has an invalid length")
    plain = _aes_256_cbc(data, pool_key, encrypt=False)
    if plain is None:
        raise ValueError("AES decryption failed: wrong pool key?")
    try:
        return plain.decode()
    except UnicodeDecodeError as exc:
        raise ValueError("AES decryption failed: wrong pool key?") from exc


def aes_encrypt_password(password: str, pool_key: str) -> str:
    """The base64 text that follows ``AES`` in pool_passwd: byte for byte what pg_enc writes."""
    cipher = _aes_256_cbc(password.encode(), pool_key, encrypt=True)
    if cipher is None:
        raise ValueError("AES encryption failed")
    return base64.b64encode(cipher).decode()
