"""
pgpool-py's PCP client: the wire codec, a client library and the pcp_* tools.

This package never imports ``pgpool_py``: the tools stay light (like pgpool-II's libpcp), and
the server side imports ``pcp.protocol`` and ``pcp.types`` for the wire contract.
"""

from __future__ import annotations

from pcp.client import PcpConnection
from pcp.errors import PcpAuthError, PcpConnectionError, PcpError, PcpProtocolError
from pcp.protocol import PCP_COMPAT_VERSION
from pcp.types import HealthCheckStats, NodeInfo, PoolStatusItem, ProcessInfo, WatchdogInfo

__all__ = [
    "PCP_COMPAT_VERSION",
    "HealthCheckStats",
    "NodeInfo",
    "PcpAuthError",
    "PcpConnection",
    "PcpConnectionError",
    "PcpError",
    "PcpProtocolError",
    "PoolStatusItem",
    "ProcessInfo",
    "WatchdogInfo",
]
