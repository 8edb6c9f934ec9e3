"""
Asking main for a cluster-wide change (pgpool-II's ``register_node_operation_request``): put the
request in the ring in shared memory, then ring main's doorbell with SIGUSR1.  Health checks,
children and PCP workers all come through here; main alone applies the change.
"""

from __future__ import annotations

import logging
import os
import signal

from pgpool_py.shmem.layout import RequestDetail, RequestKind, SharedState

log = logging.getLogger(__name__)


def register_node_operation_request(
    shm: SharedState,
    main_pid: int,
    kind: RequestKind,
    node_ids: tuple[int, ...],
    details: RequestDetail = RequestDetail.NONE,
) -> bool:
    """Queue ``kind`` for ``node_ids`` and wake main; False when the queue is full."""
    if not shm.enqueue_request(kind, node_ids, details):
        log.warning(
            "failover request queue is full; %s for node %s not queued", kind.name,
            ",".join(map(str, node_ids)),
        )
        return False
    try:
        os.kill(main_pid, signal.SIGUSR1)
    except ProcessLookupError:
        return False
    return True
