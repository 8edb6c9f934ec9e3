"""The PCP server process (being written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgpool_py.child.child import RuntimePaths
    from pgpool_py.config import Config
    from pgpool_py.shmem.layout import SharedState


def run_pcp_server(cfg: Config, shm: SharedState, paths: RuntimePaths, main_pid: int) -> int:
    from pgpool_py.process import ExitCode

    return ExitCode.NO_RESTART
