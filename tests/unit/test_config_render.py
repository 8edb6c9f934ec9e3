"""SHOW rows and the generated sample/docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgpool_py.config import PARAMS, load_config
from pgpool_py.config.render import (
    DOCS_PATH,
    SAMPLE_PATH,
    SECRET_MASK,
    main,
    pgpool_show,
    pgpool_show_all,
    render_docs,
    render_sample,
    show_rows,
    show_value,
    with_unit,
)


def test_show_rows(tmp_path: Path) -> None:
    conf = tmp_path / "pgpool.conf"
    conf.write_text(
        "backend_hostname0 = 'h0'\nbackend_port0 = 5432\nbackend_port1 = 5433\n"
        "backend_flag1 = 'DISALLOW_TO_FAILOVER'\nsr_check_password = 'secret'\n"
        "health_check_password1 = 'secret'\nlog_min_messages = debug\nwd_port3 = 9000\n"
    )
    rows = show_rows(load_config(str(conf)))
    values = {item: value for item, value, _ in rows}
    assert len(values) == len(rows)
    assert values["num_init_children"] == "32"
    assert values["load_balance_mode"] == "on"
    assert values["log_min_messages"] == "debug2"
    assert values["log_file_mode"] == "0600"
    assert values["reset_query_list"] == "ABORT;DISCARD ALL"
    assert values["backend_hostname0"] == "h0" and values["backend_hostname1"] == "/tmp"
    assert values["backend_flag0"] == "ALLOW_TO_FAILOVER" and values["backend_flag1"] == "DISALLOW_TO_FAILOVER"
    assert values["sr_check_password"] == values["health_check_password1"] == SECRET_MASK
    assert values["health_check_period"] == values["health_check_period1"] == "0"
    assert values["wd_port3"] == "9000" and "wd_port0" not in values and "backend_port2" not in values
    assert "secret" not in str(rows)
    # A node's values are listed together.
    items = [item for item, _, _ in rows]
    assert items.index("backend_port0") < items.index("backend_hostname1")
    assert all(description for _, _, description in rows)


def test_show_value(tmp_path: Path) -> None:
    cfg = load_config(None, {"backend_port0": "5432", "backend_weight0": "2", "recovery_password": "pw"})
    assert show_value(cfg, "backend_weight0") == "2"
    assert show_value(cfg, "recovery_password") == SECRET_MASK
    assert show_value(cfg, "socket_dir") == "/tmp"
    with pytest.raises(KeyError):
        show_value(cfg, "nope")


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [(60, "s", "1min"), (300, "s", "5min"), (5, "s", "5s"), (90, "s", "90s"), (7200, "s", "2h"),
     (1440, "min", "1d"), (10240, "kB", "10MB"), (10241, "kB", "10241kB"), (67108864, "B", "64MB"),
     (409600, "B", "400kB"), (1500, "ms", "1500ms"), (10000, "ms", "10s"), (0, "s", "0"), (-1, "s", "-1")],
)
def test_with_unit_takes_the_largest_unit_that_divides(value: int, unit: str, shown: str) -> None:
    assert with_unit(value, unit) == shown


def test_pgpool_show_as_pgpool_ii(tmp_path: Path) -> None:
    """The shapes pgpool-II 4.3.5 answers with (checked against it in test_pool_commands)."""
    cfg = load_config(None, {"backend_hostname0": "h0", "backend_port0": "5432", "backend_port2": "5434",
                             "health_check_period": "5", "health_check_period2": "7", "client_idle_limit": "5",
                             "recovery_password": "pw", "wd_port3": "9000"})
    assert pgpool_show(cfg, "authentication_timeout") == "1min"
    assert pgpool_show(cfg, "client_idle_limit") == "5s"
    assert pgpool_show(cfg, "log_rotation_size") == "10MB"
    assert pgpool_show(cfg, "num_init_children") == "32"
    assert pgpool_show(cfg, "recovery_password") == SECRET_MASK == "*****"
    # A node's value is bare, as pgpool-II shows array members; unused slots are listed by no family.
    assert pgpool_show(cfg, "health_check_period2") == "7"
    assert pgpool_show(cfg, "backend_hostname5") == ""
    assert [row[:2] for row in pgpool_show(cfg, "backend_hostname")] == [("backend_hostname0", "h0"),
                                                                         ("backend_hostname2", "/tmp")]
    assert [row[:2] for row in pgpool_show(cfg, "health_check_period")] == [
        ("health_check_period", "5"), ("health_check_period0", "5"), ("health_check_period2", "7")]
    backend = [row[0] for row in pgpool_show(cfg, "backend")]
    assert backend[:6] == ["backend_hostname0", "backend_port0", "backend_weight0", "backend_data_directory0",
                           "backend_application_name0", "backend_flag0"]
    assert len(backend) == 12
    assert [row[:2] for row in pgpool_show(cfg, "watchdog")] == [("hostname3", "localhost"), ("wd_port3", "9000"),
                                                                 ("pgpool_port3", "0")]
    assert pgpool_show(cfg, "heartbeat") == []
    with pytest.raises(KeyError):
        pgpool_show(cfg, "nope")
    every = {item: value for item, value, _ in pgpool_show_all(cfg)}
    assert every["child_life_time"] == "5min" and every["memqcache_total_size"] == "64MB"
    assert every["health_check_period2"] == "7" and "backend_port1" not in every
    # SHOW POOL_STATUS (and pcp_pool_status) keep pgpool-II's get_config values: base units.
    assert {item: value for item, value, _ in show_rows(cfg)}["child_life_time"] == "300"


def test_generated_files_are_current() -> None:
    hint = "stale: run python -m pgpool_py.config.render sample / docs"
    assert SAMPLE_PATH.read_text(encoding="utf-8") == render_sample(), hint
    assert DOCS_PATH.read_text(encoding="utf-8") == render_docs(), hint


def test_sample_lists_every_parameter_and_its_defaults_load(tmp_path: Path) -> None:
    sample = render_sample()
    assert "generated — edit pgpool_py/config/params.py" in sample.splitlines()[2]
    settings = re.findall(r"(?m)^#(\w+) = ", sample)
    for name, param in PARAMS.items():
        assert (f"{name}0" if param.indexed and not param.global_default else name) in settings
    conf = tmp_path / "all.conf"
    conf.write_text(re.sub(r"(?m)^#(\w+ = )", r"\1", sample))
    cfg = load_config(str(conf), {"backend_port0": "5432"})
    for name, param in PARAMS.items():
        if not param.indexed or param.global_default:
            assert cfg.get(name) == param.default, name


def test_docs_have_a_row_per_parameter() -> None:
    docs = render_docs()
    for name, param in PARAMS.items():
        assert f"| `{name}N` |" in docs if param.indexed else f"| `{name}` |" in docs


def test_main_rejects_unknown_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["html"]) == 2
    assert "usage" in capsys.readouterr().err
