"""Dataset registry and loader: ``load_dataset("cifar10", root)`` -> uint8 tensors, cached."""

from __future__ import annotations

import threading

from ipbench.core.registry import datasets
from ipbench.ml.datasets.base import Dataset, ImageSet, Splits, make_dataset, make_splits
from ipbench.ml.datasets.locate import resolve_root

# The dataset readers (synthetic, cifar, torchvision_sets, files) register themselves when the
# registry scans this package, as the scheme and attack registries scan theirs.

_cache: dict[tuple[str, str], Dataset] = {}
_lock = threading.Lock()


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"npz:/a/b.npz"`` -> ``("npz", "/a/b.npz")``; ``"cifar10"`` -> ``("cifar10", None)``."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def load_dataset(spec: str, root: str | None = None, download: bool = True) -> Dataset:
    """Load once per process; later calls with the same spec and root return the same tensors."""
    name, arg = split_spec(spec)
    loader = datasets.get(name)
    key = (spec, str(resolve_root(root)))
    with _lock:
        if key not in _cache:
            kwargs = {"download": download} if name != "synthetic" else {}
            _cache[key] = loader(root=root, arg=arg, **kwargs)
        return _cache[key]


def clear_cache() -> None:
    with _lock:
        _cache.clear()


__all__ = [
    "Dataset",
    "ImageSet",
    "Splits",
    "clear_cache",
    "load_dataset",
    "make_dataset",
    "make_splits",
    "split_spec",
]
