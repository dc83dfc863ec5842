"""CIFAR-10 and CIFAR-100 from their standard python layouts, with ipbench's own reader.

torchvision's reader insists on the original archive's md5 sums; a rebuilt copy of the data
(same images, other order) fails them. This reader checks shape and label range instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ipbench.core.errors import CorruptArtifactError, DatasetNotFoundError
from ipbench.core.registry import datasets
from ipbench.ml.datasets.base import Dataset, ImageSet, make_dataset
from ipbench.ml.datasets.locate import resolve_root, try_download
from ipbench.ml.datasets.safe_pickle import load_pickle


@dataclass(frozen=True)
class Layout:
    """Where one CIFAR variant keeps its files (the python pickles' layout)."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: tuple[str, str]  # file, key of the class names
    label_key: str
    classes: int
    tv: str  # torchvision's class, for downloading


_LAYOUTS = {
    "cifar10": Layout(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        ("batches.meta", "label_names"), "labels", 10, "CIFAR10",
    ),
    "cifar100": Layout(
        "cifar-100-python", ("train",), ("test",), ("meta", "fine_label_names"), "fine_labels",
        100, "CIFAR100",
    ),
}  # fmt: skip


def _read_batches(
    folder: Path, files: tuple[str, ...], label_key: str, num_classes: int
) -> ImageSet:
    xs, ys = [], []
    for name in files:
        path = folder / name
        batch = load_pickle(path)
        if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
            raise CorruptArtifactError(f"{path}: expected a dict with 'data' and {label_key!r}")
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise CorruptArtifactError(
                f"{path}: expected data of shape (N, 3072) and N labels, "
                f"got {data.shape} and {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise CorruptArtifactError(f"{path}: labels outside 0..{num_classes - 1}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return ImageSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))


def load_cifar(name: str, root: str | None, download: bool = True) -> Dataset:
    spec = _LAYOUTS[name]
    base = resolve_root(root)
    folder = base / spec.folder
    probe = folder / spec.train[0]
    if not probe.exists():
        try_download(name, base, lambda: _tv_download(spec.tv, base), download)
        if not probe.exists():
            raise DatasetNotFoundError(
                f"{name}: no {spec.folder}/ under {base} (looked for {probe}); put the "
                f"extracted dataset there or pass --data-root DIR"
            )
    train = _read_batches(folder, spec.train, spec.label_key, spec.classes)
    test = _read_batches(folder, spec.test, spec.label_key, spec.classes)
    classes: tuple[str, ...] | None = None
    meta_file, meta_key = spec.meta
    if (folder / meta_file).exists():
        meta = load_pickle(folder / meta_file)
        if isinstance(meta, dict) and meta_key in meta:
            classes = tuple(str(c) for c in meta[meta_key])
    return make_dataset(name, train, test, classes, num_classes=spec.classes)


def _tv_download(cls_name: str, base: Path) -> None:
    import torchvision.datasets as tvd

    getattr(tvd, cls_name)(str(base), train=True, download=True)


@datasets.register("cifar10")
def load_cifar10(root: str | None = None, arg: str | None = None, download: bool = True) -> Dataset:
    """CIFAR-10 from ``ROOT/cifar-10-batches-py`` (torchvision's layout)."""
    return load_cifar("cifar10", root, download)


@datasets.register("cifar100")
def load_cifar100(
    root: str | None = None, arg: str | None = None, download: bool = True
) -> Dataset:
    """CIFAR-100 (fine labels) from ``ROOT/cifar-100-python``."""
    return load_cifar("cifar100", root, download)
