import os

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# The child's hot paths, compiled to C with mypyc (part of mypy): the same type-checked
# Python, run as native code, takes about half the instructions per statement and a third
# less per new connection (docs/performance.md).  PGPOOL_PY_PURE=1, or a build without mypy
# or a C compiler, installs them as plain Python: they behave the same, only slower.
COMPILED = [
    # every statement: framing, the reply scanner, classification, routing
    "pgpool_py/protocol/messages.py",
    "pgpool_py/protocol/scanner.py",
    "pgpool_py/routing/classify.py",
    "pgpool_py/child/router.py",
    # every connection: accept, startup, authentication, the backend connection pool
    "pgpool_py/child/child.py",
    "pgpool_py/child/pending.py",
    "pgpool_py/child/session.py",
    "pgpool_py/child/auth.py",
    "pgpool_py/child/pool.py",
    "pgpool_py/protocol/stream.py",
    "pgpool_py/tls.py",
    "pgpool_py/child/backend.py",
    "pgpool_py/signals.py",
    # called by the ones above on every connection (a call into a plain module runs bytecode)
    "pgpool_py/proctitle.py",
    "pgpool_py/shmem/layout.py",
    "pgpool_py/child/commands.py",
    "pgpool_py/stdlib.py",  # the standard library's names they read, as C variables
]


class BuildPyWithSamples(build_py):
    """Carry etc/ (sample configuration, recovery and failover scripts, init script, systemd
    unit) inside the installed package as pgpool_py/etc: pgpool-py-setup copies the scripts
    into every cluster it builds, and an installed copy has no source tree beside it."""

    def run(self) -> None:
        super().run()
        self.copy_tree("etc", os.path.join(self.build_lib, "pgpool_py", "etc"))


class BuildExtOrPlain(build_ext):
    """Without a C compiler or Python's headers (python3-dev) the package still installs,
    as plain Python; ``pgpool-py --version`` tells which."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # distutils' CompileError, LinkError, PlatformError...
            print(f"setup.py: compiling the relay failed ({e}): it is installed as plain Python")


def compiled_extensions() -> list[object]:
    if os.environ.get("PGPOOL_PY_PURE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("setup.py: no mypyc (pip install mypy): pgpool-py's relay is installed as plain Python")
        return []
    return mypycify(COMPILED, opt_level="3", group_name="pgpool_py.native")


setup(cmdclass={"build_py": BuildPyWithSamples, "build_ext": BuildExtOrPlain}, ext_modules=compiled_extensions())
