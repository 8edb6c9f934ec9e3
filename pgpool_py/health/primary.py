"""
Which node is the streaming-replication primary (pgpool-II's ``find_primary_node`` and
``verify_backend_node_status``).

A node flagged ALWAYS_PRIMARY wins outright.  Otherwise each valid node is asked
``pg_is_in_recovery()`` as ``sr_check_user``: ``f`` is a primary, ``t`` a standby.  With
``detach_false_primary`` a second primary is "false" unless every standby streams from it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from psycopg.conninfo import conninfo_to_dict

from pgpool_py.config import Config
from pgpool_py.config.params import BackendFlag
from pgpool_py.errors import PgError
from pgpool_py.health.probe import Target, Waker, query
from pgpool_py.shmem.layout import Role, SharedState
from pgpool_py.tls import libpq_params

log = logging.getLogger(__name__)

DEFAULT_PROBE_TIMEOUT = 10.0  # connect_timeout = 0: still never wait forever for one node
SEARCH_RETRY_INTERVAL = 1.0


def sr_target(cfg: Config, shm: SharedState, node: int) -> Target:
    b = shm.backends[node]
    return Target(b.hostname.decode(), b.port, cfg.sr_check_user, cfg.sr_check_password, cfg.sr_check_database,
                  tuple(libpq_params(cfg).items()))


def probe_timeout(cfg: Config) -> float:
    return cfg.connect_timeout / 1000.0 if cfg.connect_timeout > 0 else DEFAULT_PROBE_TIMEOUT


class SearchStopped(Exception):
    """Raised by a waker to end a search at once (main got a shutdown request)."""


def node_roles(
    cfg: Config, shm: SharedState, nodes: list[int], waker: Waker | None = None,
    reported: dict[int, str] | None = None,
) -> dict[int, Role]:
    """
    The live role of each reachable node in ``nodes``; also recorded as its pg_role.

    With ``reported`` (node -> last reason warned about), why a node did not answer is a
    WARNING the first time and whenever it changes, not once per retry.
    """
    roles: dict[int, Role] = {}
    for node in nodes:
        try:
            rows = query(sr_target(cfg, shm, node), "SELECT pg_is_in_recovery()", probe_timeout(cfg), waker)
        except PgError as exc:
            reason = " ".join(exc.message.split())  # libpq's messages span lines
            if reported is not None and reported.get(node) != reason:
                reported[node] = reason
                log.warning('find_primary_node: node %d did not answer as sr_check_user "%s": %s',
                            node, cfg.sr_check_user, reason)
            else:
                log.debug("find_primary_node: node %d not reachable: %s", node, reason)
            continue
        if reported is not None:
            reported.pop(node, None)
        roles[node] = Role.STANDBY if rows and rows[0][0] == "t" else Role.PRIMARY
        shm.backends[node].pg_role = int(roles[node])
    return roles


def find_primary_node(
    cfg: Config, shm: SharedState, waker: Waker | None = None, reported: dict[int, str] | None = None
) -> int:
    """The primary's node id, or -1 when none of the valid nodes is a primary."""
    nodes = shm.valid_nodes()
    for node in nodes:
        if shm.backends[node].flag & BackendFlag.ALWAYS_PRIMARY:
            return node
    roles = node_roles(cfg, shm, nodes, waker, reported)
    primaries = [n for n, r in roles.items() if r == Role.PRIMARY]
    if not primaries:
        return -1
    if len(primaries) > 1:
        found = ",".join(map(str, primaries))
        false = false_primaries(cfg, shm, roles, waker) if cfg.detach_false_primary else []
        primaries = [p for p in primaries if p not in false]
        log.warning("find_primary_node: nodes %s are all primaries; using node %d", found, primaries[0])
    log.info("find_primary_node: primary node is %d", primaries[0])
    return primaries[0]


def find_primary_node_repeatedly(
    cfg: Config, shm: SharedState, sleep: Callable[[float], None] = time.sleep, waker: Waker | None = None
) -> int:
    """
    find_primary_node, retried every second for search_primary_node_timeout (0 = forever).

    ``sleep`` and ``waker`` may raise SearchStopped to end the search (left to the caller).
    """
    if shm.req.follow_primary_ongoing:
        return int(shm.req.primary_node_id)  # follow_primary_command is rebuilding the standbys
    timeout = cfg.search_primary_node_timeout
    deadline = time.monotonic() + timeout
    reported: dict[int, str] = {}
    while True:
        if not shm.valid_nodes():
            log.info("find_primary_node_repeatedly: all of the backends are down")
            return -1
        primary = find_primary_node(cfg, shm, waker, reported)
        if primary >= 0:
            return primary
        if timeout > 0 and time.monotonic() >= deadline:
            log.warning("find_primary_node_repeatedly: no primary found within search_primary_node_timeout "
                        "(%d s)", timeout)
            return -1
        log.debug("find_primary_node_repeatedly: waiting for finding a primary node")
        sleep(SEARCH_RETRY_INTERVAL)


def false_primaries(cfg: Config, shm: SharedState, roles: dict[int, Role], waker: Waker | None = None) -> list[int]:
    """
    Primaries to detach when there is more than one: those that do not own every standby,
    provided exactly one does.  With no standby, all but the current (else the lowest) primary.
    """
    primaries = sorted(n for n, r in roles.items() if r == Role.PRIMARY)
    if len(primaries) < 2:
        return []
    standbys = sorted(n for n, r in roles.items() if r == Role.STANDBY)
    if not standbys:
        current = int(shm.req.primary_node_id)
        keep = current if current in primaries else primaries[0]
        return [p for p in primaries if p != keep]
    upstream = {s: _upstream(cfg, shm, s, primaries, waker) for s in standbys}
    true = [p for p in primaries if all(upstream[s] == p for s in standbys)]
    if len(true) != 1:
        return []
    return [p for p in primaries if p != true[0]]


def _upstream(cfg: Config, shm: SharedState, standby: int, primaries: list[int], waker: Waker | None) -> int:
    """The primary whose backend_hostname/port the standby's WAL receiver streams from, or -1."""
    sql = "SELECT status, conninfo FROM pg_stat_wal_receiver"
    try:
        rows = query(sr_target(cfg, shm, standby), sql, probe_timeout(cfg), waker)
    except PgError as exc:
        log.debug("verify_backend_node_status: node %d: %s", standby, exc.message)
        return -1
    if not rows or rows[0][0] != "streaming" or rows[0][1] is None:
        return -1
    try:
        params = conninfo_to_dict(rows[0][1])
    except Exception:  # psycopg.ProgrammingError on an unparsable string
        return -1
    host, port = str(params.get("host", "")), int(str(params.get("port") or 5432))
    for p in primaries:
        b = shm.backends[p]
        if b.port == port and hosts_match(b.hostname.decode(), host):
            return p
    return -1


def hosts_match(backend_host: str, conninfo_host: str) -> bool:
    """A socket directory in backend_hostname matches an empty host or localhost in primary_conninfo."""
    if backend_host.startswith("/"):
        return conninfo_host in ("", "localhost") or conninfo_host == backend_host
    return backend_host == conninfo_host
