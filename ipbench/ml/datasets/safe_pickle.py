"""A restricted unpickler for the CIFAR python layout.

CIFAR ships as pickles. Unpickling can run arbitrary code, so this reader only lets through
the few globals a CIFAR batch needs to rebuild numpy arrays; anything else is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from ipbench.core.errors import CorruptArtifactError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_pickle(path: Path) -> Any:
    """Load a data pickle that may hold only plain containers and numpy arrays."""
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CorruptArtifactError(f"{path}: not a readable data pickle ({exc})") from None
