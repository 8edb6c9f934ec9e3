"""
pgpool.conf: the parameter table, loading and reload.

SHOW rows and the generated sample/docs live in ``pgpool_py.config.render``; it is not
imported here so that ``python -m pgpool_py.config.render`` runs it cleanly.
"""

from __future__ import annotations

from .loader import BackendConfig, Config, HealthCheckConfig, load_config, reload_config
from .params import MAX_BACKENDS, PARAMS, BackendFlag, Context, Kind, Param, lookup

__all__ = [
    "MAX_BACKENDS",
    "PARAMS",
    "BackendConfig",
    "BackendFlag",
    "Config",
    "Context",
    "HealthCheckConfig",
    "Kind",
    "Param",
    "load_config",
    "lookup",
    "reload_config",
]
