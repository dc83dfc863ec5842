"""ipbench: a benchmark harness for active DNN intellectual-property protection."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ipbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
