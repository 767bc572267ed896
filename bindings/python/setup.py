"""Marks the wheel as platform-specific: it carries libmonoquant.so (built by `make lib`), so
it is tagged py3-none-<platform> rather than pure Python. Everything else is in pyproject.toml."""

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        _python, _abi, plat = super().get_tag()
        # ctypes works with any CPython 3: only the platform matters.
        return "py3", "none", plat


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
