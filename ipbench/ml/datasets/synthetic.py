"""``synthetic``: a procedural, learnable 10-class 32x32 RGB set that needs no files.

A class is one of five periodic patterns (horizontal stripes, vertical stripes, a diagonal
plaid, concentric rings, a checkerboard) at one of two spatial-period bands. Phase, position,
colour, contrast, a small occluding blob and pixel noise vary at random, and every class is
closed under translation and horizontal flip, so the standard crop-and-flip augmentation keeps
labels valid. A small CNN learns it in a few epochs but not at once. Deterministic per seed,
generated in one vectorised pass (5,000 images take well under a second).
"""

from __future__ import annotations

import math

import torch

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import datasets
from ipbench.ml.datasets.base import Dataset, ImageSet, make_dataset

NUM_CLASSES = 10
MAX_IMAGES = 50_000  # synthetic:N, as many as CIFAR-10; generating takes ~75 kB per image
PATTERNS = ("hstripes", "vstripes", "plaid", "rings", "checker")
CLASS_NAMES = tuple(
    f"{PATTERNS[k % 5]}_{'fine' if k < 5 else 'coarse'}" for k in range(NUM_CLASSES)
)


def generate(n: int, seed: int, size: int = 32, noise: float = 0.08) -> ImageSet:
    """``n`` images with balanced labels, fully determined by ``seed``."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    y = torch.arange(n) % NUM_CLASSES
    y = y[torch.randperm(n, generator=g)]
    pattern = (y % 5)[:, None, None]
    period = torch.where(y < 5, 3.5 + 1.5 * rand(n), 8.0 + 4.0 * rand(n))
    f = (2 * math.pi / period)[:, None, None]
    ph1, ph2 = (2 * math.pi * rand(2, n, 1, 1)).unbind(0)
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = (t[None] for t in torch.meshgrid(coords, coords, indexing="ij"))
    cy, cx = ((rand(2, n, 1, 1) - 0.5) * size).unbind(0)
    diag = 1 / math.sqrt(2)
    waves = torch.stack(
        [
            torch.sin(f * yy + ph1),
            torch.sin(f * xx + ph1),
            0.5 * (torch.sin(f * diag * (xx + yy) + ph1) + torch.sin(f * diag * (xx - yy) + ph2)),
            torch.sin(f * ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() + ph1),
            torch.sin(f * xx + ph1) * torch.sin(f * yy + ph2) * 1.4,
        ]
    )  # (5, n, H, W)
    wave = waves.gather(0, pattern[None].expand(1, n, size, size))[0].clamp(-1, 1)
    # A random colour, modulated with a guaranteed contrast so every pattern is visible.
    colour = 0.3 + 0.7 * rand(n, 3, 1, 1)
    contrast = 0.5 + 0.4 * rand(n, 1, 1, 1)
    img = colour * (1 - contrast * (0.5 - 0.5 * wave[:, None]))
    # A small soft blob at a random place hides part of the pattern.
    by, bx = ((rand(2, n, 1, 1) - 0.5) * size).unbind(0)
    radius = size * (0.05 + 0.10 * rand(n, 1, 1))
    mask = torch.sigmoid((radius - ((yy - by) ** 2 + (xx - bx) ** 2).sqrt()) * 1.5)[:, None]
    img = img * (1 - mask) + rand(n, 3, 1, 1) * mask
    img = img + noise * torch.randn(img.shape, generator=g)
    x = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(x, y)


@datasets.register("synthetic")
def load_synthetic(root: str | None = None, arg: str | None = None) -> Dataset:
    """``synthetic`` or ``synthetic:N`` (N training images, default 5000, at most
    ``MAX_IMAGES``; test is N/5).

    The data seed is fixed (not the run seed) so every run of every scheme sees the same task.
    """
    n = 5000
    if arg:
        try:
            n = int(arg)
        except ValueError:
            raise IpbenchError(f"synthetic:N needs an integer N, got {arg!r}") from None
        if not NUM_CLASSES <= n <= MAX_IMAGES:
            raise IpbenchError(f"synthetic:N needs N from {NUM_CLASSES} to {MAX_IMAGES:,}, got {n}")
    train = generate(n, seed=1234)
    test = generate(max(NUM_CLASSES, n // 5), seed=4321)
    return make_dataset("synthetic" if arg is None else f"synthetic:{n}", train, test, CLASS_NAMES)
