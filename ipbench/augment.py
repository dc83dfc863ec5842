"""Batched on-device augmentation: random pad-and-crop and horizontal flip, no Python per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_params(
    n: int, pad: int, flip: bool, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random crop offsets and flip flags for ``n`` images, drawn on the CPU for reproducibility."""
    return {
        "dy": torch.randint(0, 2 * pad + 1, (n,), generator=generator),
        "dx": torch.randint(0, 2 * pad + 1, (n,), generator=generator),
        "flip": (torch.rand(n, generator=generator) < 0.5)
        if flip
        else torch.zeros(n, dtype=torch.bool),
    }


def crop_flip(
    x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Zero-pad by ``pad``, crop back at per-image offsets ``(dy, dx)``, mirror where ``flip``.

    Two ``gather`` calls select each image's rows and columns, so the whole batch moves at once.
    """
    if pad > 0:
        b, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = (dy.to(x.device)[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        padded = torch.gather(padded, 2, rows.expand(b, c, h, w + 2 * pad))
        cols = (dx.to(x.device)[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = torch.gather(padded, 3, cols.expand(b, c, h, w))
    if flip.any():
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    return x
