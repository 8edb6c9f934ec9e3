"""pgpool-py: a PostgreSQL connection pool server, a drop-in for pgpool-II."""

__version__ = "0.1.0"
# What SHOW POOL_VERSION and PCP report; pgpool-II clients parse the leading version number.
PGPOOL_COMPAT_VERSION = "4.3.5"
