"""ipbench: a benchmark harness for active DNN intellectual-property protection.

The notebook API (``ipbench.run``, ``ipbench.load``, ``ipbench.registered``,
``ipbench.build_leaderboard``, ``ipbench.Results``) lives in ``ipbench.api`` and is imported on first
use, so ``import ipbench`` and ``ipbench --version`` stay fast (no torch import).
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("ipbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

API = ("run", "load", "registered", "build_leaderboard", "Results", "open_store")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        from ipbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'ipbench' has no attribute {name!r}")
