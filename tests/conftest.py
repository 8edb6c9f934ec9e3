"""Fixture plugins and test markers; the markers themselves are declared in setup.cfg."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester", "tests.fix_pg", "tests.fix_pgpool", "tests.tls_certs"]

# A test's directory decides its marker, so `-m "not integration"` needs no decorators.
_DIR_MARKERS = {"process": pytest.mark.process, "integration": pytest.mark.integration}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for part in item.path.parts:
            if part in _DIR_MARKERS:
                item.add_marker(_DIR_MARKERS[part])
