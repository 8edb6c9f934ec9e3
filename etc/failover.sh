#!/bin/sh
# pgpool-py sample failover_command (streaming replication): when the primary fails, promote
# the new main node.  A failed standby needs nothing.
#
# pgpool.conf:
#   failover_command = '/path/to/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S'
#
# pgpool-py runs it synchronously in its main process (as pgpool-II does): it must not call
# pgpool-py (no pcp_* commands) and should finish quickly.  It runs as the OS user of
# pgpool-py; PostgreSQL commands run as $PG_USER (through runuser when that is root).  On one
# machine it works as is; for a new main on another host it runs pg_ctl there with ssh, which
# needs passwordless ssh to $SSH_USER@<host>.
set -u

FAILED_NODE_ID=$1
FAILED_NODE_HOST=$2
FAILED_NODE_PORT=$3
FAILED_NODE_PGDATA=$4
NEW_MAIN_NODE_ID=$5
NEW_MAIN_NODE_HOST=$6
OLD_MAIN_NODE_ID=$7
OLD_PRIMARY_NODE_ID=$8
NEW_MAIN_NODE_PORT=$9
NEW_MAIN_NODE_PGDATA=${10}
OLD_PRIMARY_NODE_HOST=${11:-}
OLD_PRIMARY_NODE_PORT=${12:-}

# Settings; each may also come from the environment.
PG_USER=${PG_USER:-postgres}            # OS user that runs PostgreSQL
SSH_USER=${SSH_USER:-$PG_USER}
SSH_OPTIONS=${SSH_OPTIONS:--o BatchMode=yes -o StrictHostKeyChecking=no}
# PostgreSQL's binaries: $PGBIN, else the newest /usr/lib/postgresql/*/bin, else $PATH.
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PGBIN=${PGBIN:-$(dirname "$(command -v pg_ctl)")}

log() { echo "failover.sh: $*"; }

# A command as the PostgreSQL OS user on host $1: here, or over ssh.
on_host() {
    host=$1
    shift
    case $host in
        "" | /* | localhost | 127.* | ::1 | "$(hostname)")
            if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$PG_USER" -- "$@"); else "$@"; fi ;;
        *) ssh -T $SSH_OPTIONS "$SSH_USER@$host" "$*" ;;
    esac
}

log "failed node $FAILED_NODE_ID ($FAILED_NODE_HOST:$FAILED_NODE_PORT $FAILED_NODE_PGDATA);" \
    "old main $OLD_MAIN_NODE_ID, old primary $OLD_PRIMARY_NODE_ID ($OLD_PRIMARY_NODE_HOST:$OLD_PRIMARY_NODE_PORT)," \
    "new main $NEW_MAIN_NODE_ID ($NEW_MAIN_NODE_HOST:$NEW_MAIN_NODE_PORT)"

if [ "$NEW_MAIN_NODE_ID" -lt 0 ]; then
    log "no node is left; nothing to promote"
    exit 0
fi
if [ "$OLD_PRIMARY_NODE_ID" != "-1" ] && [ "$FAILED_NODE_ID" != "$OLD_PRIMARY_NODE_ID" ]; then
    log "a standby failed; the primary stays"
    exit 0
fi

log "promoting node $NEW_MAIN_NODE_ID ($NEW_MAIN_NODE_PGDATA)"
if ! on_host "$NEW_MAIN_NODE_HOST" "$PGBIN/pg_ctl" -D "$NEW_MAIN_NODE_PGDATA" -w -t 60 promote; then
    log "promotion of node $NEW_MAIN_NODE_ID failed"
    exit 1
fi
log "node $NEW_MAIN_NODE_ID is the new primary"
exit 0
