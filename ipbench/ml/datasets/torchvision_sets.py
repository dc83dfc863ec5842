"""MNIST and GTSRB in the folder layouts torchvision leaves, read with torchvision's readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ipbench.core.errors import CorruptArtifactError, DatasetNotFoundError, IpbenchError
from ipbench.core.registry import datasets
from ipbench.ml.datasets.base import Dataset, ImageSet, make_dataset
from ipbench.ml.datasets.locate import resolve_root, try_download

GTSRB_SIZE = 32  # GTSRB images vary in size; the papers train at 32x32
GTSRB_CLASSES = 43


@datasets.register("mnist")
def load_mnist(root: str | None = None, arg: str | None = None, download: bool = True) -> Dataset:
    """MNIST from ``ROOT/MNIST/raw`` (idx files), 1x28x28."""
    import torchvision.datasets as tvd

    base = resolve_root(root)
    raw = base / "MNIST" / "raw"
    probe = raw / "train-images-idx3-ubyte"
    if not probe.exists():
        try_download(
            "mnist", base, lambda: tvd.MNIST(str(base), train=True, download=True), download
        )
        if not probe.exists():
            raise DatasetNotFoundError(
                f"mnist: no MNIST/raw/ under {base} (looked for {probe}); put the idx files "
                f"there or pass --data-root DIR"
            )
    sets = []
    for train in (True, False):
        ds = tvd.MNIST(str(base), train=train, download=False)
        sets.append(ImageSet(ds.data.unsqueeze(1).to(torch.uint8), ds.targets.to(torch.int64)))
    return make_dataset("mnist", sets[0], sets[1], tuple(str(i) for i in range(10)), num_classes=10)


def _pil_to_uint8(images: list, size: int) -> torch.Tensor:
    from PIL import Image

    arr = np.stack(
        [
            np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            for im in images
        ]
    )
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@datasets.register("gtsrb")
def load_gtsrb(root: str | None = None, arg: str | None = None, download: bool = True) -> Dataset:
    """GTSRB from ``ROOT/gtsrb/GTSRB`` (torchvision's layout), resized to 32x32."""
    import torchvision.datasets as tvd

    base = resolve_root(root)
    needed = [
        base / "gtsrb" / "GTSRB" / "Training",
        base / "gtsrb" / "GTSRB" / "Final_Test" / "Images",
        base / "gtsrb" / "GT-final_test.csv",
    ]

    def fetch() -> None:
        for split in ("train", "test"):
            tvd.GTSRB(str(base), split=split, download=True)

    if not all(p.exists() for p in needed):
        try_download("gtsrb", base, fetch, download)
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise DatasetNotFoundError(
                f"gtsrb: torchvision's GTSRB layout is incomplete under {base} (missing "
                f"{', '.join(missing)}); put the dataset there or pass --data-root DIR"
            )
    sets = []
    for split in ("train", "test"):
        ds = tvd.GTSRB(str(base), split=split, download=False)
        samples = ds._samples  # list of (path, label); decode once, resize, stack
        images = [_open(Path(p)) for p, _ in samples]
        labels = torch.tensor([int(t) for _, t in samples], dtype=torch.int64)
        sets.append(ImageSet(_pil_to_uint8(images, GTSRB_SIZE), labels))
    return make_dataset("gtsrb", sets[0], sets[1], num_classes=GTSRB_CLASSES)


def _open(path: Path):
    """One decoded image; an unreadable one (zero bytes, truncated, not an image) or one over
    Pillow's decompression-bomb limit (a few bytes that decode to gigabytes; its warning zone
    included) is an error naming the file."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise IpbenchError(
            f"{path}: refused, too many pixels to decode safely ({exc}); shrink the image"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptArtifactError(f"{path}: not a readable image ({reason})") from None
