"""
Failover, failback and promotion, run by main (pgpool-II's ``failover()``).

Main drains the request queue with ``switching`` set (children hold new clients meanwhile):

- NODE_DOWN / NODE_QUARANTINE: mark the nodes down, write pgpool_status, restart the children
  that used a failed standby (or every child when the primary failed or a timeout was the
  cause), run ``failover_command`` synchronously, find the new primary, and after a promotion
  fork the follow child that runs ``follow_primary_command`` for every node left down.
- NODE_UP: mark the node "waiting", run ``failback_command``, let children restart when idle.
- PROMOTE_NODE: make the node the primary and mark every other node down (for
  ``follow_primary_command``); with a switchover detail, detach the current primary first so
  that ``failover_command`` promotes the chosen node.
- CLOSE_IDLE: ask every child to close its idle pooled connections.

Commands run in main with ``system()`` semantics, as in pgpool-II: main is frozen while
``failover_command`` runs, so the script must not call back into pgpool-py.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from pgpool_py.config.params import BackendFlag
from pgpool_py.process import ProcessKind, spawn
from pgpool_py.shmem.layout import (
    VALID_STATUSES,
    BackendStatus,
    ChildStatus,
    NodeRequest,
    RequestDetail,
    RequestKind,
    SharedState,
)
from pgpool_py.signals import send

if TYPE_CHECKING:
    from pgpool_py.config import Config
    from pgpool_py.main import Main

log = logging.getLogger(__name__)

# A child told to quit (SIGQUIT) leaves at its next wait; one that has not after this long is killed.
CHILD_EXIT_WAIT = 5.0
PLACEHOLDERS = "dhpDmHMPrRNS"
# %H %r %R %N %S of a node that does not exist: an empty argument for the shell, as in pgpool-II.
NO_NODE = '""'


def failover_allowed(shm: SharedState, node: int) -> bool:
    """DISALLOW_TO_FAILOVER in backend_flagN keeps a node attached whatever happens to it."""
    return not shm.backends[node].flag & BackendFlag.DISALLOW_TO_FAILOVER


# ---------------------------------------------------------------------- commands and placeholders


def expand_command(template: str, values: Mapping[str, str]) -> str:
    """pgpool-II's placeholder expansion: ``%x`` from ``values``, ``%%`` a percent, unknown ``%x`` dropped."""
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        letter = template[i + 1: i + 2]
        if letter == "%":
            out.append("%")
        elif letter in values:
            out.append(values[letter])
        i += 2
    return "".join(out)


def command_values(shm: SharedState, node: int, new_main: int, old_main: int, old_primary: int) -> dict[str, str]:
    """
    The placeholder values for the command run about ``node`` (see pgpool-facts §8.5).

    As in pgpool-II's trigger_failover_command, the host, port and data directory of a new
    main node or an old primary that does not exist (id -1) are a quoted empty string (``""``):
    the shell still passes an (empty) argument, so the arguments after it keep their places.
    """
    num_backends = int(shm.req.num_backends)

    def exists(n: int) -> bool:
        return 0 <= n < num_backends

    def host(n: int) -> str:
        return shm.backends[n].hostname.decode() if exists(n) else NO_NODE

    def port(n: int) -> str:
        return str(shm.backends[n].port) if exists(n) else NO_NODE

    def datadir(n: int) -> str:
        return shm.backends[n].data_directory.decode() if exists(n) else NO_NODE

    b = shm.backends[node]
    return {
        "d": str(node), "h": b.hostname.decode(), "p": str(b.port), "D": b.data_directory.decode(),
        "m": str(new_main), "H": host(new_main), "r": port(new_main), "R": datadir(new_main),
        "M": str(old_main), "P": str(old_primary), "N": host(old_primary), "S": port(old_primary),
    }


def run_command(what: str, template: str, values: Mapping[str, str]) -> int:
    """Run an expanded command with /bin/sh and wait for it; returns its exit status."""
    command = expand_command(template, values)
    log.info("execute command: %s", command)
    try:
        status = subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL).returncode
    except OSError as exc:
        log.error("%s could not be run: %s", what, exc.strerror)
        return -1
    if status != 0:
        log.warning("%s exited with status %d", what, status)
    return status


# ---------------------------------------------------------------------- request processing


@dataclass
class _Outcome:
    """What one pass over the queue changed, for the steps after it."""

    changed: bool = False
    failback: bool = False


def process_requests(main: Main) -> None:
    """SIGUSR1 in main: drain the request queue (pgpool-II's ``failover()``)."""
    shm = main.shm
    if main.stopping is not None:
        return
    outcome = _Outcome()
    shm.req.switching = True
    try:
        while (request := shm.dequeue_request()) is not None:
            if request.kind == RequestKind.CLOSE_IDLE:
                main._signal_children(signal.SIGUSR1)
            elif request.kind == RequestKind.NODE_UP:
                _failback(main, request, outcome)
            elif request.kind in (RequestKind.NODE_DOWN, RequestKind.NODE_QUARANTINE, RequestKind.PROMOTE_NODE):
                _failover(main, request, outcome)
            else:
                log.warning("ignoring request %s", request.kind.name)
    finally:
        shm.req.switching = False
    if outcome.changed:
        main.signal_aux("sr_check", signal.SIGUSR1)
    if outcome.failback:
        shm.req.pcp_wakeup_request = 1  # an online recovery waits for its failback
    # Wake children paused on `switching`, and the PCP process (and its workers).
    main._signal_children(signal.SIGUSR2)


def _valid_ids(shm: SharedState, request: NodeRequest) -> list[int]:
    out = []
    for node in request.node_ids:
        if 0 <= node < shm.req.num_backends and shm.backends[node].status != BackendStatus.UNUSED:
            out.append(node)
        else:
            log.warning("invalid node id %d in request %s", node, request.kind.name)
    return out


def _failback(main: Main, request: NodeRequest, outcome: _Outcome) -> None:
    shm, cfg = main.shm, main.cfg
    for node in _valid_ids(shm, request):
        b = shm.backends[node]
        if b.status != BackendStatus.DOWN:
            log.info("invalid failback request, status: [%d] of node id : %d is invalid for failback",
                     b.status, node)
            continue
        old_main, old_primary = int(shm.req.main_node_id), int(shm.req.primary_node_id)
        # pgpool-II passes PRIMARY_NODE_ID here: the main node when there is no primary (always
        # in native replication), so %P %N %S name a node that is up.
        primary_or_main = old_primary if old_primary >= 0 else old_main
        log.info("starting fail back. reconnect host %s(%d)", b.hostname.decode(), b.port)
        b.quarantine = False
        shm.set_backend_status(node, BackendStatus.CONNECT_WAIT)
        main._update_main_and_primary()
        main.write_status_file()
        if cfg.failback_command:
            run_command("failback_command", cfg.failback_command,
                        command_values(shm, node, int(shm.req.main_node_id), old_main, primary_or_main))
        streaming = cfg.clustering_mode == "streaming_replication"
        if streaming and old_primary >= 0 and old_primary != node and old_primary in shm.valid_nodes():
            # The primary is unchanged: children pick the node up when they are next idle.
            for index in range(len(main.children)):
                shm.procs[index].need_to_restart = True
        else:
            if streaming:
                shm.req.primary_node_id = main.search_primary()
                main._update_main_and_primary()
            restart_children(main, list(range(len(main.children))))
        start_missing_aux(main)
        outcome.changed = outcome.failback = True
        log.info("failback done. reconnect host %s(%d)", b.hostname.decode(), b.port)


def _failover(main: Main, request: NodeRequest, outcome: _Outcome) -> None:
    shm, cfg = main.shm, main.cfg
    streaming = cfg.clustering_mode == "streaming_replication"
    old_main, old_primary = int(shm.req.main_node_id), int(shm.req.primary_node_id)
    promote_node = -1
    targets = _valid_ids(shm, request)
    if request.kind == RequestKind.PROMOTE_NODE:
        if not targets or shm.backends[targets[0]].status == BackendStatus.DOWN:
            log.warning("promote request for node %s ignored: the node is not up", request.node_ids)
            return
        promote_node = targets[0]
        if not request.details & RequestDetail.PROMOTE:
            _promote_only(main, promote_node, old_main, old_primary)
            outcome.changed = True
            return
        # Switchover: detach the current primary; failover_command promotes promote_node.
        targets = [old_primary] if old_primary >= 0 and old_primary != promote_node else []
    downed = []
    for node in targets:
        b = shm.backends[node]
        if b.status not in VALID_STATUSES and not (
            request.kind == RequestKind.NODE_QUARANTINE and b.quarantine
        ):
            continue
        if not failover_allowed(shm, node) and request.kind != RequestKind.PROMOTE_NODE:
            log.warning("failover request for node %d canceled: backend_flag%d is DISALLOW_TO_FAILOVER", node, node)
            continue
        log.info("starting degeneration. shutdown host %s(%d)", b.hostname.decode(), b.port)
        b.quarantine = request.kind == RequestKind.NODE_QUARANTINE
        shm.set_backend_status(node, BackendStatus.DOWN)
        downed.append(node)
    if not downed:
        log.info("failover: no backends are degenerated")
        return
    outcome.changed = True
    main._update_main_and_primary()
    main.write_status_file()
    new_main = promote_node if promote_node >= 0 else int(shm.req.main_node_id)

    # Restart the children that can no longer work: only those using a failed standby when
    # pgpool-II would allow it (streaming, a refused connection or a detach, not the primary).
    partial = (
        streaming
        and bool(request.details & RequestDetail.SWITCHOVER)
        and request.kind != RequestKind.PROMOTE_NODE
        and old_primary not in downed
    )
    if partial:
        quit_now, when_idle = children_using(main, downed)
        for index in when_idle:
            shm.procs[index].need_to_restart = True
        restart_children(main, quit_now)
        log.info("failover: %d children restarted, %d restart when idle", len(quit_now), len(when_idle))
    else:
        restart_children(main, list(range(len(main.children))))

    if request.kind != RequestKind.NODE_QUARANTINE and cfg.failover_command:
        for node in downed:
            run_command("failover_command", cfg.failover_command,
                        command_values(shm, node, new_main, old_main, old_primary))

    if not streaming:
        new_primary = old_primary
    elif promote_node >= 0:
        new_primary = promote_node
    elif old_primary in downed and request.kind == RequestKind.NODE_QUARANTINE:
        new_primary = -1
    elif old_primary >= 0 and old_primary not in downed:
        new_primary = old_primary  # a standby failed: the primary stays
    else:
        new_primary = main.search_primary()
    shm.req.primary_node_id = new_primary
    main._update_main_and_primary()

    if streaming and new_primary >= 0 and (
        (cfg.follow_primary_command and (old_primary in downed or old_primary < 0)) or promote_node >= 0
    ) and new_primary != old_primary:
        start_follow_primary(main, new_primary, old_primary)
    if promote_node >= 0:
        p = shm.backends[promote_node]
        log.info("promotion done. promoted host %s(%d)", p.hostname.decode(), p.port)
    for node in downed:
        b = shm.backends[node]
        log.info("failover done. shutdown host %s(%d)", b.hostname.decode(), b.port)


def _promote_only(main: Main, node: int, old_main: int, old_primary: int) -> None:
    """
    pcp_promote_node without --switchover: pgpool-py takes the node for the primary and, as
    pgpool-II does, marks every other node down (nothing is done to PostgreSQL); with
    follow_primary_command set, that command then runs for them.
    """
    shm = main.shm
    shm.req.primary_node_id = node
    start_follow_primary(main, node, old_primary)
    restart_children(main, list(range(len(main.children))))
    log.info("promotion done. promoted host %s(%d)", shm.backends[node].hostname.decode(), shm.backends[node].port)


# ---------------------------------------------------------------------- children


def children_using(main: Main, nodes: list[int]) -> tuple[list[int], list[int]]:
    """
    Children with a connection to one of ``nodes`` or load-balancing to one: (quit now, restart
    when idle).  Those serving a client whose load-balance node failed, and idle ones, quit now;
    a session on a live load-balance node may finish first.
    """
    shm = main.shm
    failed = set(nodes)
    quit_now: list[int] = []
    when_idle: list[int] = []
    for index in range(len(main.children)):
        proc = shm.procs[index]
        uses = False
        session_lb_failed = False
        for pool in range(shm.max_pool):
            for node in range(shm.req.num_backends):
                info = shm.conn(index, pool, node)
                if not info.in_use:
                    continue
                if node in failed or info.load_balancing_node in failed:
                    uses = True
                    if pool == proc.current_pool and info.load_balancing_node in failed:
                        session_lb_failed = True
        if not uses:
            continue
        in_session = proc.current_pool >= 0 and proc.status != ChildStatus.WAIT_FOR_CONNECT
        (when_idle if in_session and not session_lb_failed else quit_now).append(index)
    return quit_now, when_idle


def restart_children(main: Main, indexes: list[int]) -> None:
    """SIGQUIT the children at ``indexes``, wait for them (bounded), and fork their successors."""
    if main.stopping is not None:
        return
    quitting: dict[int, int] = {}
    for index in indexes:
        pid = main.children[index].pid
        if pid:
            send(pid, signal.SIGQUIT)
            quitting[index] = pid
    deadline = time.monotonic() + CHILD_EXIT_WAIT
    for index, pid in quitting.items():
        _reap(pid, deadline)
        main.pid_to_child.pop(pid, None)
    for index in indexes:
        main._spawn_child(index)


def _reap(pid: int, deadline: float) -> None:
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() >= deadline:
            log.warning("child process %d did not exit on SIGQUIT; killing it", pid)
            send(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return
        time.sleep(0.01)


# ---------------------------------------------------------------------- helpers


def start_missing_aux(main: Main) -> None:
    """Fork the helper processes the configuration asks for that are not running (after a
    reload or a failback: a health check for a node that came back, a newly enabled one)."""
    for aux in main._aux_processes():
        current = main.aux.get(aux.name)
        if current is None:
            main.aux[aux.name] = aux
            main._spawn_aux(aux)
        elif not current.pid:
            main._spawn_aux(current)


def start_follow_primary(main: Main, new_primary: int, old_primary: int) -> None:
    """Mark every node but the new primary down and fork the follow child for them."""
    shm, cfg = main.shm, main.cfg
    for node in shm.valid_nodes():
        if node != new_primary:
            shm.set_backend_status(node, BackendStatus.DOWN)
    main._update_main_and_primary()
    main.write_status_file()
    if not cfg.follow_primary_command:
        return
    shm.req.follow_primary_ongoing = True
    spawn(ProcessKind.FOLLOW_CHILD, lambda: run_follow_primary(cfg, shm, new_primary, old_primary),
          title="follow primary", before_run=lambda: main._after_fork(keep=[]))


def run_follow_primary(cfg: Config, shm: SharedState, new_primary: int, old_primary: int) -> int:
    """The follow child: follow_primary_command for each node that is down, one after another."""
    try:
        down = [n for n in range(shm.req.num_backends) if shm.backends[n].status == BackendStatus.DOWN]
        for node in down:
            run_command("follow_primary_command", cfg.follow_primary_command,
                        command_values(shm, node, new_primary, old_primary, old_primary))
        log.info("follow primary done: %d node(s)", len(down))
    finally:
        shm.req.follow_primary_ongoing = False
    return 0
