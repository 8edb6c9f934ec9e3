from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest
from scramp import ScramClient  # type: ignore[import-untyped]

from pgpool_py.child.auth import (
    AuthFailed,
    BackendAuth,
    CertAuth,
    FrontendAuth,
    Md5Auth,
    PasswordAuth,
    ScramAuth,
    TrustAuth,
    make_frontend_auth,
)
from pgpool_py.child.passwd import PasswordEntry, classify_password, pg_md5
from pgpool_py.errors import AuthError, ProtocolError
from pgpool_py.protocol import messages as m

P = ord("p")
USER = "alice"
PASSWORD = "s3cret pässword"
TEXT = PasswordEntry("text", PASSWORD)
MD5 = PasswordEntry("md5", pg_md5(PASSWORD, USER))
RFC_VERIFIER = (
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
)


def _split(msg: bytes) -> tuple[int, bytes]:
    """(type, body) of one whole encoded message."""
    (length,) = struct.unpack_from("!I", msg, 1)
    assert len(msg) == 1 + length
    return msg[0], msg[5:]


def _auth_request(msg: bytes) -> m.AuthRequest:
    typ, body = _split(msg)
    assert typ == ord("R")
    return m.parse_authentication(body)


def _run(server: FrontendAuth, client: BackendAuth) -> None:
    """Drive a whole exchange the way the child's I/O loop does."""
    out = server.first()
    done = not out
    while not done:
        req = _auth_request(out)
        reply = client.feed(req.code, req.data)
        assert reply is not None
        out, done = server.feed(*_split(reply))
    if out:  # SASL final
        req = _auth_request(out)
        assert client.feed(req.code, req.data) is None
    assert client.feed(m.AUTH_OK, b"") is None


# ---------------------------------------------------------------- server side, method by method


def test_trust() -> None:
    auth = make_frontend_auth("trust", USER, TEXT)
    assert isinstance(auth, TrustAuth)
    assert auth.first() == b"" and auth.password == PASSWORD
    assert make_frontend_auth("trust", USER, MD5).password is None


def test_reject_says_what_postgresql_says() -> None:
    auth = make_frontend_auth("reject", USER, TEXT, connection='host "1.2.3.4", user "alice", database "d", no encryption')
    with pytest.raises(AuthError) as info:
        auth.first()
    assert info.value.message == 'pool_hba.conf rejects connection for host "1.2.3.4", user "alice", database "d", no encryption'
    assert info.value.sqlstate == "28000"


def test_unknown_method() -> None:
    with pytest.raises(AuthError, match="not supported"):
        make_frontend_auth("gss", USER, None)


@pytest.mark.parametrize("entry", [TEXT, MD5, PasswordEntry("scram", RFC_VERIFIER), None])
def test_password_auth(entry: PasswordEntry | None) -> None:
    password = "pencil" if entry is not None and entry.kind == "scram" else PASSWORD
    auth = make_frontend_auth("password", USER, entry)
    assert isinstance(auth, PasswordAuth)
    assert _auth_request(auth.first()).code == m.AUTH_CLEARTEXT
    assert BackendAuth(USER, password).feed(m.AUTH_CLEARTEXT, b"") == m.password_message(password.encode() + b"\0")
    assert auth.feed(P, password.encode() + b"\0") == (b"", True)
    assert auth.password == password
    assert auth.verified is (entry is not None)


@pytest.mark.parametrize("entry", [TEXT, MD5, PasswordEntry("scram", RFC_VERIFIER)])
def test_password_auth_wrong_password(entry: PasswordEntry) -> None:
    auth = PasswordAuth(USER, entry)
    auth.first()
    with pytest.raises(AuthFailed) as info:
        auth.feed(P, b"wrong\0")
    assert info.value.message == 'password authentication failed for user "alice"'
    assert info.value.sqlstate == "28P01" and info.value.detail is None
    assert info.value.log_detail


def test_password_auth_rejects_empty_and_bad_packets() -> None:
    auth = PasswordAuth(USER, None)
    with pytest.raises(AuthFailed, match="password authentication failed"):
        auth.feed(P, b"\0")
    with pytest.raises(ProtocolError, match="invalid password packet size"):
        auth.feed(P, b"abc")
    with pytest.raises(ProtocolError, match="invalid password packet size"):
        auth.feed(P, b"a\0b\0")
    with pytest.raises(ProtocolError, match="expected password response"):
        auth.feed(ord("Q"), b"select 1\0")


@pytest.mark.parametrize("entry", [TEXT, MD5])
def test_md5_against_backend_auth(entry: PasswordEntry) -> None:
    server = make_frontend_auth("md5", USER, entry)
    assert isinstance(server, Md5Auth)
    # The client side works from the stored hash alone, as pgpool does towards backends.
    _run(server, BackendAuth(USER, None, MD5.md5_hash))
    assert server.password == entry.plaintext()
    _run(make_frontend_auth("md5", USER, entry), BackendAuth(USER, PASSWORD))


def test_md5_salt_is_random_and_response_matches_postgresql() -> None:
    a, b = Md5Auth(USER, TEXT), Md5Auth(USER, TEXT)
    assert a.salt != b.salt and len(a.salt) == 4
    salt = b"\x01\x02\x03\x04"
    # libpq: "md5" + md5hex(md5hex(password + user) + salt)
    inner = hashlib.md5((PASSWORD + USER).encode()).hexdigest()
    expected = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
    assert BackendAuth(USER, PASSWORD).feed(m.AUTH_MD5, salt) == m.password_message(expected.encode() + b"\0")


def _md5_refused(entry: PasswordEntry | None, password: str) -> AuthFailed:
    """The failure of an md5 login with ``password`` against ``entry``."""
    server = Md5Auth(USER, entry)
    req = _auth_request(server.first())
    reply = BackendAuth(USER, password).feed(req.code, req.data)
    assert reply is not None
    with pytest.raises(AuthFailed) as info:
        server.feed(*_split(reply))
    return info.value


@pytest.mark.parametrize("entry", [TEXT, MD5, None, classify_password("AESsbPRgNtGiwnkzYmhYORmUw==")])
def test_md5_wrong_password_or_no_entry(entry: PasswordEntry | None) -> None:
    failure = _md5_refused(entry, "wrong")
    assert failure.message == 'password authentication failed for user "alice"'
    assert failure.log_detail
    if entry is None:
        assert "no entry" in failure.log_detail
    elif entry.kind == "aes":
        assert "could not be decrypted" in failure.log_detail


def test_md5_method_with_scram_entry_runs_scram() -> None:
    # PostgreSQL's rule: "md5" in pg_hba.conf with a SCRAM secret on file means SCRAM.
    auth = make_frontend_auth("md5", "user", PasswordEntry("scram", RFC_VERIFIER))
    assert isinstance(auth, ScramAuth)
    _run(auth, BackendAuth("user", "pencil"))


# ---------------------------------------------------------------- SCRAM


def test_scram_against_backend_auth() -> None:
    server = make_frontend_auth("scram-sha-256", USER, TEXT)
    assert isinstance(server, ScramAuth)
    first = _auth_request(server.first())
    assert first.code == m.AUTH_SASL and first.data == b"SCRAM-SHA-256\0\0"
    _run(server, BackendAuth(USER, PASSWORD))
    assert server.password == PASSWORD


def test_scram_with_stored_verifier_against_scramp_client() -> None:
    server = ScramAuth("user", PasswordEntry("scram", RFC_VERIFIER))
    client = ScramClient(["SCRAM-SHA-256"], "user", "pencil")
    server.first()
    out, done = server.feed(P, m.sasl_initial_response("SCRAM-SHA-256", client.get_client_first().encode())[5:])
    assert not done
    client.set_server_first(_auth_request(out).data.decode())
    out, done = server.feed(P, client.get_client_final().encode())
    assert done
    req = _auth_request(out)
    assert req.code == m.AUTH_SASL_FINAL
    client.set_server_final(req.data.decode())  # raises if the server signature is wrong
    assert server.password is None  # a verifier does not reveal the password


def test_scram_rfc7677_example() -> None:
    server = ScramAuth("user", PasswordEntry("scram", RFC_VERIFIER), server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    server.first()
    out, _ = server.feed(P, m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")[5:])
    assert _auth_request(out).data == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    out, done = server.feed(
        P,
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    )
    assert done and _auth_request(out).data == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _libpq_style_client(server: ScramAuth, password: str) -> bytes:
    """A SCRAM client written from RFC 5802 that sends "n=" as libpq does; returns server-final."""
    first_bare = "n=,r=fyko+d2lbbFgONRv9qkxdawL"
    out, _ = server.feed(P, m.sasl_initial_response("SCRAM-SHA-256", f"n,,{first_bare}".encode())[5:])
    server_first = _auth_request(out).data.decode()
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    out, done = server.feed(P, f"{without_proof},p={proof}".encode())
    assert done
    return _auth_request(out).data


def test_scram_accepts_libpq_empty_user_name() -> None:
    server = ScramAuth(USER, PasswordEntry("text", "pencil"))
    server.first()
    assert _libpq_style_client(server, "pencil").startswith(b"v=")


def test_scram_wrong_password() -> None:
    server = ScramAuth(USER, TEXT)
    server.first()
    with pytest.raises(AuthFailed) as info:
        _libpq_style_client(server, "wrong")
    assert info.value.message == 'password authentication failed for user "alice"'
    assert info.value.sqlstate == "28P01"


@pytest.mark.parametrize(
    ("entry", "detail"),
    [
        (MD5, "TEXT or AES"),
        (None, "no entry"),
        (classify_password("AESsbPRgNtGiwnkzYmhYORmUw=="), "could not be decrypted"),
    ],
)
def test_scram_without_usable_entry_fails_at_the_end(entry: PasswordEntry | None, detail: str) -> None:
    # Even the right password fails, but only after a complete-looking exchange (mock auth).
    server = ScramAuth(USER, entry)
    server.first()
    with pytest.raises(AuthFailed) as info:
        _libpq_style_client(server, PASSWORD)
    assert info.value.message == 'password authentication failed for user "alice"'
    assert info.value.log_detail is not None and detail in info.value.log_detail


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (m.sasl_initial_response("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"), "invalid SASL authentication mechanism"),
        (m.sasl_initial_response("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"), "malformed SCRAM message"),
        (m.sasl_initial_response("SCRAM-SHA-256", b"n,a=bob,n=,r=abc"), "authorization identity"),
        (m.sasl_initial_response("SCRAM-SHA-256", b"n,,m=ext,n=,r=abc"), "unsupported SCRAM extension"),
        (m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,x=abc"), "malformed SCRAM message"),
        (m.sasl_initial_response("SCRAM-SHA-256", b"n,,"), "malformed SCRAM message"),
        (m.password_message(b"SCRAM-SHA-256\0\0\0\0\x14n,,n=,r=a"), "invalid SASL initial response"),
    ],
)
def test_scram_malformed_client_first(first: bytes, message: str) -> None:
    server = ScramAuth(USER, TEXT)
    server.first()
    with pytest.raises(ProtocolError, match=message):
        server.feed(*_split(first))


@pytest.mark.parametrize(
    ("final", "message"),
    [
        ("c=eSws,r={nonce},p=" + "A" * 44, "channel binding check failed"),
        ("c=biws,r={nonce}x,p=" + "A" * 44, "Nonce does not match"),
        ("c=biws,r={nonce},p=AAAA", "Malformed proof"),
        ("c=biws,r={nonce}", "lacks channel binding, nonce or proof"),
    ],
)
def test_scram_malformed_client_final(final: str, message: str) -> None:
    server = ScramAuth(USER, TEXT)
    server.first()
    out, _ = server.feed(P, m.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc")[5:])
    nonce = _auth_request(out).data.decode().split(",")[0][2:]
    with pytest.raises(ProtocolError, match=message):
        server.feed(P, final.format(nonce=nonce).encode())


# ---------------------------------------------------------------- client side (towards backends)


def test_backend_scram_without_password_is_explained() -> None:
    client = BackendAuth(USER, None, MD5.md5_hash)
    with pytest.raises(AuthError) as info:
        client.feed(m.AUTH_SASL, b"SCRAM-SHA-256\0\0")
    assert info.value.message == (
        'cannot authenticate to backend node with scram-sha-256: pool_passwd holds no password for user "alice"'
    )
    assert info.value.hint is not None and "TEXT or AES" in info.value.hint
    with pytest.raises(AuthError, match="cannot authenticate to backend node with password"):
        client.feed(m.AUTH_CLEARTEXT, b"")
    with pytest.raises(AuthError, match="with md5"):
        BackendAuth(USER, None).feed(m.AUTH_MD5, b"salt")


@pytest.mark.parametrize(("code", "name"), [(2, "Kerberos V5"), (7, "GSSAPI"), (9, "SSPI"), (99, "code 99")])
def test_backend_unsupported_methods_are_named(code: int, name: str) -> None:
    with pytest.raises(AuthError, match=f"requested {name} authentication"):
        BackendAuth(USER, PASSWORD).feed(code, b"")


def test_backend_sasl_without_scram() -> None:
    with pytest.raises(AuthError, match="no supported SASL mechanism: SCRAM-SHA-256-PLUS"):
        BackendAuth(USER, PASSWORD).feed(m.AUTH_SASL, b"SCRAM-SHA-256-PLUS\0\0")


def test_backend_checks_the_server_signature() -> None:
    server = ScramAuth(USER, TEXT)
    client = BackendAuth(USER, PASSWORD)
    req = _auth_request(server.first())
    out, _ = server.feed(*_split(client.feed(req.code, req.data) or b""))
    req = _auth_request(out)
    server.feed(*_split(client.feed(req.code, req.data) or b""))
    with pytest.raises(AuthError, match="SCRAM authentication with backend node failed"):
        client.feed(m.AUTH_SASL_FINAL, b"v=" + base64.b64encode(b"\0" * 32))


def test_backend_ok_before_scram_final_is_refused() -> None:
    client = BackendAuth(USER, PASSWORD)
    client.feed(m.AUTH_SASL, b"SCRAM-SHA-256\0\0")
    with pytest.raises(AuthError, match="without proving"):
        client.feed(m.AUTH_OK, b"")
    with pytest.raises(ProtocolError, match="unexpected SASL message"):
        BackendAuth(USER, PASSWORD).feed(m.AUTH_SASL_CONTINUE, b"r=x")


# ---------------------------------------------------------------- cert


def test_cert() -> None:
    assert make_frontend_auth("cert", USER, None, client_cn=USER).first() == b""
    with pytest.raises(AuthFailed, match='certificate authentication failed for user "alice"'):
        CertAuth(USER, None, "mallory").first()
    with pytest.raises(AuthError, match="requires a valid client certificate"):
        CertAuth(USER, None, None).first()


def test_empty_password_entry_never_matches() -> None:
    # PostgreSQL never accepts an empty password; a TEXT entry holding one did, by md5 and SCRAM.
    empty = classify_password("TEXT")
    assert empty.plaintext() == ""
    failure = _md5_refused(empty, "")
    assert failure.log_detail is not None and "empty password" in failure.log_detail
    scram = ScramAuth(USER, empty)
    scram.first()
    with pytest.raises(AuthFailed):
        _libpq_style_client(scram, "")
    with pytest.raises(AuthFailed):
        PasswordAuth(USER, empty).feed(ord("p"), b"x\0")
