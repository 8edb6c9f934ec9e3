"""
Everything that shows parameters, all from the table in params.py.

- ``show_rows``/``show_value``: the rows of SHOW POOL_STATUS (and pcp_pool_status): values in
  their base unit, as pgpool-II's get_config prints them.
- ``pgpool_show``/``pgpool_show_all``: PGPOOL SHOW, which prints a time or size with the
  largest unit that divides it (``1min``, ``64MB``), a per-node family as one row per node.
- ``render_sample``/``render_docs``: etc/pgpool.conf.sample and docs/configuration.md;
  ``python -m pgpool_py.config.render sample|docs`` writes them.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from .loader import Config
from .params import (
    GROUPS, MAX_BACKENDS, MAX_HEARTBEAT_DESTINATIONS, MAX_WATCHDOG_NODES, PARAMS, UNIT_SCALES, BackendFlag, Context,
    Kind, Param, Value, lookup,
)

SECRET_MASK = "*****"  # pgpool-II's
GENERATED = "generated — edit pgpool_py/config/params.py, then run python -m pgpool_py.config.render"
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PATH = ROOT / "etc" / "pgpool.conf.sample"
DOCS_PATH = ROOT / "docs" / "configuration.md"

# Groups whose indexed parameters are per backend node (the others are watchdog slots).
_NODE_GROUPS = ("backends", "health_check")
# PGPOOL SHOW of a group name (pgpool-II's ConfigureVarGroups): the family it shows.
SHOW_GROUPS = {
    "backend": ("backends", MAX_BACKENDS),
    "health_check": ("health_check", MAX_BACKENDS),
    "watchdog": ("watchdog", MAX_WATCHDOG_NODES),
    "heartbeat": ("watchdog", MAX_HEARTBEAT_DESTINATIONS),
}
Row = tuple[str, str, str]  # item, value, description
_CONTEXT_TEXT = {
    Context.BOOT: "restart",
    Context.INIT: "restart",
    Context.RELOAD: "reload",
    Context.SESSION: "reload, PGPOOL SET",
}


def format_value(param: Param, value: Value) -> str:
    """A value as pgpool.conf would spell it (unquoted), and as SHOW prints it."""
    if param.type is Kind.BOOL:
        return "on" if value else "off"
    if isinstance(value, tuple):
        return param.separator.join(value)
    if isinstance(value, float):
        return f"{value:g}"
    if param.type is Kind.FLAGS:
        assert isinstance(value, int)
        labels = ["DISALLOW_TO_FAILOVER" if value & BackendFlag.DISALLOW_TO_FAILOVER else "ALLOW_TO_FAILOVER"]
        if value & BackendFlag.ALWAYS_PRIMARY:
            labels.append("ALWAYS_PRIMARY")
        return "|".join(labels)
    if param.octal:
        assert isinstance(value, int)
        return f"0{value:o}"
    return str(value)


def _shown(cfg: Config, name: str) -> tuple[Param, Value] | None:
    """The parameter ``name`` stands for and its value; None for a secret (KeyError: unknown)."""
    found = lookup(name)
    if found is None:
        raise KeyError(name)
    param, index = found
    return None if param.secret else (param, cfg.get(param.name, index))


def show_value(cfg: Config, name: str) -> str:
    """The SHOW text of ``name`` (``backend_port0`` for a node's value); secrets masked."""
    shown = _shown(cfg, name)
    return SECRET_MASK if shown is None else format_value(*shown)


def with_unit(value: int, unit: str) -> str:
    """``value`` (in base ``unit``) with the largest unit that divides it, as pgpool-II and
    PostgreSQL show it: 60 s is ``1min``, 90 s ``90s``, 10240 kB ``10MB``; 0 and below bare."""
    if value <= 0:
        return str(value)
    table, base = UNIT_SCALES[unit]
    amount = value * base
    for name, scale in sorted(table.items(), key=lambda item: -item[1]):
        if base <= scale and amount % scale == 0:
            return f"{int(amount // scale)}{name}"
    return f"{value}{unit}"


def pgpool_show_value(cfg: Config, name: str) -> str:
    """The value PGPOOL SHOW prints for ``name``: a plain parameter's with its unit, a node's
    (``health_check_period1``) bare, as pgpool-II shows array members; secrets masked."""
    shown = _shown(cfg, name)
    if shown is None:
        return SECRET_MASK
    param, value = shown
    if param.unit and not param.indexed and isinstance(value, int) and not isinstance(value, bool):
        return with_unit(value, param.unit)
    return format_value(param, value)


def pgpool_show(cfg: Config, name: str) -> str | list[Row]:
    """
    PGPOOL SHOW ``name``: the value of one parameter (or of one node's, ``backend_port1``), or
    the rows of a per-node family named without index (``backend_hostname``, ``health_check_period``:
    its default row first) or of a group (``backend``, ``health_check``, ``watchdog``,
    ``heartbeat``).  KeyError when there is no such parameter.
    """
    if name in SHOW_GROUPS:
        return _family_rows(cfg, [p for p in PARAMS.values() if (p.group, p.indexed) == SHOW_GROUPS[name]])
    found = lookup(name)
    if found is None:
        raise KeyError(name)
    param, index = found
    if param.indexed and index is None:
        return _family_rows(cfg, [param])
    return pgpool_show_value(cfg, name)


def pgpool_show_all(cfg: Config) -> list[Row]:
    """PGPOOL SHOW ALL: every parameter as PGPOOL SHOW prints it, per-node families node by node."""
    rows: list[Row] = []
    done: set[tuple[str, int]] = set()
    for param in PARAMS.values():
        if not param.indexed:
            rows.append((param.name, pgpool_show_value(cfg, param.name), param.description))
        elif (param.group, param.indexed) not in done:
            done.add((param.group, param.indexed))
            rows += _family_rows(cfg, [p for p in PARAMS.values() if (p.group, p.indexed) == (param.group, param.indexed)])
    return rows


def _family_rows(cfg: Config, family: list[Param]) -> list[Row]:
    """The defaults of a family (health_check_period ...), then its members node by node, only
    for slots in use (a backend with a port, a watchdog slot that is set), as pgpool-II."""
    rows = [(p.name, pgpool_show_value(cfg, p.name), p.description) for p in family if p.global_default]
    if family[0].group in _NODE_GROUPS:
        indexes = [b.node_id for b in cfg.backends if b.in_use]
    else:
        indexes = sorted({i for p in family for i in cfg.set_slots(p.name)})
    for index in indexes:
        rows += [(f"{p.name}{index}", pgpool_show_value(cfg, f"{p.name}{index}"), p.description) for p in family]
    return rows


def show_rows(cfg: Config) -> list[tuple[str, str, str]]:
    """(item, value, description) for every parameter, per-node ones once per node."""
    rows: list[tuple[str, str, str]] = []
    done: set[tuple[str, int]] = set()
    for param in PARAMS.values():
        family_key = (param.group, param.indexed)
        if not param.indexed:
            rows.append((param.name, show_value(cfg, param.name), param.description))
        elif family_key not in done:
            # A per-node family is shown node by node: hostname0, port0, ..., hostname1, ...
            done.add(family_key)
            family = [p for p in PARAMS.values() if (p.group, p.indexed) == family_key]
            rows.extend((p.name, show_value(cfg, p.name), p.description) for p in family if p.global_default)
            for index in _shown_indexes(cfg, family):
                rows.extend(
                    (f"{p.name}{index}", show_value(cfg, f"{p.name}{index}"), p.description) for p in family
                )
    return rows


def _shown_indexes(cfg: Config, family: list[Param]) -> list[int]:
    """Backend and health-check families: every configured node slot; others: slots set explicitly."""
    if family[0].group in _NODE_GROUPS:
        return list(range(len(cfg.backends)))
    return sorted({i for p in family for i in cfg.set_slots(p.name)})


def _quoted(param: Param, value: Value) -> str:
    text = format_value(param, value)
    if param.type in (Kind.BOOL, Kind.INT, Kind.REAL):
        return text
    return "'" + text.replace("'", "''") + "'"


def _example_key(param: Param) -> str:
    return param.name if not param.indexed or param.global_default else f"{param.name}0"


def _facts(param: Param, with_context: bool) -> str:
    """Allowed values, indexes, other spellings and (in the sample) the context, as sentences."""
    facts = []
    if param.type not in (Kind.STRING, Kind.BOOL):
        facts.append(f"Allowed: {param.allowed()}.")
    if param.indexed:
        first = f"{param.name}0"
        last = f"{param.name}{param.indexed - 1}"
        scope = "one value per node" if param.group in _NODE_GROUPS else "one value per slot"
        extra = f", {param.name} sets the default" if param.global_default else ""
        facts.append(f"Indexed: {first} .. {last} ({scope}{extra}).")
    if param.old_names:
        facts.append(f"Also accepted as {', '.join(param.old_names)}.")
    if with_context and param.context <= Context.INIT:
        facts.append("Change requires restart.")
    elif with_context and param.context is Context.SESSION:
        facts.append("Also settable per session with PGPOOL SET.")
    return " ".join(fact for fact in facts if fact)


def render_sample() -> str:
    out = [
        "# ----------------------------------------------------------------------------",
        "# pgpool-py configuration file: every parameter with its default",
        f"# {GENERATED} sample",
        "# ----------------------------------------------------------------------------",
        "#",
        "# One 'name = value' per line; '#' starts a comment; quote strings with '...',",
        "# writing '' for a quote inside.  Times and sizes accept units (10s, 5min, 8MB).",
        "# Reload with SIGHUP, 'pgpool-py reload' or pcp_reload_config.",
        "# The least working configuration names one backend:",
        "#   backend_hostname0 = 'localhost'",
        "#   backend_port0 = 5432",
        "",
    ]
    for group, title in GROUPS.items():
        out += ["", "#" + "-" * 78, f"# {title.upper()}", "#" + "-" * 78, ""]
        for param in PARAMS.values():
            if param.group != group:
                continue
            text = f"{param.description} {_facts(param, with_context=True)}".strip()
            out += textwrap.wrap(text, 78, initial_indent="# ", subsequent_indent="# ")
            out.append(f"#{_example_key(param)} = {_quoted(param, param.default)}")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_docs() -> str:
    out = [
        "# pgpool-py configuration reference",
        "",
        f"<!-- {GENERATED} docs -->",
        "",
        "pgpool-py reads pgpool-II's `pgpool.conf`: the same names, syntax and defaults, so a",
        "pgpool-II 4.3 file works unchanged.  An unknown parameter is logged with its file and line",
        "and skipped; an invalid value stops the start (or rejects the reload) with one line naming",
        "file, line, parameter and the allowed values.",
        "",
        "*Context* says how a change takes effect: **restart**; **reload** (SIGHUP, `pgpool-py reload`,",
        "`pcp_reload_config`; a changed restart-only parameter keeps its old value and is reported",
        "as a warning); **PGPOOL SET** also per session.  Integers with a unit accept a suffix",
        "(`us ms s min h d` for times, `B kB MB GB TB` for sizes); a plain number is in the unit shown.",
        "Per-node parameters take the node number as a suffix (`backend_hostname0`); for the health",
        "check family the bare name (`health_check_period`) is the default of nodes that set none.",
        "",
    ]
    for group, title in GROUPS.items():
        out += [f"## {title}", "", "| Parameter | Type | Default | Context | Description |"]
        out.append("|---|---|---|---|---|")
        for param in PARAMS.values():
            if param.group != group:
                continue
            kind = param.type.value + (f" ({param.unit})" if param.unit else "")
            default = _quoted(param, param.default)
            description = f"{param.description} {_facts(param, with_context=False)}".strip()
            name = f"{param.name}N" if param.indexed else param.name
            out.append(
                f"| `{name}` | {kind} | `{_cell(default)}` | {_CONTEXT_TEXT[param.context]} "
                f"| {_cell(description)} |"
            )
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    targets = {"sample": (SAMPLE_PATH, render_sample), "docs": (DOCS_PATH, render_docs)}
    if len(argv) != 1 or argv[0] not in targets:
        print("usage: python -m pgpool_py.config.render sample|docs", file=sys.stderr)
        return 2
    path, render = targets[argv[0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
