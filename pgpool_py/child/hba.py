"""
``pool_hba.conf``: which clients may connect, and how they authenticate.

The format is PostgreSQL's ``pg_hba.conf`` as pgpool-II reads it::

    local      DATABASE  USER  METHOD  [OPTIONS]
    host       DATABASE  USER  ADDRESS  METHOD  [OPTIONS]      (also hostssl, hostnossl)
    host       DATABASE  USER  IP-ADDRESS  IP-MASK  METHOD  [OPTIONS]

DATABASE and USER are comma lists of names, ``all``, ``sameuser`` (database only) or
``@file`` (names read from a file, relative to this one).  Double quotes make a name keep
spaces or lose a keyword's meaning.  As in pgpool-II, group matching (``+role``,
``samerole``, ``samegroup``) is not available: pgpool does not know the backends' roles.
The first matching line decides; no matching line means the connection is refused.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Literal

from pgpool_py.errors import AuthError, ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CONNECTION_TYPES = ("local", "host", "hostssl", "hostnossl")
# Methods pgpool-py performs itself (see child/auth.py).
METHODS = ("trust", "reject", "password", "md5", "scram-sha-256", "cert")
# pgpool-II knows these with compile-time options; pgpool-py does not implement them.
UNSUPPORTED_METHODS = ("pam", "ldap")


@dataclass(frozen=True)
class HbaToken:
    text: str
    quoted: bool = False

    def is_keyword(self, word: str) -> bool:
        return not self.quoted and self.text == word


@dataclass(frozen=True)
class HbaRule:
    conn_type: str  # one of CONNECTION_TYPES
    databases: tuple[HbaToken, ...]
    users: tuple[HbaToken, ...]
    # None for local lines; "all" or a host name (".suffix" matches a domain) or a network.
    address: IPNetwork | str | None
    method: str
    file: str = ""
    line: int = 0


def _tokenize(text: str, where: str) -> list[list[HbaToken]]:
    """The fields of one line; each field is a comma list of tokens. ``#`` starts a comment."""
    fields: list[list[HbaToken]] = []
    field_tokens: list[HbaToken] = []
    chars: list[str] = []
    quoted = in_quote = started = comma_pending = False

    def end_token() -> None:
        nonlocal chars, quoted, started
        if started:
            field_tokens.append(HbaToken("".join(chars), quoted))
        chars, quoted, started = [], False, False

    i = 0
    while i < len(text):
        c = text[i]
        if in_quote:
            if c == '"' and text[i + 1 : i + 2] == '"':  # "" inside quotes is a literal quote
                chars.append('"')
                i += 1
            elif c == '"':
                in_quote = False
            else:
                chars.append(c)
        elif c == '"':
            in_quote = quoted = started = True
        elif c == "#":
            break
        elif c == ",":
            end_token()
            comma_pending = True
        elif c.isspace():
            if started:
                end_token()
                comma_pending = False
            if field_tokens and not comma_pending:
                fields.append(field_tokens)
                field_tokens = []
        else:
            chars.append(c)
            started = True
            comma_pending = False
        i += 1
    if in_quote:
        raise ConfigError(f"{where}: unterminated quoted string")
    end_token()
    if field_tokens:
        fields.append(field_tokens)
    return fields


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: could not read file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: could not read file: {exc}") from exc


def _expand_includes(tokens: list[HbaToken], path: str, where: str, depth: int = 0) -> tuple[HbaToken, ...]:
    """Replace each ``@file`` token by the names in that file (all its fields, any nesting)."""
    out: list[HbaToken] = []
    for tok in tokens:
        if tok.quoted or not tok.text.startswith("@") or len(tok.text) == 1:
            out.append(tok)
            continue
        if depth >= 10:
            raise ConfigError(f"{where}: @file includes nested too deeply")
        inc = os.path.join(os.path.dirname(path), tok.text[1:])
        try:
            lines = _read_lines(inc)
        except ConfigError as exc:
            raise ConfigError(f"{where}: could not open secondary authentication file \"{tok.text}\" as \"{inc}\"") from exc
        for n, text in enumerate(lines, 1):
            for fld in _tokenize(text, f"{inc}:{n}"):
                out.extend(_expand_includes(fld, inc, f"{inc}:{n}", depth + 1))
    return tuple(out)


def _parse_address(fields: list[list[HbaToken]], where: str) -> tuple[IPNetwork | str, int]:
    """The ADDRESS (and maybe IP-MASK) columns at ``fields[0]``; returns it and columns used."""
    if not fields:
        raise ConfigError(f"{where}: end-of-line before IP address specification")
    if len(fields[0]) > 1:
        raise ConfigError(f"{where}: multiple values specified for host address")
    tok = fields[0][0]
    if tok.is_keyword("all"):
        return "all", 1
    if tok.is_keyword("samehost") or tok.is_keyword("samenet"):
        raise ConfigError(f"{where}: address \"{tok.text}\" is not supported by pgpool-py")
    addr_text, slash, bits = tok.text.partition("/")
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        if slash:
            raise ConfigError(f"{where}: specifying both host name and CIDR mask is invalid: \"{tok.text}\"") from None
        return tok.text.lower(), 1  # a host name, compared case-insensitively
    if slash:
        try:
            return ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False), 1
        except ValueError:
            raise ConfigError(f"{where}: invalid CIDR mask in address \"{tok.text}\"") from None
    if len(fields) < 2:
        raise ConfigError(f"{where}: end-of-line before netmask specification")
    if len(fields[1]) > 1:
        raise ConfigError(f"{where}: multiple values specified for netmask")
    mask_text = fields[1][0].text
    try:
        mask = ipaddress.ip_address(mask_text)
    except ValueError:
        raise ConfigError(f"{where}: invalid IP mask \"{mask_text}\"") from None
    if mask.version != addr.version:
        raise ConfigError(f"{where}: IP address and mask do not match")
    value = int(mask)
    prefix = bin(value).count("1")
    if value != ((1 << mask.max_prefixlen) - 1) ^ ((1 << (mask.max_prefixlen - prefix)) - 1):
        raise ConfigError(f"{where}: invalid IP mask \"{mask_text}\": bits are not contiguous")
    return ipaddress.ip_network(f"{addr}/{prefix}", strict=False), 2


def _parse_line(fields: list[list[HbaToken]], path: str, lineno: int) -> HbaRule:
    where = f"{path}:{lineno}"
    if len(fields[0]) > 1:
        raise ConfigError(f"{where}: multiple values specified for connection type")
    conn_type = fields[0][0].text
    if conn_type not in CONNECTION_TYPES:
        raise ConfigError(f"{where}: invalid connection type \"{conn_type}\"")
    if len(fields) < 2:
        raise ConfigError(f"{where}: end-of-line before database specification")
    if len(fields) < 3:
        raise ConfigError(f"{where}: end-of-line before role specification")
    databases = _expand_includes(fields[1], path, where)
    users = _expand_includes(fields[2], path, where)
    for tok in databases:
        if tok.is_keyword("samerole") or tok.is_keyword("samegroup"):
            raise ConfigError(f"{where}: \"{tok.text}\" is not supported by pgpool-py: it does not know the backends' roles")
    for tok in users:
        if not tok.quoted and tok.text.startswith("+"):
            raise ConfigError(f"{where}: group names (\"{tok.text}\") are not supported by pgpool-py: it does not know the backends' roles")
    rest = fields[3:]
    address: IPNetwork | str | None = None
    if conn_type != "local":
        address, used = _parse_address(rest, where)
        rest = rest[used:]
    if not rest:
        raise ConfigError(f"{where}: end-of-line before authentication method")
    if len(rest[0]) > 1:
        raise ConfigError(f"{where}: multiple values specified for authentication type")
    method = rest[0][0].text
    if method in UNSUPPORTED_METHODS:
        raise ConfigError(f"{where}: authentication method \"{method}\" is not supported by pgpool-py")
    if method not in METHODS:
        raise ConfigError(f"{where}: invalid authentication method \"{method}\"")
    if method == "cert" and conn_type != "hostssl":
        raise ConfigError(f"{where}: cert authentication is only supported on hostssl connections")
    if len(rest) > 1:
        name, eq, _ = rest[1][0].text.partition("=")
        if not eq:
            raise ConfigError(f"{where}: authentication option not in name=value format: {rest[1][0].text}")
        # pgpool-II's options all belong to pam and ldap, which pgpool-py lacks.
        raise ConfigError(f"{where}: unrecognized authentication option name: \"{name}\"")
    return HbaRule(conn_type, databases, users, address, method, path, lineno)


def load_hba(path: str) -> list[HbaRule]:
    """Parse ``pool_hba.conf``; any bad line is a ConfigError naming ``file:line``."""
    rules: list[HbaRule] = []
    for lineno, text in enumerate(_read_lines(path), 1):
        fields = _tokenize(text, f"{path}:{lineno}")
        if fields:
            rules.append(_parse_line(fields, path, lineno))
    if not rules:
        raise ConfigError(f"{path}: configuration file contains no entries")
    return rules


# ---------------------------------------------------------------- matching


def _client_ip(client_addr: str) -> IPAddress:
    """The client's address; an IPv4-mapped IPv6 address (dual-stack socket) is its IPv4 self."""
    ip = ipaddress.ip_address(client_addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _host_name_matches(pattern: str, ip: IPAddress) -> bool:
    """pg_hba.conf's rule: reverse lookup must give the name, and the name must resolve back."""
    try:
        name = socket.gethostbyaddr(str(ip))[0].lower()
    except OSError:
        return False
    if pattern.startswith("."):
        if not name.endswith(pattern):
            return False
    elif name != pattern:
        return False
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return any(_client_ip(str(info[4][0])) == ip for info in infos)


def _address_matches(address: IPNetwork | str | None, ip: IPAddress | None) -> bool:
    if address == "all":
        return True
    if ip is None:
        return False
    if isinstance(address, str):
        return _host_name_matches(address, ip)
    return address is not None and ip.version == address.version and ip in address


def _database_matches(tokens: tuple[HbaToken, ...], database: str, user: str, replication: bool) -> bool:
    # As in PostgreSQL: a physical replication connection matches only the keyword
    # "replication", which matches nothing else (a database of that name needs quotes).
    if replication:
        return any(tok.is_keyword("replication") for tok in tokens)
    for tok in tokens:
        if tok.is_keyword("replication"):
            continue
        if tok.is_keyword("all") or (tok.is_keyword("sameuser") and database == user) or tok.text == database:
            return True
    return False


def _user_matches(tokens: tuple[HbaToken, ...], user: str) -> bool:
    return any(tok.is_keyword("all") or tok.text == user for tok in tokens)


def match_hba(
    rules: list[HbaRule],
    *,
    conn_type: Literal["local", "host"],
    ssl: bool,
    database: str,
    user: str,
    client_addr: str | None,
    replication: bool = False,
) -> HbaRule | None:
    """The first rule matching this connection, or None (refuse: see ``no_entry_error``).
    ``replication``: a physical replication connection (startup option replication=true)."""
    ip = _client_ip(client_addr) if conn_type == "host" and client_addr else None
    for rule in rules:
        if conn_type == "local":
            if rule.conn_type != "local":
                continue
        else:
            if rule.conn_type == "local" or (rule.conn_type == "hostssl" and not ssl):
                continue
            if rule.conn_type == "hostnossl" and ssl:
                continue
            if not _address_matches(rule.address, ip):
                continue
        if _database_matches(rule.databases, database, user, replication) and _user_matches(rule.users, user):
            return rule
    return None


def describe_connection(*, conn_type: str, ssl: bool, database: str, user: str, client_addr: str | None,
                        replication: bool = False) -> str:
    """PostgreSQL's wording: ``host "1.2.3.4", user "u", database "d", no encryption``
    (``replication connection from host …, user "u", …`` for a replication connection)."""
    host = str(_client_ip(client_addr)) if conn_type == "host" and client_addr else "[local]"
    encryption = "SSL encryption" if ssl else "no encryption"
    if replication:
        return f'replication connection from host "{host}", user "{user}", {encryption}'
    return f'host "{host}", user "{user}", database "{database}", {encryption}'


def no_entry_error(*, conn_type: str, ssl: bool, database: str, user: str, client_addr: str | None,
                   replication: bool = False) -> AuthError:
    """The error for a connection no ``pool_hba.conf`` line matches (SQLSTATE 28000)."""
    where = describe_connection(conn_type=conn_type, ssl=ssl, database=database, user=user, client_addr=client_addr,
                                replication=replication)
    return AuthError(f"no pool_hba.conf entry for {where}", sqlstate="28000")
