"""The shared-memory views the relay writes through, against the structures others read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgpool_py.config.params import MAX_BACKENDS
from pgpool_py.shmem.layout import STATEMENT_COUNTERS, ChildStatus, SharedState


@pytest.fixture
def shm() -> Iterator[SharedState]:
    state = SharedState(4, 2)
    yield state
    state._lockfile.close()


def test_a_status_cell_is_that_child_s_status_field(shm: SharedState) -> None:
    cells, index = shm.cell(shm.procs[2], "status")
    cells[index] = ChildStatus.IDLE_IN_TRANS
    assert [p.status for p in shm.procs] == [0, 0, ChildStatus.IDLE_IN_TRANS, 0]
    assert shm.procs[2].pid == 0 and shm.procs[2].need_to_restart is False  # its neighbours untouched


def test_counter_cells_are_each_child_s_counters_and_the_show_commands_add_them_up(shm: SharedState) -> None:
    error = STATEMENT_COUNTERS.index("error_cnt")
    select = STATEMENT_COUNTERS.index("select_cnt")
    shm.counter_cells[shm.counter_base(0, 1) + select] += 2
    shm.counter_cells[shm.counter_base(2, 1) + select] += 3
    shm.counter_cells[shm.counter_base(2, 1) + error] += 1
    shm.counter_cells[shm.counter_base(1, MAX_BACKENDS - 1) + select] += 7
    assert shm.counters[2 * MAX_BACKENDS + 1].select_cnt == 3
    assert shm.statement_counts(1) == {**dict.fromkeys(STATEMENT_COUNTERS, 0), "select_cnt": 5, "error_cnt": 1}
    assert shm.statement_counts(MAX_BACKENDS - 1)["select_cnt"] == 7
    assert shm.statement_counts(0) == dict.fromkeys(STATEMENT_COUNTERS, 0)


def test_cells_of_each_scalar_type_are_their_connection_info_fields(shm: SharedState) -> None:
    info = shm.conn(1, 1, 2)
    cells = {name: shm.cell(info, name) for name in ("counter", "client_key", "client_connection_time", "connected")}
    for name, value in (("counter", 7), ("client_key", 0xFFFF_FFFE), ("client_connection_time", 1234.5),
                        ("connected", True)):
        array, index = cells[name]
        array[index] = value
    assert (info.counter, info.client_key, info.client_connection_time, info.connected) == (7, 0xFFFF_FFFE, 1234.5, True)
    # The fields around them, and the same block of the other connections, are untouched.
    assert (info.pid, info.key, info.create_time, info.client_disconnection_time, info.in_use) == (0, 0, 0.0, 0.0, False)
    others = [shm.conn(c, p, n) for c in range(4) for p in range(2) for n in range(MAX_BACKENDS) if (c, p, n) != (1, 1, 2)]
    assert not any(o.counter or o.client_key or o.client_connection_time or o.connected for o in others)


def test_weights_are_the_backend_weight_fields(shm: SharedState) -> None:
    shm.backends[0].weight, shm.backends[1].weight, shm.backends[2].weight = 1.0, 0.0, 2.5
    assert shm.weights([0, 1, 2]) == {0: 1.0, 1: 0.0, 2: 2.5}
    assert shm.weights([2]) == {2: 2.5}
