"""Loading pgpool.conf: syntax, messages, overrides, derived views and reload rules."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from pgpool_py.config import BackendFlag, Config, load_config, reload_config
from pgpool_py.errors import ConfigError

PGPOOL_SAMPLE = Path("/usr/share/doc/pgpool2/examples/pgpool.conf.sample")
needs_sample = pytest.mark.skipif(not PGPOOL_SAMPLE.exists(), reason="pgpool-II 4.3 sample not installed")

ONE_BACKEND = "backend_hostname0 = 'localhost'\nbackend_port0 = 5432\n"


def write(tmp_path: Path, text: str, name: str = "pgpool.conf") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, ONE_BACKEND + text))


@needs_sample
def test_pgpool_sample_loads_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    # Its only active lines are backend_clustering_mode and hostname0; it names no backend.
    cfg = load_config(str(PGPOOL_SAMPLE), {"backend_port0": "5432"})
    assert cfg.clustering_mode == "streaming_replication"
    assert not caplog.records


@needs_sample
def test_every_commented_setting_of_pgpool_sample_is_known_and_valid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = re.sub(r"(?m)^#(\w+\s*=)", r"\1", PGPOOL_SAMPLE.read_text())
    cfg = load_config(write(tmp_path, text))
    assert not caplog.records
    assert cfg.unix_socket_directories == ("/var/run/postgresql",)  # socket_dir
    assert cfg.work_dir == "/var/log/postgresql"  # logdir
    assert cfg.authentication_timeout == 60  # 1min
    assert cfg.log_rotation_size == 10240  # 10MB in kB
    assert cfg.log_file_mode == 0o600
    assert [(b.hostname, b.port, b.weight_ratio) for b in cfg.backends] == [("host1", 5432, 0.5), ("host2", 5433, 0.5)]


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("listen_addresses = 'a b'", "a b"),
        ("listen_addresses 'spaced'  # comment", "spaced"),
        ("listen_addresses=nospace", "nospace"),
        ("listen_addresses = 'it''s'", "it's"),
        ("listen_addresses = ''", ""),
        ("listen_addresses = 'has # hash'", "has # hash"),
        ("listen_addresses = 'back\\'slash'", "back\\'slash"),  # kept as pgpool keeps it
        ("listen_addresses = '\\d+'", "\\d+"),
        ("  listen_addresses\t=\t*\t", "*"),
    ],
)
def test_quoting(tmp_path: Path, line: str, value: str) -> None:
    assert load(tmp_path, line + "\n").listen_addresses == value


@pytest.mark.parametrize(
    "line",
    ["port = '5432", "port =", "port = 5432 5433", "= 5", "port = 'a' 'b'"],
)
def test_syntax_errors_name_file_and_line(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, ONE_BACKEND + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}:4: syntax error"):
        load_config(path)


def test_unknown_key_warns_with_file_and_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, ONE_BACKEND + "# comment\nno_such_param = 1\n")
    with caplog.at_level(logging.WARNING, logger="pgpool_py.config"):
        cfg = load_config(path)
    assert cfg.num_init_children == 32
    assert [r.getMessage() for r in caplog.records] == [f'{path}:4: unrecognized configuration parameter "no_such_param"']
    assert caplog.records[0].name == "pgpool_py.config"


def test_bad_value_error_text(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND + "num_init_children = lots\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f'{path}:3: invalid value for parameter "num_init_children": "lots" (allowed: 1 .. 2147483647)'
    )


def test_max_pool_zero_is_rejected(tmp_path: Path) -> None:
    # pgpool-II's minimum: with no pool slot every client failed with an internal error.
    path = write(tmp_path, ONE_BACKEND + "max_pool = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f'{path}:3: invalid value for parameter "max_pool": "0" (allowed: 1 .. 2147483647)'


def test_bad_enum_lists_choices(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND + "disable_load_balance_on_write = sometimes\n")
    with pytest.raises(ConfigError, match=r"allowed: off, transaction, trans_transaction, always, dml_adaptive\)$"):
        load_config(path)


def test_node_index_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'invalid node index in parameter "backend_port128" \(allowed: 0 .. 127\)'):
        load(tmp_path, "backend_port128 = 5432\n")
    with pytest.raises(ConfigError, match=r'parameter "backend_port" needs a node index'):
        load(tmp_path, "backend_port = 5432\n")


def test_cross_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no backend is configured"):
        load_config(write(tmp_path, "backend_hostname0 = 'h'\n"))
    with pytest.raises(ConfigError, match=r':3: invalid value for parameter "pcp_port": "9999" \(must differ from port\)'):
        load(tmp_path, "pcp_port = 9999\n")
    # pgpool-II takes a recovery command without every node's data directory; recovery of a
    # node without one fails then, saying so.
    assert load(tmp_path, "recovery_1st_stage_command = 'recovery_1st_stage'\n").recovery_1st_stage_command


def test_overrides_win_and_are_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND + "num_init_children = 10\nport = 6000\n")
    cfg = load_config(path, {"num_init_children": "3", "backend_port1": "5433"})
    assert cfg.num_init_children == 3
    assert cfg.source("num_init_children") == "command line"
    assert cfg.port == 6000 and cfg.source("port") == f"{path}:4"
    assert cfg.source("max_pool") == "default"
    assert [b.port for b in cfg.backends] == [5432, 5433]
    with pytest.raises(ConfigError, match='command line: invalid value for parameter "port": "x"'):
        load_config(path, {"port": "x"})
    with pytest.raises(ConfigError, match='command line: unrecognized configuration parameter "nope"'):
        load_config(path, {"nope": "1"})


def test_no_file_uses_defaults(tmp_path: Path) -> None:
    cfg = load_config(None, {"backend_port0": "5432"})
    assert cfg.path is None
    assert cfg.reset_query_list == ("ABORT", "DISCARD ALL")
    assert cfg.backends[0].hostname == "/tmp"


def test_backends_and_weights(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "backend_weight0 = 1\n"
        "backend_hostname2 = 'h2'\nbackend_port2 = 5434\nbackend_weight2 = 3\n"
        "backend_flag2 = 'DISALLOW_TO_FAILOVER|ALWAYS_PRIMARY'\n"
        "backend_data_directory2 = '/d2'\nbackend_application_name2 = 'app2'\n",
    )
    b0, b1, b2 = cfg.backends
    assert (b0.weight_ratio, b1.weight_ratio, b2.weight_ratio) == (0.25, 0.0, 0.75)
    assert not b1.in_use and b1.hostname == ""
    assert b2.flag == BackendFlag.DISALLOW_TO_FAILOVER | BackendFlag.ALWAYS_PRIMARY
    assert (b2.node_id, b2.data_directory, b2.application_name) == (2, "/d2", "app2")
    assert b0.flag == 0


def test_equal_shares_when_no_weights(tmp_path: Path) -> None:
    cfg = load(tmp_path, "backend_port1 = 5433\n")
    assert [b.weight_ratio for b in cfg.backends] == [0.5, 0.5]


def test_hostname_without_port_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load(tmp_path, "backend_hostname1 = 'h1'\n")
    assert len(cfg.backends) == 2 and not cfg.backends[1].in_use
    assert "backend_hostname1 is set but backend_port1 is not" in caplog.text


def test_per_node_health_check_over_global(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "backend_port1 = 5433\nhealth_check_period = 10\nhealth_check_period1 = 3\n"
        "health_check_user = 'hc'\nconnect_timeout1 = 2s\n",
    )
    assert cfg.health_check(0).period == 10 and cfg.health_check(1).period == 3
    assert cfg.health_check(1).user == "hc" and cfg.health_check(1).connect_timeout == 2000
    assert cfg.health_check(0).connect_timeout == 10000
    assert cfg.health_check(7).period == 10  # a node added later gets the defaults
    assert cfg.source("health_check_period0").endswith(":4")
    assert cfg.source("health_check_period1").endswith(":5")
    assert cfg.health_check_period == 10


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("", "streaming_replication"),
        ("replication_mode = on\n", "native_replication"),
        ("master_slave_mode = on\nmaster_slave_sub_mode = 'logical'\n", "logical_replication"),
        ("master_slave_mode = on\n", "streaming_replication"),
        ("master_slave_mode = off\nreplication_mode = off\n", "raw"),
        ("replication_mode = on\nbackend_clustering_mode = 'raw'\n", "raw"),
    ],
)
def test_legacy_mode_spellings(tmp_path: Path, text: str, mode: str) -> None:
    assert load(tmp_path, text).clustering_mode == mode


def test_both_legacy_modes_on_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replication_mode is on too"):
        load(tmp_path, "master_slave_mode = on\nreplication_mode = on\n")


def test_include_is_relative_to_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path, "num_init_children = 7\nbogus = 1\n", "sub/extra.conf")
    cfg = load(tmp_path, "include 'sub/extra.conf'\nmax_pool = 2\n")
    assert (cfg.num_init_children, cfg.max_pool) == (7, 2)
    assert cfg.source("num_init_children") == f"{tmp_path}/sub/extra.conf:1"


def test_config_is_immutable_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    with pytest.raises(AttributeError):
        cfg.port = 1
    with pytest.raises(AttributeError, match="unknown configuration parameter"):
        cfg.no_such_thing
    with pytest.raises(AttributeError, match="per-node parameter"):
        cfg.backend_port
    assert cfg.config_dir == str(tmp_path)
    assert cfg.config_path(cfg.pool_passwd) == str(tmp_path / "pool_passwd")
    assert cfg.config_path("/abs/file") == "/abs/file"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="could not open configuration file"):
        load_config(str(tmp_path / "absent.conf"))


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (b"backend_application_name1 = 'caf\xe9'", "0xe9"),
        (b"listen_addresses = \xff\xfe", "0xff 0xfe"),
        (b"caf\xe9 = 1", "0xe9"),
    ],
)
def test_invalid_utf8_in_a_setting_names_file_and_line(tmp_path: Path, line: bytes, shown: str) -> None:
    path = tmp_path / "pgpool.conf"
    path.write_bytes(ONE_BACKEND.encode() + line + b"\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f'{path}:3: invalid byte sequence for encoding "UTF8": {shown}'


def test_invalid_utf8_in_a_comment_is_ignored(tmp_path: Path) -> None:
    # An old file written in Latin-1 loads as long as its settings themselves are ASCII.
    path = tmp_path / "pgpool.conf"
    path.write_bytes(ONE_BACKEND.encode() + b"# caf\xe9\nport = 9998 # \xe9t\xe9\n")
    assert load_config(str(path)).port == 9998


# -- reload


def test_reload_takes_reloadable_and_keeps_restart_only(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND + "num_init_children = 10\nlog_statement = off\n")
    old = load_config(path, {"max_pool": "2"})
    write(tmp_path, ONE_BACKEND + "num_init_children = 20\nlog_statement = on\nmax_pool = 9\n")
    new, warnings = reload_config(old)
    assert new.log_statement is True
    assert new.num_init_children == 10 and new.source("num_init_children") == f"{path}:3"
    assert new.max_pool == 2  # the command line still wins
    assert warnings == ['parameter "num_init_children" cannot be changed without restarting pgpool-py']


def test_a_restart_only_change_is_reported_once(tmp_path: Path) -> None:
    """Every reload used to repeat the warning for a change already reported."""
    path = write(tmp_path, ONE_BACKEND + "port = 9999\n")
    cfg = load_config(path)
    write(tmp_path, ONE_BACKEND.replace("5432", "5433") + "port = 9998\n")
    cfg, warnings = reload_config(cfg)
    assert warnings == ['parameter "port" cannot be changed without restarting pgpool-py',
                        'parameter "backend_port0" cannot be changed without restarting pgpool-py']
    for _ in range(2):
        cfg, warnings = reload_config(cfg)
        assert warnings == []
        assert cfg.port == 9999 and cfg.backends[0].port == 5432
    write(tmp_path, ONE_BACKEND.replace("5432", "5433") + "port = 9997\n")  # another value: news again
    cfg, warnings = reload_config(cfg)
    assert warnings == ['parameter "port" cannot be changed without restarting pgpool-py']
    write(tmp_path, ONE_BACKEND + "port = 9999\n")  # back to what runs: nothing to report ...
    cfg, warnings = reload_config(cfg)
    assert warnings == []
    write(tmp_path, ONE_BACKEND + "port = 9997\n")  # ... and a new change is reported again
    cfg, warnings = reload_config(cfg)
    assert warnings == ['parameter "port" cannot be changed without restarting pgpool-py']


def test_reload_backend_rules(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND + "backend_weight0 = 1\n")
    old = load_config(path)
    write(
        tmp_path,
        "backend_hostname0 = 'elsewhere'\nbackend_port0 = 5432\nbackend_weight0 = 1\n"
        "backend_hostname1 = 'new'\nbackend_port1 = 5433\nbackend_weight1 = 3\n",
    )
    new, warnings = reload_config(old)
    assert warnings == ['parameter "backend_hostname0" cannot be changed without restarting pgpool-py']
    assert [(b.hostname, b.port, b.weight_ratio) for b in new.backends] == [
        ("localhost", 5432, 0.25),
        ("new", 5433, 0.75),
    ]
    assert new.source("backend_hostname0") == f"{path}:1"


def test_reload_cannot_remove_a_used_node(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND + "backend_hostname1 = 'b'\nbackend_port1 = 5433\n")
    old = load_config(path)
    write(tmp_path, ONE_BACKEND)
    new, warnings = reload_config(old)
    assert [b.port for b in new.backends] == [5432, 5433]
    assert warnings == [
        'parameter "backend_hostname1" cannot be changed without restarting pgpool-py',
        'parameter "backend_port1" cannot be changed without restarting pgpool-py',
    ]


def test_reload_rejects_a_bad_file_whole(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND)
    old = load_config(path)
    write(tmp_path, ONE_BACKEND + "log_statement = on\nport = nope\n")
    with pytest.raises(ConfigError, match=":4: invalid value"):
        reload_config(old)
    assert old.log_statement is False


def test_reload_rejects_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_BACKEND)
    old = load_config(path)
    with open(path, "ab") as f:
        f.write(b"backend_application_name0 = 'caf\xe9'\n")
    with pytest.raises(ConfigError, match=r":3: invalid byte sequence for encoding \"UTF8\": 0xe9$"):
        reload_config(old)


def test_pgpool_41_spellings_load_without_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load(
        tmp_path,
        "master_slave_mode = on\nmaster_slave_sub_mode = 'stream'\n"
        "follow_master_command = '/bin/follow %d'\nwhite_function_list = 'f1,f2'\n"
        "black_function_list = 'nextval'\nbackend_flag0 = 'ALWAYS_MASTER'\n"
        "socket_dir = '/run/pg'\nlogdir = '/var/lib/pgpool'\n",
    )
    assert not caplog.records
    assert cfg.clustering_mode == "streaming_replication"
    assert cfg.follow_primary_command == "/bin/follow %d"
    assert cfg.read_only_function_list == ("f1", "f2") and cfg.write_function_list == ("nextval",)
    assert cfg.backends[0].flag == BackendFlag.ALWAYS_PRIMARY
    assert cfg.unix_socket_directories == ("/run/pg",) and cfg.work_dir == "/var/lib/pgpool"
    assert cfg.source("socket_dir") == cfg.source("unix_socket_directories") == f"{tmp_path}/pgpool.conf:9"
