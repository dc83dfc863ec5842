"""ipbench: a benchmark harness for active DNN intellectual-property protection.

The notebook API (``ipbench.run``, ``ipbench.load``, ``ipbench.registered``,
``ipbench.build_leaderboard``, ``ipbench.Results``) lives in ``ipbench.api`` and is imported on first
use, so ``import ipbench`` and ``ipbench --version`` stay fast (no torch import).
"""

from typing import Any

from ipbench.core.version import __version__

API = ("run", "load", "registered", "build_leaderboard", "Results", "open_store")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        from ipbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'ipbench' has no attribute {name!r}")
