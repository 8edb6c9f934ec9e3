"""
``pgpool-py-md5`` and ``pgpool-py-enc``: pgpool-II's ``pg_md5`` and ``pg_enc`` with the same
options and output.

    pgpool-py-md5 PASSWORD                  md5 hex of PASSWORD (for pcp.conf)
    pgpool-py-md5 -m [-u USER] [-f pgpool.conf] PASSWORD
                                            USER:md5... into pool_passwd
    pgpool-py-enc [-k KEYFILE | -K KEY | -P] PASSWORD
                                            the AES text, and the pool_passwd string
    pgpool-py-enc -m [-u USER] [-f pgpool.conf] PASSWORD
                                            USER:AES... into pool_passwd

``-p`` prompts for the password, ``-i FILE`` reads ``user:password`` lines instead.  The pool_passwd
file is the one pgpool.conf names.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import sys
from collections.abc import Sequence

from pgpool_py.child.passwd import (
    aes_encrypt_password,
    pg_md5,
    read_pool_key,
    set_pool_passwd_entry,
)
from pgpool_py.config import load_config
from pgpool_py.errors import ConfigError

DEFAULT_CONFIG = "/etc/pgpool2/pgpool.conf"
MAX_INPUT = 128  # pgpool-II's limit on a password or key typed in


def _common_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("password", nargs="?", help="the password (prefer -p or -i: arguments are visible to others)")
    p.add_argument("-p", "--prompt", action="store_true", help="prompt for the password on standard input")
    p.add_argument("-u", "--username", help="user of the pool_passwd entry (default: the current user)")
    p.add_argument("-f", "--config-file", default=DEFAULT_CONFIG, help="pgpool.conf (default: %(default)s)")
    p.add_argument("-i", "--input-file", help="file of username:password lines")
    return p


def _pairs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """The (user, password) pairs to work on, from -i, -p or the argument."""
    if args.input_file:
        pairs = []
        with open(args.input_file, encoding="utf-8") as f:
            for line in f.read().splitlines():
                user, sep, password = line.partition(":")
                if not sep or not user or not password:
                    parser.error(f'{args.input_file}: line "{line}" is not username:password')
                pairs.append((user, password))
        return pairs
    if args.prompt:
        password = getpass.getpass("password: ")
    elif args.password is not None:
        password = args.password
    else:
        parser.error("a password is needed: give it, or use -p or -i")
    if len(password) > MAX_INPUT:
        parser.error(f"at most {MAX_INPUT} characters are allowed for the password")
    return [(args.username or getpass.getuser(), password)]


def _pool_passwd_path(config_file: str) -> str:
    cfg = load_config(config_file)
    if not cfg.pool_passwd:
        raise ConfigError(f'{config_file}: parameter "pool_passwd" is empty: there is no pool_passwd file')
    return cfg.config_path(cfg.pool_passwd)


def md5_main(argv: Sequence[str] | None = None) -> int:
    parser = _common_parser("pgpool-py-md5", "md5 hashes of passwords, for pcp.conf and pool_passwd.")
    parser.add_argument("-m", "--md5auth", action="store_true", help="write the md5 entry into pool_passwd")
    args = parser.parse_args(argv)
    if args.input_file and not args.md5auth:
        parser.error("-i needs -m")
    pairs = _pairs(args, parser)
    if not args.md5auth:
        # As pg_md5: the bare hash of the password, whatever -u says (pcp.conf's format).
        print(hashlib.md5(pairs[0][1].encode()).hexdigest())
        return 0
    try:
        path = _pool_passwd_path(args.config_file)
        for user, password in pairs:
            set_pool_passwd_entry(path, user, pg_md5(password, user))
    except (ConfigError, OSError) as exc:
        print(f"pgpool-py-md5: {exc}", file=sys.stderr)
        return 1
    return 0


def enc_main(argv: Sequence[str] | None = None) -> int:
    parser = _common_parser("pgpool-py-enc", "AES-encrypt passwords for pool_passwd, as pg_enc does.")
    parser.add_argument("-m", "--update-pass", action="store_true", help="write the AES entry into pool_passwd")
    parser.add_argument("-k", "--key-file", help="key file (default: $PGPOOLKEYFILE or ~/.pgpoolkey)")
    parser.add_argument("-K", "--enc-key", help="the encryption key itself")
    parser.add_argument("-P", "--prompt-for-key", action="store_true", help="prompt for the key on standard input")
    args = parser.parse_args(argv)
    pairs = _pairs(args, parser)
    if args.enc_key:
        key = args.enc_key
    elif args.prompt_for_key:
        key = getpass.getpass("key: ")
    else:
        found = read_pool_key(args.key_file)
        if found is None:
            print("pgpool-py-enc: could not read the encryption key: give -k, -K or -P, "
                  "or create ~/.pgpoolkey", file=sys.stderr)
            return 1
        key = found
    if not key or len(key) > MAX_INPUT:
        parser.error(f"the key must have 1 to {MAX_INPUT} characters")
    try:
        if not args.update_pass:
            cipher = aes_encrypt_password(pairs[0][1], key)
            print(cipher)
            print(f"pool_passwd string: AES{cipher}")
            return 0
        path = _pool_passwd_path(args.config_file)
        for user, password in pairs:
            set_pool_passwd_entry(path, user, "AES" + aes_encrypt_password(password, key))
    except (ConfigError, OSError, ValueError) as exc:
        print(f"pgpool-py-enc: {exc}", file=sys.stderr)
        return 1
    return 0
