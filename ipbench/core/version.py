"""The installed version of ipbench, recorded with every run's provenance."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ipbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
