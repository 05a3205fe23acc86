"""Marks the wheel as platform-specific (it carries libmoelora.so) but not
tied to a CPython ABI (ctypes): py3-none-<platform>. The platform tag comes
from scripts/build-wheel.sh (MOELORA_WHEEL_PLATFORM), which reads it off the
library's glibc symbol versions."""

import os

from setuptools import setup
from setuptools.dist import Distribution

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:  # setuptools >= 70 ships its own
    from setuptools.command.bdist_wheel import bdist_wheel


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        platform = os.environ.get("MOELORA_WHEEL_PLATFORM")
        if not platform:
            raise SystemExit("MOELORA_WHEEL_PLATFORM is not set: build the "
                             "wheel with scripts/build-wheel.sh")
        return "py3", "none", platform


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
