"""User-supplied data: ``npz:PATH`` (arrays) and ``imagefolder:PATH[:SIZE]`` (class folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ipbench.datasets.base import Dataset, ImageSet, make_dataset
from ipbench.datasets.torchvision_sets import _open, _pil_to_uint8
from ipbench.errors import DatasetNotFoundError, IpbenchError
from ipbench.registry import datasets

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _to_nchw_uint8(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if arr.ndim == 3:  # (N, H, W) grayscale
        arr = arr[:, None]
    if arr.ndim != 4:
        raise IpbenchError(f"{path}: {key} must be (N, H, W, C) or (N, C, H, W), got {arr.shape}")
    if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0 + 1e-6:
            arr = np.round(arr * 255.0)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr))


@datasets.register("npz")
def load_npz(root: str | None = None, arg: str | None = None, download: bool = True) -> Dataset:
    """``npz:PATH``: arrays x_train, y_train, x_test, y_test (images uint8 or floats in [0,1])."""
    if not arg:
        raise IpbenchError("npz needs a path: --dataset npz:PATH/TO/FILE.npz")
    path = Path(arg).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"npz: no file at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise IpbenchError(
                    f"{path}: missing arrays {', '.join(missing)}; an npz dataset needs "
                    f"{', '.join(NPZ_KEYS)} (found {', '.join(f.files) or 'none'})"
                )
            arrays = {k: f[k] for k in NPZ_KEYS}
    except (OSError, ValueError) as exc:
        raise IpbenchError(f"{path}: not a readable .npz file ({exc})") from None
    sets = []
    for split in ("train", "test"):
        x = _to_nchw_uint8(arrays[f"x_{split}"], f"x_{split}", path)
        y = torch.from_numpy(np.asarray(arrays[f"y_{split}"]).astype(np.int64).reshape(-1))
        sets.append(ImageSet(x, y))
    return make_dataset(f"npz:{path.name}", sets[0], sets[1])


@datasets.register("imagefolder")
def load_imagefolder(
    root: str | None = None, arg: str | None = None, download: bool = True
) -> Dataset:
    """``imagefolder:PATH[:SIZE]``: ``PATH/train/<class>/*`` and ``PATH/val|test/<class>/*``.

    Images are decoded once, resized to SIZE x SIZE (default 224, the papers' ImageNet size)
    and held as uint8; a 400-class ImageNet subset at 224 needs tens of GB, so pass a smaller
    SIZE on a small machine.
    """
    import torchvision.datasets as tvd

    if not arg:
        raise IpbenchError("imagefolder needs a path: --dataset imagefolder:PATH[:SIZE]")
    path_s, size = arg, 224
    head, sep, tail = arg.rpartition(":")
    if sep and tail.isdigit():
        path_s, size = head, int(tail)
    path = Path(path_s).expanduser()
    test_dir = next((path / d for d in ("val", "test") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise DatasetNotFoundError(
            f"imagefolder: expected {path}/train/<class>/ and {path}/val/ (or test/) folders"
        )
    train_tv = tvd.ImageFolder(str(path / "train"))
    test_tv = tvd.ImageFolder(str(test_dir))
    if test_tv.classes != train_tv.classes:
        raise IpbenchError(f"imagefolder: {test_dir} has other classes than {path}/train")
    sets = []
    for ds in (train_tv, test_tv):
        images = [_open(Path(p)) for p, _ in ds.samples]
        labels = torch.tensor([t for _, t in ds.samples], dtype=torch.int64)
        sets.append(ImageSet(_pil_to_uint8(images, size), labels))
    return make_dataset(f"imagefolder:{path.name}", sets[0], sets[1], tuple(train_tv.classes))
