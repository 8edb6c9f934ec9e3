"""
``python -m pgpool_py.recovery install --host H --port P --user U [--dbname D]``: install
pgpool-py's online recovery functions (``pgpool_recovery``, ``pgpool_remote_start``) into a
PostgreSQL database.  ``print-sql`` writes the SQL to stdout instead, for ``psql -f -``.

The password, if one is needed, comes from libpq's usual places (PGPASSWORD, ~/.pgpass).
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from pgpool_py.recovery import FUNCTIONS_SQL


def read_functions_sql() -> str:
    with open(FUNCTIONS_SQL, encoding="utf-8") as f:
        return f.read()


def install(host: str, port: int, user: str, dbname: str) -> None:
    """Create (or replace) the functions; raises psycopg.Error on failure."""
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, autocommit=True) as conn:
        # One transaction: all the functions or none.
        with conn.transaction():
            with conn.cursor() as cur:
                cur.execute(read_functions_sql().encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgpool_py.recovery",
        description="Install the functions online recovery runs on the source node "
                    "(the same names and arguments as pgpool-II's pgpool_recovery extension).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="create the functions in a database (as a superuser)")
    inst.add_argument("--host", default="127.0.0.1", help="host or Unix socket directory (default 127.0.0.1)")
    inst.add_argument("--port", type=int, default=5432, help="port (default 5432)")
    inst.add_argument("--user", default="postgres", help="superuser to connect as (default postgres)")
    inst.add_argument("--dbname", default="postgres",
                      help="the database named by recovery_database (default postgres; pgpool-II 4.3 uses template1)")
    sub.add_parser("print-sql", help="write the SQL that creates the functions to stdout")
    args = parser.parse_args(argv)

    if args.command == "print-sql":
        sys.stdout.write(read_functions_sql())
        return 0
    try:
        install(args.host, args.port, args.user, args.dbname)
    except psycopg.Error as exc:
        print(f"could not install the recovery functions: {str(exc).strip()}", file=sys.stderr)
        return 1
    print(f"installed pgpool_recovery and pgpool_remote_start in database \"{args.dbname}\" "
          f"on {args.host}:{args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
