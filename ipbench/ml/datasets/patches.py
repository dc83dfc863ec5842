"""``patches``: crops of the photographs scikit-image ships, a natural transfer set offline.

Knockoff Nets (Orekondy et al., CVPR 2019) query a service with natural images from another
distribution (the paper's ImageNet, OpenImages, Caltech-256). None of those can be fetched
here, and the procedural ``synthetic`` set is no stand-in: its stripes and rings carry none of
a photograph's statistics, and a substitute distilled from them copies nothing (CIFAR-10
quick, unprotected model: 10.1%). scikit-image's wheel, a registry package, carries seventeen
photographs (an astronaut, a cat, coffee, a rocket, two motorcycle views, the Hubble deep
field, a retina, stained tissue, a cameraman, brick, grass, gravel, coins, the moon, a clock,
cells). Random square crops of them, at random places and scales (a side from 1/16 to 1/2 of
the photograph's shorter side, log-uniform), resized with antialiasing and mirrored at random,
make a transfer set with natural image statistics and no class in common with CIFAR-10, as
single-image distillation does (Asano & Saeed, ICLR 2021: CIFAR classifiers distilled from
crops of one photograph). The photographs are capped at 512 pixels on their shorter side first
(the retina is 1411), so a crop is never drawn from a finer grain than the others.

Labels are the source photograph's index: a dataset needs labels, the attack ignores them
(it labels its queries with the service's answers). The files are read with Pillow from the
installed package's data folder; scikit-image itself is never imported. Deterministic: the
crops depend on a fixed seed, not on the run's.

``patches`` (10,000 training crops, 1,000 test crops, 32x32), ``patches:N`` or
``patches:N:SIZE``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import datasets
from ipbench.ml.datasets.base import Dataset, ImageSet, make_dataset

# The photographs of scikit-image's data folder (its diagrams, text, logos and test patterns
# left out): colour ones first, then grey ones (repeated over three channels).
PHOTOGRAPHS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
    "camera.png", "brick.png", "grass.png", "gravel.png", "coins.png", "moon.png",
    "clock_motion.png", "cell.png",
)  # fmt: skip
MAX_SIDE = 512  # shorter side of a photograph before cropping
CROP_SIDES = (1 / 16, 1 / 2)  # a crop's side, as a share of the photograph's shorter side
DEFAULT_TRAIN, DEFAULT_SIZE = 10_000, 32


def photo_folder() -> Path:
    """scikit-image's data folder, found without importing the package."""
    spec = importlib.util.find_spec("skimage")
    roots = list(spec.submodule_search_locations or []) if spec else []
    if not roots:
        raise IpbenchError(
            "dataset patches needs the photographs scikit-image ships: "
            "pip install scikit-image (a dependency of ipbench; no download at run time)"
        )
    return Path(roots[0]) / "data"


def load_photographs() -> list[torch.Tensor]:
    """Each photograph as float (3, H, W) in [0, 1], its shorter side capped at MAX_SIDE."""
    from PIL import Image

    folder = photo_folder()
    missing = [name for name in PHOTOGRAPHS if not (folder / name).is_file()]
    if missing:
        raise IpbenchError(
            f"dataset patches: {', '.join(missing)} missing from {folder} (this scikit-image "
            "ships other photographs); install scikit-image>=0.19"
        )
    photos = []
    for name in PHOTOGRAPHS:
        with Image.open(folder / name) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)
        short = min(x.shape[1:])
        if short > MAX_SIDE:
            scale = MAX_SIDE / short
            size = (round(x.shape[1] * scale), round(x.shape[2] * scale))
            x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0]
        photos.append(x)
    return photos


def crops(photos: list[torch.Tensor], n: int, size: int, seed: int) -> ImageSet:
    """``n`` random square crops, resized to ``size``, mirrored at random; labels: photo index
    (as many crops of each photograph, give or take one)."""
    g = torch.Generator().manual_seed(seed)
    which = (torch.arange(n) % len(photos))[torch.randperm(n, generator=g)]  # balanced
    lo, hi = (math.log(s) for s in CROP_SIDES)
    share = torch.exp(lo + (hi - lo) * torch.rand(n, generator=g))
    corner, flip = torch.rand(n, 2, generator=g), torch.rand(n, generator=g) < 0.5
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in range(n):
        photo = photos[int(which[i])]
        h, w = photo.shape[1:]
        side = max(2, round(float(share[i]) * min(h, w)))
        top, left = (
            int(c * (d - side + 1)) for c, d in zip(corner[i].tolist(), (h, w), strict=True)
        )
        patch = photo[None, :, top : top + side, left : left + side]
        patch = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True)[0]
        patch = patch.flip(-1) if flip[i] else patch
        out[i] = patch.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return ImageSet(out, which)


def parse_arg(arg: str | None) -> tuple[int, int]:
    """``None`` / ``"N"`` / ``"N:SIZE"`` -> (training crops, image side)."""
    if not arg:
        return DEFAULT_TRAIN, DEFAULT_SIZE
    parts = arg.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise IpbenchError(f"patches:N[:SIZE] needs integers, got {arg!r}") from None
    if len(values) > 2 or values[0] < len(PHOTOGRAPHS) or (len(values) == 2 and values[1] < 8):
        raise IpbenchError(
            f"patches:{arg} is invalid; valid: patches:N or patches:N:SIZE with "
            f"N >= {len(PHOTOGRAPHS)} crops and SIZE >= 8 pixels"
        )
    return values[0], values[1] if len(values) == 2 else DEFAULT_SIZE


@datasets.register("patches")
def load_patches(root: str | None = None, arg: str | None = None, download: bool = True) -> Dataset:
    """Crops of scikit-image's photographs (a Knockoff transfer set); ``root`` is not used."""
    n, size = parse_arg(arg)
    photos = load_photographs()
    train = crops(photos, n, size, seed=2019)
    test = crops(photos, max(len(PHOTOGRAPHS), n // 10), size, seed=2021)
    classes = tuple(name.rsplit(".", 1)[0] for name in PHOTOGRAPHS)
    name = "patches" if arg is None else f"patches:{arg}"
    return make_dataset(name, train, test, classes, num_classes=len(PHOTOGRAPHS))
