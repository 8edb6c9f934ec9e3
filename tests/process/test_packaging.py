"""The package as pip installs it, away from the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_an_installed_package_carries_the_sample_scripts(tmp_path: Path) -> None:
    # pgpool-py-setup copies etc/'s recovery and failover scripts into the clusters it builds:
    # installed with pip, without a source tree, it must still find them.
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the working tree
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("pgpool_py", "pcp", "etc"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(source)], check=True, timeout=300)
    shutil.rmtree(source)
    found = subprocess.run([sys.executable, "-c", "from pgpool_py import cluster; print(cluster.etc_dir())"],
                           cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    # The relay's hot modules are compiled (setup.py's COMPILED, with mypyc).
    build = subprocess.run([sys.executable, "-c", "import pgpool_py; print(pgpool_py.relay_build())"],
                           cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=60)
    assert build.stdout.strip() == "relay compiled with mypyc", build
    etc = Path(found.stdout.strip())
    assert etc == site / "pgpool_py" / "etc"
    for sample in (REPO / "etc").rglob("*"):
        if sample.is_file():
            copy = etc / sample.relative_to(REPO / "etc")
            assert copy.read_bytes() == sample.read_bytes(), copy
            assert copy.stat().st_mode & 0o111 == sample.stat().st_mode & 0o111, copy
