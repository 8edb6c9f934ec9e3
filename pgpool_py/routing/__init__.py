"""Routing: query classification (``classify``) for load balancing and replication."""

from __future__ import annotations

from pgpool_py.routing.classify import (
    POOL_SHOW_NAMES,
    Classifier,
    Dest,
    PoolCommand,
    RoutingSettings,
    StatementKind,
    Verdict,
    addressed_to_pgpool_bytes,
    is_pool_command,
    parse_pool_command,
)

__all__ = [
    "POOL_SHOW_NAMES",
    "Classifier",
    "Dest",
    "PoolCommand",
    "RoutingSettings",
    "StatementKind",
    "Verdict",
    "addressed_to_pgpool_bytes",
    "is_pool_command",
    "parse_pool_command",
]
