from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pgpool_py.child.hba import HbaRule, HbaToken, describe_connection, load_hba, match_hba, no_entry_error
from pgpool_py.errors import ConfigError


def _load(tmp_path: Path, text: str) -> list[HbaRule]:
    path = tmp_path / "pool_hba.conf"
    path.write_text(text)
    return load_hba(str(path))


def _method(rules: list[HbaRule], addr: str | None, user: str = "u", database: str = "d", ssl: bool = False) -> str | None:
    rule = match_hba(
        rules,
        conn_type="host" if addr else "local",
        ssl=ssl,
        database=database,
        user=user,
        client_addr=addr,
    )
    return rule.method if rule else None


SAMPLE = Path("/usr/share/doc/pgpool2/examples/pool_hba.conf.sample")


@pytest.mark.skipif(not SAMPLE.exists(), reason="pgpool-II's sample is not installed")
def test_pgpool_sample_loads() -> None:
    rules = load_hba(str(SAMPLE))
    assert [r.conn_type for r in rules] == ["local", "host", "host"]
    assert _method(rules, "::1") == "trust" and _method(rules, "10.0.0.1") is None


def test_parse_fields(tmp_path: Path) -> None:
    rules = _load(
        tmp_path,
        """
# comment line
local   all             all                                     trust
host    db1,"my db"     alice, bob      10.0.0.0/8              md5   # trailing comment
host    all             "all"           192.168.1.0 255.255.255.0  scram-sha-256
hostssl sameuser        all             ::1/128                 password
hostnossl all           all             all                     reject
host    all             all             fe80::  ffff:ffff::     md5
""",
    )
    assert [r.line for r in rules] == [3, 4, 5, 6, 7, 8]
    local, host, mask, ssl, nossl, v6mask = rules
    assert local.address is None and local.method == "trust"
    assert host.databases == (HbaToken("db1"), HbaToken("my db", quoted=True))
    assert host.users == (HbaToken("alice"), HbaToken("bob"))
    assert host.address == ipaddress.ip_network("10.0.0.0/8")
    assert mask.address == ipaddress.ip_network("192.168.1.0/24")
    assert mask.users == (HbaToken("all", quoted=True),)
    assert ssl.address == ipaddress.ip_network("::1/128")
    assert nossl.address == "all"
    assert v6mask.address == ipaddress.ip_network("fe80::/32")


def test_matching_first_rule_wins(tmp_path: Path) -> None:
    rules = _load(
        tmp_path,
        """
local     all       all                      trust
host      all       bad       0.0.0.0/0      reject
host      db1,db2   alice,bob 10.1.0.0/16    md5
host      sameuser  all       10.0.0.0/8     password
host      all       "all"     10.0.0.0/8     trust
""",
    )
    assert _method(rules, None) == "trust"
    assert _method(rules, "1.2.3.4", user="bad") == "reject"
    assert _method(rules, "10.1.2.3", user="alice", database="db2") == "md5"
    assert _method(rules, "10.2.2.3", user="alice", database="db2") is None
    assert _method(rules, "10.2.2.3", user="carol", database="carol") == "password"  # sameuser
    # A quoted "all" is only the user named all.
    assert _method(rules, "10.2.2.3", user="all", database="x") == "trust"
    assert _method(rules, "10.2.2.3", user="carol", database="x") is None
    # Local connections never match host lines and vice versa.
    assert _method(rules[1:], None) is None


def test_ssl_line_types(tmp_path: Path) -> None:
    rules = _load(tmp_path, "hostssl all all all md5\nhostnossl all all all trust\n")
    assert _method(rules, "127.0.0.1", ssl=True) == "md5"
    assert _method(rules, "127.0.0.1", ssl=False) == "trust"
    plain = _load(tmp_path, "host all all all md5\n")
    assert _method(plain, "127.0.0.1", ssl=True) == "md5"


def test_ipv6_and_ipv4_mapped(tmp_path: Path) -> None:
    rules = _load(tmp_path, "host all all 127.0.0.1/32 trust\nhost all all ::1/128 md5\nhost all all 2001:db8::/32 password\n")
    assert _method(rules, "127.0.0.1") == "trust"
    assert _method(rules, "::ffff:127.0.0.1") == "trust"  # a dual-stack socket's view of an IPv4 client
    assert _method(rules, "::1") == "md5"
    assert _method(rules, "2001:db8:1::5") == "password"
    assert _method(rules, "127.0.0.2") is None
    assert _method(rules, "fe80::1%eth0") is None  # zone ids are accepted, not matched


def test_host_name(tmp_path: Path) -> None:
    rules = _load(tmp_path, "host all all localhost trust\nhost all all .invalid md5\n")
    assert rules[0].address == "localhost"
    assert _method(rules, "127.0.0.1") == "trust"  # /etc/hosts: no network needed
    assert _method(rules[1:], "127.0.0.1") is None  # "localhost" is not in the domain .invalid


def test_at_file_includes(tmp_path: Path) -> None:
    (tmp_path / "users").write_text("alice bob\ncarol, dave  # comment\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dbs").write_text("db1 @../more\n")
    (tmp_path / "more").write_text("db2\n")
    rules = _load(tmp_path, "host @sub/dbs @users,erin all md5\n")
    assert [t.text for t in rules[0].users] == ["alice", "bob", "carol", "dave", "erin"]
    assert [t.text for t in rules[0].databases] == ["db1", "db2"]
    assert _method(rules, "1.1.1.1", user="dave", database="db2") == "md5"
    # A quoted @name is a plain name.
    quoted = _load(tmp_path, 'local all "@users" trust\n')
    assert quoted[0].users == (HbaToken("@users", quoted=True),)


def test_quote_escapes(tmp_path: Path) -> None:
    rules = _load(tmp_path, 'local "a ""b"" c",x all trust\n')
    assert [t.text for t in rules[0].databases] == ['a "b" c', "x"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hots all all all trust", 'invalid connection type "hots"'),
        ("local all", "end-of-line before role specification"),
        ("local", "end-of-line before database specification"),
        ("local all all", "end-of-line before authentication method"),
        ("host all all", "end-of-line before IP address specification"),
        ("host all all 10.0.0.1", "end-of-line before netmask specification"),
        ("host all all 10.0.0.0/33 md5", "invalid CIDR mask"),
        ("host all all 10.0.0.0 255.0.255.0 md5", "invalid IP mask"),
        ("host all all 10.0.0.0 ffff:: md5", "IP address and mask do not match"),
        ("host all all 10.0.0.0 banana md5", 'invalid IP mask "banana"'),
        ("host all all example.com/24 md5", "specifying both host name and CIDR mask is invalid"),
        ("host all all samenet md5", "not supported by pgpool-py"),
        ("local all all ident", 'invalid authentication method "ident"'),
        ("local all all pam", 'authentication method "pam" is not supported by pgpool-py'),
        ("host all all all ldap ldapserver=x", 'authentication method "ldap" is not supported by pgpool-py'),
        ("host all all all cert", "cert authentication is only supported on hostssl connections"),
        ("local all +admins md5", "group names"),
        ("local samerole all md5", '"samerole" is not supported'),
        ("local all all md5 foo=bar", 'unrecognized authentication option name: "foo"'),
        ("local all all md5 foo", "not in name=value format"),
        ('local "all all md5', "unterminated quoted string"),
        ("local all all md5,trust", "multiple values specified for authentication type"),
        ("local all @missing trust", 'could not open secondary authentication file "@missing"'),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "pool_hba.conf"
    path.write_text(f"# first\nlocal all all trust\n{line}\n")
    with pytest.raises(ConfigError, match=r".*") as info:
        load_hba(str(path))
    text = str(info.value)
    assert message in text
    assert text.startswith(f"{path}:3: ")


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="contains no entries"):
        _load(tmp_path, "# nothing\n\n")
    with pytest.raises(ConfigError, match="could not read file"):
        load_hba(str(tmp_path / "absent"))


def test_no_entry_error_wording() -> None:
    err = no_entry_error(conn_type="host", ssl=False, database="d", user="u", client_addr="::ffff:1.2.3.4")
    assert err.message == 'no pool_hba.conf entry for host "1.2.3.4", user "u", database "d", no encryption'
    assert err.sqlstate == "28000" and err.severity == "FATAL"
    local = describe_connection(conn_type="local", ssl=False, database="d", user="u", client_addr=None)
    assert local == 'host "[local]", user "u", database "d", no encryption'
    assert describe_connection(conn_type="host", ssl=True, database="d", user="u", client_addr="::1").endswith(
        '"::1", user "u", database "d", SSL encryption'
    )


def test_replication_keyword_matches_physical_replication_connections_only(tmp_path: Path) -> None:
    # PostgreSQL's rule.  Before, "replication" was compared as a database name: a
    # replication connection passed "all" lines, and a database named replication matched.
    rules = _load(tmp_path, 'host replication all 0.0.0.0/0 reject\nhost "replication" all 0.0.0.0/0 md5\n'
                            "host all all 0.0.0.0/0 trust\n")

    def method(database: str, replication: bool) -> str | None:
        rule = match_hba(rules, conn_type="host", ssl=False, database=database, user="u", client_addr="1.2.3.4",
                         replication=replication)
        return rule.method if rule else None

    assert method("test", replication=True) == "reject"
    assert method("replication", replication=False) == "md5"  # only the quoted name
    assert method("test", replication=False) == "trust"
    assert method("test", replication=True) != "trust"
    assert _method(_load(tmp_path, "host all all 0.0.0.0/0 trust\n"), "1.2.3.4") == "trust"
    assert match_hba(_load(tmp_path, "host all all 0.0.0.0/0 trust\n"), conn_type="host", ssl=False, database="d",
                     user="u", client_addr="1.2.3.4", replication=True) is None  # "all" is no replication
    err = no_entry_error(conn_type="host", ssl=False, database="d", user="u", client_addr="1.2.3.4", replication=True)
    assert err.message == 'no pool_hba.conf entry for replication connection from host "1.2.3.4", user "u", no encryption'
