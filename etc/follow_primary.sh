#!/bin/sh
# pgpool-py sample follow_primary_command (streaming replication): after a promotion, make a
# standby follow the new primary (pg_rewind, or a new base backup when rewinding fails),
# start it and attach it again with pcp_attach_node.
#
# pgpool.conf:
#   follow_primary_command = '/path/to/follow_primary.sh %d %h %p %D %m %H %M %P %r %R'
#
# pgpool-py runs it in a separate process for every node left down after the promotion,
# one at a time, so it may call pcp_* commands.  PostgreSQL commands run as $PG_USER
# (through runuser when we are root) on this machine, or over ssh as $SSH_USER@<node host>.
# pcp_attach_node reads the PCP password from $PCPPASSFILE (or ~/.pcppass).
set -u

NODE_ID=$1
NODE_HOST=$2
NODE_PORT=$3
NODE_PGDATA=$4
NEW_PRIMARY_NODE_ID=$5
NEW_PRIMARY_NODE_HOST=$6
OLD_MAIN_NODE_ID=$7
OLD_PRIMARY_NODE_ID=$8
NEW_PRIMARY_NODE_PORT=$9
NEW_PRIMARY_NODE_PGDATA=${10}

# Settings; each may also come from the environment.
PG_USER=${PG_USER:-postgres}                       # OS user that runs PostgreSQL
REPL_USER=${REPL_USER:-postgres}                   # replication user on the new primary
APPLICATION_NAME=${APPLICATION_NAME:-server$NODE_ID}  # = backend_application_name<id>
PCP_HOST=${PCP_HOST:-localhost}
PCP_PORT=${PCP_PORT:-9898}
PCP_USER=${PCP_USER:-postgres}
PCP_ATTACH_NODE=${PCP_ATTACH_NODE:-pcp_attach_node}
LOGFILE=${LOGFILE:-/dev/null}                      # server log of the restarted standby
SSH_USER=${SSH_USER:-$PG_USER}
SSH_OPTIONS=${SSH_OPTIONS:--o BatchMode=yes -o StrictHostKeyChecking=no}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PGBIN=${PGBIN:-$(dirname "$(command -v pg_ctl)")}

log() { echo "follow_primary.sh: $*"; }

# A shell command as the PostgreSQL OS user on the node's host: here, or over ssh.
on_node() {
    case $NODE_HOST in
        "" | /* | localhost | 127.* | ::1 | "$(hostname)")
            if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$PG_USER" -- sh -c "$1"); else sh -c "$1"; fi ;;
        *) ssh -T $SSH_OPTIONS "$SSH_USER@$NODE_HOST" "$1" ;;
    esac
}

if [ "$NODE_ID" = "$NEW_PRIMARY_NODE_ID" ]; then
    exit 0
fi
if ! "$PGBIN/pg_isready" -q -h "$NODE_HOST" -p "$NODE_PORT"; then
    log "node $NODE_ID is not running; skipping it"
    exit 0
fi
log "node $NODE_ID follows the new primary $NEW_PRIMARY_NODE_ID ($NEW_PRIMARY_NODE_HOST:$NEW_PRIMARY_NODE_PORT)"

SOURCE="host=$NEW_PRIMARY_NODE_HOST port=$NEW_PRIMARY_NODE_PORT user=$REPL_USER dbname=postgres"
# pg_rewind reads the new timeline from the control file, which a checkpoint brings up to date.
"$PGBIN/psql" -XAtq -d "$SOURCE" -c "CHECKPOINT" || log "CHECKPOINT on the new primary failed"

# Both ways copy the new primary's configuration files: restore this node's port, then make it
# a standby of the new primary.
STANDBY_SETUP="
    echo \"port = $NODE_PORT\" >> '$NODE_PGDATA/postgresql.conf'
    echo \"primary_conninfo = 'host=$NEW_PRIMARY_NODE_HOST port=$NEW_PRIMARY_NODE_PORT user=$REPL_USER application_name=$APPLICATION_NAME'\" >> '$NODE_PGDATA/postgresql.auto.conf'
    echo \"recovery_target_timeline = 'latest'\" >> '$NODE_PGDATA/postgresql.auto.conf'
    touch '$NODE_PGDATA/standby.signal'
    '$PGBIN/pg_ctl' -D '$NODE_PGDATA' -l '$LOGFILE' -w -t 60 start
"

if ! on_node "
    set -e
    '$PGBIN/pg_ctl' -D '$NODE_PGDATA' -m fast -w stop
    '$PGBIN/pg_rewind' -D '$NODE_PGDATA' --source-server='$SOURCE'
    $STANDBY_SETUP
"; then
    log "pg_rewind of node $NODE_ID failed; taking a new base backup"
    if ! on_node "
        set -e
        '$PGBIN/pg_ctl' -D '$NODE_PGDATA' -m fast -w stop >/dev/null 2>&1 || true
        rm -rf '$NODE_PGDATA'
        '$PGBIN/pg_basebackup' -D '$NODE_PGDATA' -X stream -c fast -d '$SOURCE'
        $STANDBY_SETUP
    "; then
        log "node $NODE_ID could not be rebuilt"
        exit 1
    fi
fi

if ! "$PCP_ATTACH_NODE" -w -h "$PCP_HOST" -p "$PCP_PORT" -U "$PCP_USER" -n "$NODE_ID"; then
    log "pcp_attach_node for node $NODE_ID failed"
    exit 1
fi
log "node $NODE_ID is a standby of node $NEW_PRIMARY_NODE_ID again"
exit 0
