"""pgpool-py: a PostgreSQL connection pool server, a drop-in for pgpool-II."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec, PathFinder
from types import ModuleType

__version__ = "0.1.0"
# What SHOW POOL_VERSION and PCP report; pgpool-II clients parse the leading version number.
PGPOOL_COMPAT_VERSION = "4.3.5"

# setup.py compiles the relay's hot modules with mypyc; each .py stays beside its compiled
# module, which Python imports first.  Both behave the same.  The source is imported instead
# when PGPOOL_PY_PURE is set (tracebacks with every line, sys.settrace, a debugger), and in a
# source tree where a module changed after it was compiled: old code must not run unnoticed.


def _compiled(path: str) -> bool:
    """The file is an extension module (what mypyc built), not Python source."""
    return path.endswith(tuple(EXTENSION_SUFFIXES))


class _SourceFirst:
    """A meta path finder: pgpool_py's modules from their .py files, compiled or not."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if not name.startswith(__name__ + "."):
            return None
        spec = PathFinder.find_spec(name, path, target)
        if spec is None or not spec.origin or not _compiled(spec.origin):
            return spec
        source = os.path.join(os.path.dirname(spec.origin), name.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(name, source) if os.path.exists(source) else spec


def _stale_compiled_module() -> str | None:
    """In a source tree (setup.py beside the package): a .py newer than its compiled module."""
    package = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(os.path.join(os.path.dirname(package), "setup.py")):
        return None  # installed: built together
    for directory, _dirs, files in os.walk(package):
        for name in files:
            if not _compiled(name):
                continue
            source = os.path.join(directory, name.partition(".")[0] + ".py")
            if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(os.path.join(directory, name)):
                return source
    return None


if os.environ.get("PGPOOL_PY_PURE"):
    sys.meta_path.insert(0, _SourceFirst)
elif (_stale := _stale_compiled_module()) is not None:
    sys.meta_path.insert(0, _SourceFirst)
    print(f"pgpool-py: {_stale} changed after it was compiled: running every module from source"
          " (slower); `./dev build` compiles them again", file=sys.stderr)


def relay_build() -> str:
    """Whether the relay runs compiled (``pgpool-py --version``, the benchmark's report)."""
    spec = importlib.util.find_spec(__name__ + ".child.router")
    compiled = spec is not None and spec.origin is not None and _compiled(spec.origin)
    return "relay compiled with mypyc" if compiled else "relay in plain Python"
