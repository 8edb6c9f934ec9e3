"""
Sans-IO authentication exchanges, both ways.

**Client → pgpool** (``FrontendAuth``, one object per login, chosen by ``make_frontend_auth``)::

    out = auth.first()                 # b"" means authenticated already (trust, cert)
    while out and not ok:              # send `out`, read the client's next message
        out, ok = auth.feed(msg_type, body)
    # then send AuthenticationOk yourself; auth.password is the clear text if known

Failures raise ``AuthError``; a failed login says no more than PostgreSQL does
(``password authentication failed for user "x"``) and keeps the reason in
``AuthFailed.log_detail`` for the server log.

**pgpool → backend** (``BackendAuth``): feed it each Authentication request of the backend;
it returns the message to send back.

The SCRAM server side is written here rather than taken from scramp: scramp's server refuses
libpq's client-first-message, whose user name is empty (``n=``).  scramp serves the client side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final, Protocol

from scramp import ScramClient, ScramException  # type: ignore[import-untyped]

from pgpool_py.child.passwd import SCRAM_ITERATIONS, PasswordEntry, ScramSecret, pg_md5
from pgpool_py.errors import AuthError, ProtocolError
from pgpool_py.protocol.messages import (
    AUTH_CLEARTEXT,
    AUTH_MD5,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    authentication,
    authentication_sasl,
    password_message,
    sasl_initial_response,
    unpack_int32_from,
)

SCRAM_SHA_256: Final = "SCRAM-SHA-256"
_PASSWORD_MESSAGE: Final = ord("p")
_SCRAM_NONCE_BYTES: Final = 18  # as PostgreSQL


class AuthFailed(AuthError):
    """A failed login. ``log_detail`` explains it to the administrator, never to the client."""

    def __init__(self, message: str, *, log_detail: str | None = None, sqlstate: str = "28P01") -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.log_detail = log_detail


def _password_failed(user: str, log_detail: str | None = None) -> AuthFailed:
    return AuthFailed(f'password authentication failed for user "{user}"', log_detail=log_detail)


def _cstring(body: bytes, what: str) -> str:
    """A message body that is exactly one NUL-terminated string."""
    if not body or body.find(b"\0") != len(body) - 1:
        raise ProtocolError(f"invalid {what} packet size")
    return body[:-1].decode("utf-8", errors="surrogateescape")


def _no_usable_entry(user: str, entry: PasswordEntry | None, method: str) -> str:
    """Why ``entry`` cannot check a ``method`` login: the log detail of the failure."""
    if entry is None:
        return f'pool_passwd has no entry for user "{user}"'
    if entry.plaintext() == "":
        return f'pool_passwd holds an empty password for user "{user}", which never matches'
    if entry.kind == "aes":
        return f'the AES password of user "{user}" in pool_passwd could not be decrypted: {entry.problem}'
    return (
        f'pool_passwd holds an md5 hash for user "{user}", but {method} needs the password '
        "as TEXT or AES (or a SCRAM-SHA-256 verifier)"
    )


class FrontendAuth(Protocol):
    """One client login. ``password`` is the clear text once known (to log in to backends)."""

    password: str | None

    def first(self) -> bytes: ...

    def feed(self, msg_type: int, body: bytes) -> tuple[bytes, bool]: ...


class _Exchange:
    def __init__(self, user: str, entry: PasswordEntry | None) -> None:
        self.user = user
        self.entry = entry
        # An empty password never matches, as in PostgreSQL (an empty TEXT entry let a client in
        # with md5 or SCRAM of the empty string).
        self.password: str | None = (entry.plaintext() if entry else None) or None

    def _check_type(self, msg_type: int) -> None:
        if msg_type != _PASSWORD_MESSAGE:
            raise ProtocolError(f"expected password response, got message type {msg_type}")


class TrustAuth(_Exchange):
    def first(self) -> bytes:
        return b""

    def feed(self, msg_type: int, body: bytes) -> tuple[bytes, bool]:
        raise ProtocolError("unexpected message during trust authentication")


class RejectAuth(_Exchange):
    """A ``reject`` line: ``connection`` is ``hba.describe_connection(...)``."""

    def __init__(self, user: str, connection: str = "") -> None:
        super().__init__(user, None)
        self.connection = connection or f'user "{user}"'

    def first(self) -> bytes:
        raise AuthError(f"pool_hba.conf rejects connection for {self.connection}", sqlstate="28000")

    def feed(self, msg_type: int, body: bytes) -> tuple[bytes, bool]:
        raise ProtocolError("unexpected message after rejected connection")


class CertAuth(_Exchange):
    """``cert``: the client certificate's common name must be the user name."""

    def __init__(self, user: str, entry: PasswordEntry | None, client_cn: str | None) -> None:
        super().__init__(user, entry)
        self.client_cn = client_cn

    def first(self) -> bytes:
        if self.client_cn is None:
            raise AuthError("connection requires a valid client certificate", sqlstate="28000")
        if self.client_cn != self.user:
            raise AuthFailed(
                f'certificate authentication failed for user "{self.user}"',
                log_detail=f'the certificate is for "{self.client_cn}"',
                sqlstate="28000",
            )
        return b""

    def feed(self, msg_type: int, body: bytes) -> tuple[bytes, bool]:
        raise ProtocolError("unexpected message during certificate authentication")


class PasswordAuth(_Exchange):
    """
    ``password``: the client sends its password in clear text.

    Without a pool_passwd entry the password is taken unchecked, as pgpool-II does: the
    backends check it when pgpool logs in with it.  ``verified`` tells which case it was.
    """

    def __init__(self, user: str, entry: PasswordEntry | None) -> None:
        super().__init__(user, entry)
        self.verified = False

    def first(self) -> bytes:
        return authentication(AUTH_CLEARTEXT)

    def feed(self, msg_type: int, body: bytes) -> tuple[bytes, bool]:
        self._check_type(msg_type)
        given = _cstring(body, "password")
        if not given:
            raise _password_failed(self.user, "empty password returned by client")
        entry = self.entry
        if entry is not None:
            text = entry.plaintext()
            if text is not None:
                ok = hmac.compare_digest(given.encode(), text.encode())
            elif entry.kind == "md5":
                ok = hmac.compare_digest(pg_md5(given, self.user).encode(), entry.value.encode())
            elif entry.kind == "scram" and (secret := ScramSecret.parse(entry.value)) is not None:
                ok = secret.matches_password(given)
            else:
                raise _password_failed(self.user, _no_usable_entry(self.user, entry, "password"))
            if not ok:
                raise _password_failed(self.user, "password does not match pool_passwd")
            self.verified = True
        self.password = given
        return b"", True


def _md5_response(md5_hash: str, salt: bytes) -> str:
    """The client's answer to AuthenticationMD5Password: md5(md5(password + user) + salt)."""
    return "md5" + hashlib.md5(md5_hash[3:].encode() + salt).hexdigest()


class Md5Auth(_Exchange):
    """``md5``: challenge with a random salt; needs a TEXT, AES or md5 entry."""

    def __init__(self, user: str, entry: PasswordEntry | None) -> None:
        super().__init__(user, entry)
        self.salt = secrets.token_bytes(4)

    def first(self) -> bytes:
        return authentication(AUTH_MD5, self.salt)

    def feed(self, msg_type: int, body: bytes) -> tuple[bytes, bool]:
        self._check_type(msg_type)
        given = _cstring(body, "password")
        # Without a usable entry the exchange still runs and fails at the end, as in PostgreSQL.
        if self.entry is not None and self.entry.md5_hash is not None:
            stored = self.entry.md5_hash
        elif self.password is not None:
            stored = pg_md5(self.password, self.user)
        else:
            raise _password_failed(self.user, _no_usable_entry(self.user, self.entry, "md5"))
        if not hmac.compare_digest(given.encode(), _md5_response(stored, self.salt).encode()):
            raise _password_failed(self.user, "password does not match pool_passwd")
        return b"", True


def _scram_error(detail: str) -> ProtocolError:
    return ProtocolError("malformed SCRAM message", detail=detail)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _scram_error(f"invalid base64 in {what}") from None


class ScramAuth(_Exchange):
    """``scram-sha-256`` (RFC 5802/7677, no channel binding) against a TEXT, AES or SCRAM entry."""

    def __init__(self, user: str, entry: PasswordEntry | None, *, server_nonce: str | None = None) -> None:
        super().__init__(user, entry)
        secret = None
        if self.password is not None:
            secret = ScramSecret.from_password(self.password)
        elif entry is not None and entry.kind == "scram":
            secret = ScramSecret.parse(entry.value)
        # No usable secret: run the exchange on a random one, so that it fails at the end and
        # the client learns nothing about pool_passwd (PostgreSQL's mock authentication).
        self.log_detail = None if secret else _no_usable_entry(user, entry, "scram-sha-256")
        self.secret = secret or ScramSecret(
            SCRAM_ITERATIONS, secrets.token_bytes(16), secrets.token_bytes(32), secrets.token_bytes(32)
        )
        self.server_nonce = server_nonce or base64.b64encode(secrets.token_bytes(_SCRAM_NONCE_BYTES)).decode()
        self._stage = 0
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def first(self) -> bytes:
        return authentication_sasl([SCRAM_SHA_256])

    def feed(self, msg_type: int, body: bytes) -> tuple[bytes, bool]:
        self._check_type(msg_type)
        if self._stage == 0:
            self._stage = 1
            return authentication(AUTH_SASL_CONTINUE, self._client_first(body).encode()), False
        if self._stage == 1:
            self._stage = 2
            return authentication(AUTH_SASL_FINAL, self._client_final(body).encode()), True
        raise ProtocolError("unexpected SASL response after the SCRAM exchange ended")

    def _client_first(self, body: bytes) -> str:
        end = body.find(b"\0")
        if end < 0 or len(body) < end + 5:
            raise ProtocolError("invalid SASL initial response packet")
        mechanism = body[:end].decode(errors="replace")
        if mechanism != SCRAM_SHA_256:
            raise ProtocolError("client selected an invalid SASL authentication mechanism")
        (length,) = unpack_int32_from(body, end + 1)
        data = body[end + 5 :]
        if length != len(data):
            raise ProtocolError("invalid SASL initial response packet")
        try:
            message = data.decode("ascii")
        except UnicodeDecodeError:
            raise _scram_error("client-first-message is not ASCII") from None
        # gs2-header: cbind-flag "," [authzid] ","
        parts = message.split(",", 2)
        if len(parts) != 3:
            raise _scram_error("incomplete gs2 header in client-first-message")
        flag, authzid, bare = parts
        if flag.startswith("p"):
            raise _scram_error(
                "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message "
                "includes channel binding data."
            )
        if flag not in ("n", "y"):
            raise _scram_error(f"Unexpected channel-binding flag \"{flag}\".")
        if authzid:
            raise ProtocolError("client uses authorization identity, but it is not supported", sqlstate="0A000")
        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            raise ProtocolError("client requires an unsupported SCRAM extension", sqlstate="0A000")
        # The user name in the message is ignored: the startup packet's one counts (libpq sends "n=").
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r=") or len(attrs[1]) < 3:
            raise _scram_error("client-first-message lacks the user name or nonce")
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare
        self._nonce = attrs[1][2:] + self.server_nonce
        salt = base64.b64encode(self.secret.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self.secret.iterations}"
        return self._server_first

    def _client_final(self, body: bytes) -> str:
        try:
            message = body.decode("ascii")
        except UnicodeDecodeError:
            raise _scram_error("client-final-message is not ASCII") from None
        without_proof, sep, proof_b64 = message.rpartition(",p=")
        attrs = without_proof.split(",")
        if not sep or len(attrs) < 2 or not attrs[0].startswith("c=") or not attrs[1].startswith("r="):
            raise _scram_error("client-final-message lacks channel binding, nonce or proof")
        if _b64decode(attrs[0][2:], "channel binding") != self._gs2_header.encode():
            raise _scram_error("SCRAM channel binding check failed.")
        if attrs[1][2:] != self._nonce:
            raise _scram_error("Nonce does not match.")
        proof = _b64decode(proof_b64, "proof")
        if len(proof) != 32:
            raise _scram_error("Malformed proof in client-final-message.")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.new(self.secret.stored_key, auth_message, hashlib.sha256).digest()
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if self.log_detail or not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.secret.stored_key):
            raise _password_failed(self.user, self.log_detail or "password does not match pool_passwd")
        server_signature = hmac.new(self.secret.server_key, auth_message, hashlib.sha256).digest()
        return "v=" + base64.b64encode(server_signature).decode()


def make_frontend_auth(
    method: str,
    user: str,
    entry: PasswordEntry | None,
    *,
    connection: str = "",
    client_cn: str | None = None,
) -> FrontendAuth:
    """
    The exchange for a ``pool_hba.conf`` method.  ``connection`` (``hba.describe_connection``)
    words a rejection; ``client_cn`` is the SSL client certificate's common name for ``cert``.
    """
    if method == "trust":
        return TrustAuth(user, entry)
    if method == "reject":
        return RejectAuth(user, connection)
    if method == "password":
        return PasswordAuth(user, entry)
    if method == "md5":
        # PostgreSQL's rule: md5 with a SCRAM secret on file runs SCRAM instead.
        if entry is not None and entry.kind == "scram":
            return ScramAuth(user, entry)
        return Md5Auth(user, entry)
    if method == "scram-sha-256":
        return ScramAuth(user, entry)
    if method == "cert":
        return CertAuth(user, entry, client_cn)
    raise AuthError(f'authentication method "{method}" is not supported by pgpool-py', sqlstate="28000")


# ---------------------------------------------------------------- pgpool → backend

_UNSUPPORTED_BACKEND_METHODS: Final = {
    2: "Kerberos V5",
    6: "SCM credentials",
    7: "GSSAPI",
    8: "GSSAPI",
    9: "SSPI",
}


class BackendAuth:
    """
    Answers a backend's Authentication requests for ``user``.

    ``password`` is the clear text (from the client or pool_passwd); ``md5_hash`` the stored
    ``md5…`` hash, enough for md5 but not for clear-text or SCRAM requests.
    """

    def __init__(self, user: str, password: str | None, md5_hash: str | None = None) -> None:
        self.user = user
        self.password = password
        self.md5_hash = md5_hash
        self._scram: ScramClient | None = None
        self._scram_done = False

    def _need_password(self, method: str) -> str:
        if self.password is None:
            raise AuthError(
                f'cannot authenticate to backend node with {method}: pool_passwd holds no password for user "{self.user}"',
                sqlstate="28000",
                hint=f"store the password in pool_passwd as TEXT or AES (pg_enc) for {method} to the backends",
            )
        return self.password

    def feed(self, code: int, data: bytes) -> bytes | None:
        """The reply to Authentication request ``code``; None when nothing is to be sent."""
        if code == AUTH_OK:
            if self._scram is not None and not self._scram_done:
                raise AuthError("backend node ended the SCRAM exchange without proving it knows the password")
            return None
        if code == AUTH_CLEARTEXT:
            return password_message(self._need_password("password").encode() + b"\0")
        if code == AUTH_MD5:
            if len(data) != 4:
                raise ProtocolError("invalid AuthenticationMD5Password message from backend")
            stored = self.md5_hash or pg_md5(self._need_password("md5"), self.user)
            return password_message(_md5_response(stored, data).encode() + b"\0")
        if code == AUTH_SASL:
            mechanisms = [m.decode(errors="replace") for m in data.split(b"\0") if m]
            if SCRAM_SHA_256 not in mechanisms:
                raise AuthError(
                    f"backend node offers no supported SASL mechanism: {', '.join(mechanisms)}", sqlstate="28000"
                )
            password = self._need_password("scram-sha-256")
            try:
                self._scram = ScramClient([SCRAM_SHA_256], self.user, password)
                first = self._scram.get_client_first()
            except ScramException as exc:
                raise AuthError("cannot authenticate to backend node with scram-sha-256", detail=str(exc)) from exc
            return sasl_initial_response(SCRAM_SHA_256, first.encode())
        if code in (AUTH_SASL_CONTINUE, AUTH_SASL_FINAL):
            if self._scram is None or self._scram_done:
                raise ProtocolError("unexpected SASL message from backend node")
            try:
                if code == AUTH_SASL_CONTINUE:
                    self._scram.set_server_first(data.decode())
                    return password_message(self._scram.get_client_final().encode())
                self._scram.set_server_final(data.decode())
            except (ScramException, UnicodeDecodeError) as failed:
                raise AuthError("SCRAM authentication with backend node failed", detail=str(failed)) from failed
            self._scram_done = True
            return None
        method = _UNSUPPORTED_BACKEND_METHODS.get(code, f"code {code}")
        raise AuthError(f"backend node requested {method} authentication, which pgpool-py does not support", sqlstate="28000")
