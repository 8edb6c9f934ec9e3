"""Helper commands shipped with pgpool-py, as pgpool-II ships pg_md5 and pg_enc."""
