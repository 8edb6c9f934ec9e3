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
    render_docs,
    render_sample,
    show_rows,
    show_value,
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
