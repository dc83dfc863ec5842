"""User-supplied data: ``npz:PATH`` (arrays) and ``imagefolder:PATH[:SIZE]`` (class folders)."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ipbench.core.errors import DatasetNotFoundError, IpbenchError
from ipbench.core.registry import datasets
from ipbench.ml.datasets.base import Dataset, ImageSet, make_dataset
from ipbench.ml.datasets.torchvision_sets import _open, _pil_to_uint8

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_IMAGE_SIZE = 2048  # imagefolder:PATH:SIZE; every image is held at SIZE x SIZE in memory
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n:,} bytes"


def _memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_npz(path: Path) -> None:
    """Each array's header against what the file holds and this machine's memory, before any
    data is read: a file that is not an .npz, an array whose header claims more bytes than
    stored (286 GiB in a small file) or more than the memory is refused without allocating."""
    total = 0
    with zipfile.ZipFile(path) as z:
        members = {n.removesuffix(".npy"): z.getinfo(n) for n in z.namelist()}
        missing = [k for k in NPZ_KEYS if k not in members]
        if missing:
            raise IpbenchError(
                f"{path}: missing arrays {', '.join(missing)}; an npz dataset needs "
                f"{', '.join(NPZ_KEYS)} (found {', '.join(members) or 'none'})"
            )
        for key in NPZ_KEYS:
            info = members[key]
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in HEADER_READERS:
                    raise IpbenchError(f"{path}: {key} is .npy format {version}; valid: 1.0, 2.0")
                shape, _, dtype = HEADER_READERS[version](fh)
                stored = info.file_size - fh.tell()
            if dtype.hasobject:
                raise IpbenchError(f"{path}: {key} holds Python objects; valid: numbers")
            size = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if size != stored:
                raise IpbenchError(
                    f"{path}: {key}'s header claims shape {shape} of {dtype} ({_gib(size)}) but "
                    f"the file holds {_gib(stored)} of it; the file is damaged"
                )
            total += size
    memory = _memory_bytes()
    if memory is not None and total > memory:
        raise IpbenchError(
            f"{path}: its arrays need {_gib(total)}, more than this machine's {_gib(memory)} "
            "of memory"
        )


def _to_nchw_uint8(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """Images as uint8 (N, C, H, W): integers must lie in 0..255, floats in [0, 1]."""
    if arr.ndim == 3:  # (N, H, W) grayscale
        arr = arr[:, None]
    if arr.ndim != 4:
        raise IpbenchError(f"{path}: {key} must be (N, H, W, C) or (N, C, H, W), got {arr.shape}")
    if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.dtype != np.uint8 and arr.size:
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise IpbenchError(f"{path}: {key} holds NaN or infinite pixels")
            low, high = float(arr.min()), float(arr.max())
            if low < 0.0 or high > 1.0:
                raise IpbenchError(
                    f"{path}: {key} is float with pixels in [{low:g}, {high:g}]; float images "
                    "must lie in [0, 1] (or store uint8 0..255)"
                )
            arr = np.round(arr * 255.0)
        elif np.issubdtype(arr.dtype, np.integer):
            low, high = int(arr.min()), int(arr.max())
            if low < 0 or high > 255:
                raise IpbenchError(
                    f"{path}: {key} holds integer pixels in [{low}, {high}]; valid: 0..255"
                )
        else:
            raise IpbenchError(f"{path}: {key} has dtype {arr.dtype}; valid: uint8 or float")
        arr = arr.astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _labels(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """Class indices as int64 (N,): integer dtypes only (floats and strings are refused)."""
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise IpbenchError(f"{path}: {key} has dtype {arr.dtype}; labels must be integers")
    flat = arr.reshape(-1)
    unsigned = flat.size and np.issubdtype(arr.dtype, np.unsignedinteger)
    if unsigned and (high := int(flat.max())) > np.iinfo(np.int64).max:  # int64: shown negative
        raise IpbenchError(f"{path}: {key} holds label {high}; labels are 0..K-1")
    if arr.ndim > 1 and flat.size != len(arr):
        raise IpbenchError(f"{path}: {key} must be (N,) class indices, got shape {arr.shape}")
    return torch.from_numpy(flat.astype(np.int64))


@datasets.register("npz")
def load_npz(root: str | None = None, arg: str | None = None, download: bool = True) -> Dataset:
    """``npz:PATH``: arrays x_train, y_train, x_test, y_test (images uint8 or floats in [0,1])."""
    if not arg:
        raise IpbenchError("npz needs a path: --dataset npz:PATH/TO/FILE.npz")
    path = Path(arg).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"npz: no file at {path}")
    try:
        _check_npz(path)
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise IpbenchError(f"{path}: not a readable .npz file ({reason})") from None
    sets = []
    for split in ("train", "test"):
        x = _to_nchw_uint8(arrays[f"x_{split}"], f"x_{split}", path)
        y = _labels(np.asarray(arrays[f"y_{split}"]), f"y_{split}", path)
        if len(y) != len(x):
            raise IpbenchError(
                f"{path}: x_{split} has {len(x)} images but y_{split} {len(y)} labels"
            )
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
    if not arg:
        raise IpbenchError("imagefolder needs a path: --dataset imagefolder:PATH[:SIZE]")
    path_s, size = arg, 224
    head, sep, tail = arg.rpartition(":")
    if sep and tail.lstrip("+-").isnumeric():  # a SIZE was meant (also "0", "-5", "²")
        if not (tail.isascii() and tail.isdigit() and 1 <= int(tail) <= MAX_IMAGE_SIZE):
            raise IpbenchError(
                f"imagefolder:{head}:{tail}: SIZE must be a whole number of pixels from 1 to "
                f"{MAX_IMAGE_SIZE}; got {tail!r}"
            )
        path_s, size = head, int(tail)
    path = Path(path_s).expanduser()
    test_dir = next((path / d for d in ("val", "test") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise DatasetNotFoundError(
            f"imagefolder: expected {path}/train/<class>/ and {path}/val/ (or test/) folders"
        )
    _refuse_links_read_twice(path)
    train_tv, test_tv = _image_folder(path / "train"), _image_folder(test_dir)
    if test_tv.classes != train_tv.classes:
        raise IpbenchError(
            f"imagefolder: {test_dir} has classes {', '.join(test_tv.classes)} but {path}/train "
            f"has {', '.join(train_tv.classes)}; both need the same class folders"
        )
    sets = []
    for ds in (train_tv, test_tv):
        images = [_open(Path(p)) for p, _ in ds.samples]
        labels = torch.tensor([t for _, t in ds.samples], dtype=torch.int64)
        sets.append(ImageSet(_pil_to_uint8(images, size), labels))
    return make_dataset(f"imagefolder:{path.name}", sets[0], sets[1], tuple(train_tv.classes))


def _refuse_links_read_twice(root: Path) -> None:
    """torchvision follows symlinked folders: a link back to a folder above it (``a/loop ->
    ..``) is read over and over, each image many times and under the wrong class, and a
    second link to one folder reads its images twice. Both are refused, naming the link."""
    seen: dict[str, str] = {}
    for here, _, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            raise IpbenchError(
                f"imagefolder: {here} is {seen[real]} again (a symlink loop, or a second link "
                "to one folder): its images would be read more than once; remove the link"
            )
        seen[real] = here


def _image_folder(folder: Path):  # -> torchvision.datasets.ImageFolder
    """torchvision's class-folder scan, its errors (no class folder, no image) as one line."""
    import torchvision.datasets as tvd

    try:
        return tvd.ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IpbenchError(f"imagefolder: {folder}: {reason}") from None
