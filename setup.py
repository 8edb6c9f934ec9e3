import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithSamples(build_py):
    """Carry etc/ (sample configuration, recovery and failover scripts, init script, systemd
    unit) inside the installed package as pgpool_py/etc: pgpool-py-setup copies the scripts
    into every cluster it builds, and an installed copy has no source tree beside it."""

    def run(self) -> None:
        super().run()
        self.copy_tree("etc", os.path.join(self.build_lib, "pgpool_py", "etc"))


setup(cmdclass={"build_py": BuildPyWithSamples})
