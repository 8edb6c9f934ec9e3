-- pgpool-py's online recovery functions, in PL/pgSQL (no C module to build or install).
--
-- Same names, arguments and results as pgpool-II's pgpool_recovery extension, so pgpool-II and
-- pgpool-py can use either.  Install them, as a superuser, in the database online recovery
-- connects to (recovery_database) on every node that can be a recovery source:
--
--     python -m pgpool_py.recovery install --host H --port P --user postgres --dbname postgres
--
-- A script runs through COPY ... FROM PROGRAM: as the PostgreSQL server's OS user, in its data
-- directory, like the C extension's system().  Unlike the C extension, a failing script's exit
-- status and output come back in the error's DETAIL, so pcp_recovery_node can show them.

-- Runs "$PGDATA/<script_name>" with args; raises "<what> failed" when it is missing or exits
-- non-zero.  Internal to this file.
CREATE OR REPLACE FUNCTION pgpool_py_run_script(what text, script_name text, args text[])
RETURNS bool
LANGUAGE plpgsql
AS $body$
DECLARE
    script text := current_setting('data_directory') || '/' || script_name;
    command text;
    arg text;
    stdout text;
    stderr text;
    status int;
BEGIN
    IF (pg_stat_file(script, true)).size IS NULL THEN
        RAISE EXCEPTION '% failed', what
            USING DETAIL = format('script "%s" does not exist', script),
                  HINT = 'Put the script in the data directory of the node that recovery copies from, '
                         'executable by the PostgreSQL server''s OS user.';
    END IF;
    -- Single-quote each word for sh.  The script's output goes to files, not to COPY's pipe:
    -- a server it starts in the background must not keep the pipe (and this call) open.
    -- Then every line comes back tagged: O stdout, E stderr, S exit status.
    command := pgpool_py_sh_quote(script);
    FOREACH arg IN ARRAY args LOOP
        command := command || ' ' || pgpool_py_sh_quote(arg);
    END LOOP;
    command := 'd=$(mktemp -d) || exit 1; ' || command || ' </dev/null >"$d/out" 2>"$d/err"; s=$?; '
               || 'tr -d ''\001\002\000'' <"$d/out" | awk ''{print "O " $0}''; '
               || 'tr -d ''\001\002\000'' <"$d/err" | awk ''{print "E " $0}''; '
               || 'rm -rf "$d"; echo "S $s"';

    CREATE TEMP TABLE IF NOT EXISTS pgpool_py_script_output (n serial, line text) ON COMMIT DROP;
    TRUNCATE pgpool_py_script_output;
    -- CSV with control characters as delimiter and quote: every line is one value, verbatim.
    EXECUTE format('COPY pgpool_py_script_output (line) FROM PROGRAM %L '
                   'WITH (FORMAT csv, DELIMITER E''\x01'', QUOTE E''\x02'')', command);

    SELECT substr(line, 3)::int INTO status FROM pgpool_py_script_output WHERE line LIKE 'S %';
    SELECT coalesce(string_agg(substr(line, 3), E'\n' ORDER BY n) FILTER (WHERE line LIKE 'O %'), ''),
           coalesce(string_agg(substr(line, 3), E'\n' ORDER BY n) FILTER (WHERE line LIKE 'E %'), '')
      INTO stdout, stderr FROM pgpool_py_script_output;

    IF stdout || stderr <> '' THEN
        -- Where the C extension's output goes: the server log.
        RAISE LOG '% output of script "%": %', what, script_name, concat_ws(E'\n', stdout, stderr);
    END IF;
    IF status IS NULL OR status <> 0 THEN
        RAISE EXCEPTION '% failed', what
            USING DETAIL = format('script "%s" exited with status %s%s', script_name, coalesce(status::text, 'unknown'),
                                  CASE WHEN stderr <> '' THEN ': ' || stderr
                                       WHEN stdout <> '' THEN ': ' || stdout ELSE '' END);
    END IF;
    RETURN true;
END
$body$;

-- sh quoting: 'it''s' -> 'it'\''s'
CREATE OR REPLACE FUNCTION pgpool_py_sh_quote(word text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT '''' || replace(word, '''', '''\''''') || '''' $$;

-- pgpool-II 4.3+ calls this form: $1 source PGDATA, $2 target host, $3 target data directory,
-- $4 source port, $5 target node id, $6 target port, $7 source host.
CREATE OR REPLACE FUNCTION pgpool_recovery(script_name text, remote_host text, remote_data_directory text,
                                           primary_port text, remote_node integer, remote_port text,
                                           primary_host text)
RETURNS bool LANGUAGE sql STRICT
AS $$ SELECT pgpool_py_run_script('pgpool_recovery', script_name,
        ARRAY[current_setting('data_directory'), remote_host, remote_data_directory, primary_port,
              remote_node::text, remote_port, primary_host]) $$;

-- The shorter forms of older pgpool-II versions pass a prefix of the same arguments.
CREATE OR REPLACE FUNCTION pgpool_recovery(script_name text, remote_host text, remote_data_directory text,
                                           primary_port text, remote_node integer, remote_port text)
RETURNS bool LANGUAGE sql STRICT
AS $$ SELECT pgpool_py_run_script('pgpool_recovery', script_name,
        ARRAY[current_setting('data_directory'), remote_host, remote_data_directory, primary_port,
              remote_node::text, remote_port]) $$;

CREATE OR REPLACE FUNCTION pgpool_recovery(script_name text, remote_host text, remote_data_directory text,
                                           primary_port text, remote_node integer)
RETURNS bool LANGUAGE sql STRICT
AS $$ SELECT pgpool_py_run_script('pgpool_recovery', script_name,
        ARRAY[current_setting('data_directory'), remote_host, remote_data_directory, primary_port,
              remote_node::text]) $$;

CREATE OR REPLACE FUNCTION pgpool_recovery(script_name text, remote_host text, remote_data_directory text,
                                           primary_port text)
RETURNS bool LANGUAGE sql STRICT
AS $$ SELECT pgpool_py_run_script('pgpool_recovery', script_name,
        ARRAY[current_setting('data_directory'), remote_host, remote_data_directory, primary_port]) $$;

CREATE OR REPLACE FUNCTION pgpool_recovery(script_name text, remote_host text, remote_data_directory text)
RETURNS bool LANGUAGE sql STRICT
AS $$ SELECT pgpool_py_run_script('pgpool_recovery', script_name,
        ARRAY[current_setting('data_directory'), remote_host, remote_data_directory]) $$;

-- Runs "$PGDATA/pgpool_remote_start <remote_host> <remote_data_directory>" (the name is fixed).
CREATE OR REPLACE FUNCTION pgpool_remote_start(remote_host text, remote_data_directory text)
RETURNS bool LANGUAGE sql STRICT
AS $$ SELECT pgpool_py_run_script('pgpool_remote_start', 'pgpool_remote_start',
        ARRAY[remote_host, remote_data_directory]) $$;
