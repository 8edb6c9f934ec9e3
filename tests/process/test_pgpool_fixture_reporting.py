"""pgpool_factory's promises around a failing test: the server log reaches the report, no process survives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fix_pgpool import _group_members

# A stand-in server: it logs a line, records its pid and stays up (ignoring the options it gets).
_INNER_TEST = """
import time
from pathlib import Path

def test_fails(pgpool_factory):
    server = pgpool_factory(
        nodes=[], wait_ready=False,
        program=["sh", "-c", "echo marker-from-the-server-log; echo $$ > {pidfile}; exec sleep 60", "sh"],
    )
    while "marker" not in server.log_text():
        time.sleep(0.01)
    assert False, "the test fails"
"""


def test_failing_test_report_shows_log_and_server_is_killed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = pytester.path / "server.pid"
    pytester.makepyfile(_INNER_TEST.format(pidfile=pidfile))
    repo_root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", str(repo_root))
    result = pytester.runpytest_subprocess("-p", "tests.fix_pgpool")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pgpool log*pgpool.log (last 200 lines)*", "marker-from-the-server-log"])
    pid = int(pidfile.read_text())
    assert _group_members(pid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
