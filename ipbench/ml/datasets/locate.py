"""Where datasets live on disk, and the one guarded path that downloads them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ipbench.core.errors import DatasetNotFoundError

DEFAULT_ROOT = "./data"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``--data-root``, else ``$IPBENCH_DATA``, else ``./data``."""
    return Path(root or os.environ.get("IPBENCH_DATA") or DEFAULT_ROOT).expanduser()


def downloads_allowed(download: bool) -> bool:
    """Downloads happen only when asked for, not switched off by ``IPBENCH_OFFLINE=1``, and
    on a machine whose network answers (checked once per process: ``ipbench.core.network``)."""
    from ipbench.core.network import offline_by_setting, online

    return download and not offline_by_setting() and online()


def try_download(name: str, base: Path, fetch: Callable[[], None], download: bool) -> None:
    """Run torchvision's downloader; an offline machine gets one clear line, not a traceback."""
    if not downloads_allowed(download):
        return
    try:
        base.mkdir(parents=True, exist_ok=True)
        fetch()
    except Exception as exc:  # network errors come in many types (URLError, OSError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetNotFoundError(
            f"{name}: not found under {base} and the download failed ({reason}); "
            f"put the extracted dataset there or pass --data-root DIR"
        ) from None
