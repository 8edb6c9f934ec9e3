"""
Read pgpool.conf into an immutable ``Config``, and re-read it on reload.

The syntax is what pgpool-II's lexer (src/config/pool_config.l) accepts: one
``name = value`` or ``name value`` per line, ``#`` comments, values either
single-quoted or one bare word/number, ``include 'file'``.  Inside quotes ``''`` is
one quote; a backslash pair is kept as written, as pgpool keeps it (regular
expressions such as ``'\\d+'`` reach the routing code intact).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from pgpool_py.errors import ConfigError

from .params import DEFAULT_SOCKET_DIR, PARAMS, Context, Param, Value, lookup

log = logging.getLogger("pgpool_py.config")

COMMAND_LINE = "command line"
DEFAULT = "default"
_MAX_INCLUDE_DEPTH = 10  # pgpool's CONF_FILE_MAX_DEPTH
_KEY = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*")
_BARE_VALUE = re.compile(r"[^\s#']+")


class _Entry(NamedTuple):
    """One setting as written: the key, its raw value and where it came from ("file:line")."""

    key: str
    raw: str
    where: str


@dataclass(frozen=True, slots=True)
class BackendConfig:
    node_id: int
    hostname: str  # '' in the file means DEFAULT_SOCKET_DIR, as in pgpool
    port: int  # 0: the slot is unused
    weight: float
    weight_ratio: float  # share of load balancing among the used nodes; 0.0 for unused slots
    data_directory: str
    flag: int  # BackendFlag bits
    application_name: str

    @property
    def in_use(self) -> bool:
        return self.port != 0


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    period: int  # seconds; 0 = no health check
    timeout: int  # seconds
    user: str
    password: str
    database: str
    max_retries: int
    retry_delay: int  # seconds
    connect_timeout: int  # milliseconds


class Config:
    """
    An immutable snapshot of every parameter.

    ``cfg.num_init_children`` is a plain instance-dict hit: children read values in hot
    paths.  Per-node families are read through ``cfg.backends``, ``cfg.health_check(n)``
    or ``cfg.get(name, n)``.
    """

    path: str | None
    config_dir: str
    backends: tuple[BackendConfig, ...]
    clustering_mode: str  # backend_clustering_mode
    _slots: dict[str, dict[int, Value]]  # per-node values of their own (unset slots fall back)
    _sources: dict[str, str]  # "name" / "nameN" -> where it was set
    _overrides: dict[str, str]  # kept for reload
    _health: tuple[HealthCheckConfig, ...]
    # Restart-only changes a reload already reported: key -> the file's value, not yet in effect.
    _pending_restart: dict[str, Value]

    def __init__(
        self,
        values: Mapping[str, Value],
        slots: Mapping[str, Mapping[int, Value]],
        sources: Mapping[str, str],
        path: str | None,
        overrides: Mapping[str, str],
    ) -> None:
        attrs = self.__dict__
        attrs.update(values)
        attrs["_slots"] = {name: dict(slot) for name, slot in slots.items()}
        attrs["_sources"] = dict(sources)
        attrs["_overrides"] = dict(overrides)
        attrs["_pending_restart"] = {}
        attrs["path"] = path
        attrs["config_dir"] = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
        attrs["backends"] = self._make_backends()
        attrs["_health"] = tuple(self._make_health_check(b.node_id) for b in self.backends)
        # backend_clustering_mode, already resolved from the pgpool-II 4.1 spellings if those
        # were used; an attribute, not a property, as every session reads it.
        attrs["clustering_mode"] = attrs["backend_clustering_mode"]

    def __getattr__(self, name: str) -> Any:
        # Only reached when the instance dict has no such key.
        param = PARAMS.get(name)
        if param is not None and param.indexed:
            raise AttributeError(f'"{name}" is a per-node parameter: use cfg.get("{name}", node_id)')
        raise AttributeError(f'unknown configuration parameter "{name}"')

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Config is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Config is immutable")

    def __repr__(self) -> str:
        return f"<Config {self.path or '(no file)'}>"

    def with_session_values(self, values: Mapping[str, Value]) -> Config:
        """A copy with ``PGPOOL SET`` values on top (session-context parameters only)."""
        copy = object.__new__(Config)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(values)
        return copy

    def get(self, name: str, index: int | None = None) -> Value:
        """The value of ``name``, or of slot ``index`` of a per-node family."""
        param = PARAMS[name]
        if index is None or not param.indexed:
            value: Value = self.__dict__[name]
            return value
        slot = self._slots[name]
        if index in slot:
            return slot[index]
        return self.__dict__[name] if param.global_default else param.default

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from: "file:line", "default" or "command line"."""
        found = lookup(key)
        if found is None:
            raise KeyError(key)
        param, index = found
        canonical = param.name if index is None else f"{param.name}{index}"
        if canonical in self._sources:
            return str(self._sources[canonical])
        if index is not None and param.global_default:
            return str(self._sources.get(param.name, DEFAULT))
        return DEFAULT

    def set_slots(self, name: str) -> tuple[int, ...]:
        """The node indexes holding a value of their own for ``name`` (not the family default)."""
        return tuple(sorted(self._slots[name]))

    def health_check(self, node_id: int) -> HealthCheckConfig:
        """Health check settings of one node: health_check_*N over the un-indexed defaults."""
        if node_id < len(self._health):
            health: HealthCheckConfig = self._health[node_id]
            return health
        return self._make_health_check(node_id)

    def config_path(self, value: str) -> str:
        """A file name from the configuration (pool_passwd, pid_file_name...) made absolute."""
        return os.path.join(self.config_dir, value)

    def _make_backends(self) -> tuple[BackendConfig, ...]:
        named = set(self._slots["backend_hostname"]) | set(self._slots["backend_port"])
        count = max(named) + 1 if named else 0
        ports = [cast(int, self.get("backend_port", i)) for i in range(count)]
        weights = [cast(float, self.get("backend_weight", i)) for i in range(count)]
        used = [i for i in range(count) if ports[i]]
        total = sum(weights[i] for i in used)
        backends = []
        for i in range(count):
            if not ports[i]:
                ratio = 0.0
            elif total > 0:
                ratio = weights[i] / total
            else:
                ratio = 1.0 / len(used)  # all weights 0: share equally (pgpool divides by zero)
            backends.append(
                BackendConfig(
                    node_id=i,
                    hostname=str(self.get("backend_hostname", i)),
                    port=ports[i],
                    weight=weights[i],
                    weight_ratio=ratio,
                    data_directory=str(self.get("backend_data_directory", i)),
                    flag=cast(int, self.get("backend_flag", i)),
                    application_name=str(self.get("backend_application_name", i)),
                )
            )
        return tuple(backends)

    def _make_health_check(self, node_id: int) -> HealthCheckConfig:
        def get(name: str) -> Any:
            return self.get(name, node_id)

        return HealthCheckConfig(
            period=get("health_check_period"),
            timeout=get("health_check_timeout"),
            user=get("health_check_user"),
            password=get("health_check_password"),
            database=get("health_check_database"),
            max_retries=get("health_check_max_retries"),
            retry_delay=get("health_check_retry_delay"),
            connect_timeout=get("connect_timeout"),
        )


def load_config(path: str | None, overrides: Mapping[str, str] | None = None) -> Config:
    """
    Read ``path`` (None: defaults only), then apply ``overrides`` from the command line.

    Unknown keys are logged and skipped; any invalid value raises ConfigError.
    """
    overrides = dict(overrides or {})
    entries = _read_file(path) if path is not None else []
    for key, raw in overrides.items():
        if lookup(key) is None:
            raise ConfigError(f'{COMMAND_LINE}: unrecognized configuration parameter "{key}"')
        entries.append(_Entry(key, raw, COMMAND_LINE))
    values, slots, sources = _apply(entries)
    _resolve_clustering_mode(values, sources)
    for i, port in slots["backend_port"].items():
        # pgpool shows and uses the socket directory for an empty host of a used node.
        if port and not slots["backend_hostname"].get(i):
            slots["backend_hostname"][i] = DEFAULT_SOCKET_DIR
    cfg = Config(values, slots, sources, path, overrides)
    _check(cfg, path)
    for b in cfg.backends:
        if not b.in_use and b.node_id in cfg.set_slots("backend_hostname"):
            log.warning(
                "%s: backend_hostname%d is set but backend_port%d is not: node %d is unused",
                cfg.source(f"backend_hostname{b.node_id}"), b.node_id, b.node_id, b.node_id,
            )
    return cfg


def reload_config(old: Config, path: str | None = None) -> tuple[Config, list[str]]:
    """
    Re-read the file (default: the one ``old`` came from) with the same command-line overrides.

    Changed reloadable parameters are taken.  A changed restart-only parameter, or the
    host/port of a node already in use, keeps its old value and yields a warning, once: a
    later reload that finds the same value again says nothing more.  Any ConfigError rejects
    the whole reload.
    """
    new = load_config(path if path is not None else old.path, old._overrides)
    values = {name: new.__dict__[name] for name in PARAMS if name in new.__dict__}
    slots = {name: dict(slot) for name, slot in new._slots.items()}
    sources = dict(new._sources)
    warnings: list[str] = []
    pending: dict[str, Value] = {}

    def keep_old(key: str, wanted: Value) -> None:
        if old._pending_restart.get(key, _UNSET) != wanted:
            warnings.append(f'parameter "{key}" cannot be changed without restarting pgpool-py')
        pending[key] = wanted
        if key in old._sources:
            sources[key] = old._sources[key]
        else:
            sources.pop(key, None)

    for name, param in PARAMS.items():
        if param.context < Context.RELOAD and not param.indexed and values[name] != old.__dict__[name]:
            keep_old(name, values[name])
            values[name] = old.__dict__[name]
    for backend in old.backends:
        if not backend.in_use:
            continue
        for name in ("backend_hostname", "backend_port"):
            i = backend.node_id
            if new.get(name, i) != old.get(name, i):
                keep_old(f"{name}{i}", new.get(name, i))
                slots[name].pop(i, None)
                if i in old._slots[name]:
                    slots[name][i] = old._slots[name][i]
    merged = Config(values, slots, sources, new.path, old._overrides)
    _check(merged, new.path)
    merged.__dict__["_pending_restart"] = pending
    return merged, warnings


_UNSET = object()


def _read_file(path: str, depth: int = 0) -> list[_Entry]:
    """The settings of a pgpool.conf file in order, following ``include``."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f'could not open configuration file "{path}": {e.strerror}') from e
    entries: list[_Entry] = []
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        parsed = _parse_line(line, where)
        if parsed is None:
            continue
        key, raw = parsed
        _check_utf8(key, where)
        _check_utf8(raw, where)
        if key != "include":
            entries.append(_Entry(key, raw, where))
            continue
        if depth >= _MAX_INCLUDE_DEPTH:
            raise ConfigError(f"{where}: could not include \"{raw}\": include files nested too deeply")
        included = raw if os.path.isabs(raw) else os.path.join(os.path.dirname(path), raw)
        entries.extend(_read_file(included, depth + 1))
    return entries


def _check_utf8(text: str, where: str) -> None:
    """Reject bytes that are not UTF-8 in a setting (comments may hold any): the file is read
    with surrogateescape, and a lone surrogate in a value fails later, wherever it is encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("utf-8", "surrogateescape")
        shown = " ".join(f"0x{byte:02x}" for byte in bad)
        raise ConfigError(f'{where}: invalid byte sequence for encoding "UTF8": {shown}') from None


def _parse_line(line: str, where: str) -> tuple[str, str] | None:
    """(key, raw value) of one line, or None for a blank or comment line."""
    pos = _skip_blanks(line, 0)
    if pos == len(line) or line[pos] == "#":
        return None
    match = _KEY.match(line, pos)
    if match is None:
        raise ConfigError(f"{where}: syntax error near \"{line[pos:].strip()}\"")
    key = match.group()
    pos = _skip_blanks(line, match.end())
    if pos < len(line) and line[pos] == "=":
        pos = _skip_blanks(line, pos + 1)
    if pos == len(line) or line[pos] == "#":
        raise ConfigError(f'{where}: syntax error: parameter "{key}" has no value')
    if line[pos] == "'":
        raw, pos = _quoted(line, pos, where)
    else:
        bare = _BARE_VALUE.match(line, pos)
        if bare is None:
            raise ConfigError(f"{where}: syntax error near \"{line[pos:].strip()}\"")
        raw, pos = bare.group(), bare.end()
    pos = _skip_blanks(line, pos)
    if pos < len(line) and line[pos] != "#":
        raise ConfigError(f"{where}: syntax error near \"{line[pos:].strip()}\"")
    return key, raw


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t\r\f\v":
        pos += 1
    return pos


def _quoted(line: str, pos: int, where: str) -> tuple[str, int]:
    """The text of the quoted string starting at ``line[pos]`` and the position after it."""
    out: list[str] = []
    i = pos + 1
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
        elif char == "'":
            if line.startswith("''", i):
                out.append("'")
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise ConfigError(f"{where}: syntax error: unterminated quoted string")


def _apply(
    entries: list[_Entry],
) -> tuple[dict[str, Value], dict[str, dict[int, Value]], dict[str, str]]:
    """Defaults, then every entry in order (a later one wins): values, per-node slots and sources."""
    values: dict[str, Value] = {}
    slots: dict[str, dict[int, Value]] = {}
    for param in PARAMS.values():
        if param.indexed:
            slots[param.name] = {}
        if not param.indexed or param.global_default:
            values[param.name] = param.default
    sources: dict[str, str] = {}
    for key, raw, where in entries:
        found = lookup(key)
        if found is None:
            log.warning('%s: unrecognized configuration parameter "%s"', where, key)
            continue
        param, index = found
        value = _parse(param, key, raw, where)
        if index is None:
            if param.indexed and not param.global_default:
                raise ConfigError(f'{where}: parameter "{key}" needs a node index, e.g. "{key}0"')
            values[param.name] = value
            sources[param.name] = where
        else:
            if index >= param.indexed:
                raise ConfigError(
                    f'{where}: invalid node index in parameter "{key}" (allowed: 0 .. {param.indexed - 1})'
                )
            slots[param.name][index] = value
            sources[f"{param.name}{index}"] = where
    return values, slots, sources


def _parse(param: Param, key: str, raw: str, where: str) -> Value:
    try:
        return param.parse(raw)
    except ValueError:
        raise ConfigError(
            f'{where}: invalid value for parameter "{key}": "{raw}" (allowed: {param.allowed()})'
        ) from None


# pgpool-II 4.1's master_slave_sub_mode -> backend_clustering_mode.
_SUB_MODES = {"stream": "streaming_replication", "slony": "slony", "logical": "logical_replication"}


def _resolve_clustering_mode(values: dict[str, Value], sources: dict[str, str]) -> None:
    """Map the pgpool-II 4.0/4.1 mode switches onto backend_clustering_mode unless it is set itself."""
    if "backend_clustering_mode" in sources:
        return
    if values["replication_mode"] and values["master_slave_mode"]:
        raise ConfigError(
            f'{sources["master_slave_mode"]}: invalid value for parameter "master_slave_mode": "on" '
            f'(replication_mode is on too, at {sources["replication_mode"]})'
        )
    if values["replication_mode"]:
        legacy = "replication_mode"
        mode = "native_replication"
    elif values["master_slave_mode"]:
        legacy = "master_slave_mode"
        mode = _SUB_MODES[str(values["master_slave_sub_mode"])]
    elif "replication_mode" in sources or "master_slave_mode" in sources:
        # A 4.1 configuration with both modes off ran in raw mode.
        legacy = "replication_mode" if "replication_mode" in sources else "master_slave_mode"
        mode = "raw"
    else:
        return
    values["backend_clustering_mode"] = mode
    sources["backend_clustering_mode"] = sources[legacy]


def _check(cfg: Config, path: str | None) -> None:
    """Checks across parameters, once every entry is in."""
    if not any(b.in_use for b in cfg.backends):
        where = path or COMMAND_LINE
        raise ConfigError(f"{where}: no backend is configured (set backend_hostname0 and backend_port0)")
    if cfg.port == cfg.pcp_port:
        raise ConfigError(
            f'{cfg.source("pcp_port")}: invalid value for parameter "pcp_port": "{cfg.pcp_port}" '
            f"(must differ from port)"
        )
