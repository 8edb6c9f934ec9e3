"""Self-tests of the parameter table: every consumer trusts it."""

from __future__ import annotations

import pytest

from pgpool_py.config import PARAMS, Config, Context, Kind, Param, lookup
from pgpool_py.config.params import GROUPS, UNIT_SCALES
from pgpool_py.config.render import format_value

ALL = list(PARAMS.values())


def test_names_unique_including_old_spellings() -> None:
    spellings = [p.name for p in ALL] + [old for p in ALL for old in p.old_names]
    assert len(spellings) == len(set(spellings))


@pytest.mark.parametrize("param", ALL, ids=lambda p: p.name)
def test_entry_is_complete(param: Param) -> None:
    assert param.description.strip()
    assert isinstance(param.context, Context)
    assert param.group in GROUPS
    assert param.unit is None or (param.type is Kind.INT and param.unit in UNIT_SCALES)
    if param.type in (Kind.ENUM, Kind.FLAGS):
        assert param.choices
    if param.global_default:
        assert param.indexed


@pytest.mark.parametrize("param", ALL, ids=lambda p: p.name)
def test_default_validates_and_round_trips(param: Param) -> None:
    if param.type is Kind.ENUM:
        assert param.default in param.choices
    # What the sample file writes for the default parses back to the default.
    assert param.parse(format_value(param, param.default)) == param.default


def test_param_names_do_not_shadow_config_attributes() -> None:
    assert not set(PARAMS) & set(dir(Config))


def test_lookup_resolves_indexes_and_old_names() -> None:
    assert lookup("backend_port12") == (PARAMS["backend_port"], 12)
    assert lookup("health_check_period") == (PARAMS["health_check_period"], None)
    assert lookup("socket_dir") == (PARAMS["unix_socket_directories"], None)
    assert lookup("follow_master_command") == (PARAMS["follow_primary_command"], None)
    assert lookup("num_init_children3") is None
    assert lookup("no_such_thing") is None


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("load_balance_mode", "Off", False),
        ("load_balance_mode", "tr", True),
        ("load_balance_mode", "1", True),
        ("child_life_time", "5min", 300),
        ("child_life_time", "1d", 86400),
        ("connect_timeout", "10s", 10000),
        ("log_rotation_size", "10MB", 10240),
        ("memqcache_maxcache", "400kB", 409600),
        ("log_file_mode", "0600", 0o600),
        ("num_init_children", "0x20", 32),
        ("check_temp_table", "on", "catalog"),
        ("log_min_messages", "DEBUG", "debug2"),
        ("syslog_facility", "local3", "LOCAL3"),
        ("backend_flag", "DISALLOW_TO_FAILOVER|ALWAYS_PRIMARY", 3),
        ("backend_flag", "ALWAYS_MASTER", 2),  # pgpool-II 4.1 spelling
        ("relcache_query_target", "master", "primary"),
        ("reset_query_list", "ABORT; DISCARD ALL ;", ("ABORT", "DISCARD ALL")),
        ("backend_weight", "0.5", 0.5),
    ],
)
def test_parse_accepts(name: str, raw: str, value: object) -> None:
    assert PARAMS[name].parse(raw) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("load_balance_mode", "o"),
        ("port", "80"),
        ("port", "99999"),
        ("child_life_time", "5 fortnights"),
        ("num_init_children", "5min"),  # no unit for a plain count
        ("num_init_children", "1.5"),
        ("backend_weight", "nan"),
        ("disable_load_balance_on_write", "sometimes"),
        ("backend_flag", "ALLOW_TO_FAILOVER|DISALLOW_TO_FAILOVER"),
        ("backend_flag", "NEVER"),
        ("log_destination", "stderr,eventlog"),
        ("client_idle_limit_in_recovery", "-2"),
    ],
)
def test_parse_rejects(name: str, raw: str) -> None:
    with pytest.raises(ValueError):
        PARAMS[name].parse(raw)
