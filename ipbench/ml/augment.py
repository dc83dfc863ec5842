"""Batched on-device augmentation: random pad-and-crop and horizontal flip, no Python per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_params(
    n: int,
    pad: int,
    flip: bool,
    generator: torch.Generator,
    alternate_base: torch.Tensor | None = None,
    epoch: int = 0,
) -> dict[str, torch.Tensor]:
    """Random crop offsets and flip flags for ``n`` images, drawn on the CPU for reproducibility.

    With ``alternate_base`` (one bool per image, fixed for the whole run) the flips alternate
    instead: ``base`` in even epochs, ``~base`` in odd ones (airbench's alternating flip: over
    two epochs every image is seen once each way, which random flips give only on average).
    """
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    if not flip:
        flips = torch.zeros(n, dtype=torch.bool)
    elif alternate_base is not None:
        flips = alternate_base ^ bool(epoch % 2)
    else:
        flips = torch.rand(n, generator=generator) < 0.5
    return {"dy": dy, "dx": dx, "flip": flips}


def crop_flip(
    x: torch.Tensor,
    pad: int,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor,
    pad_mode: str = "zeros",
) -> torch.Tensor:
    """Pad by ``pad``, crop back at per-image offsets ``(dy, dx)``, mirror where ``flip``.

    ``pad_mode`` "zeros" fills the border with black, "reflect" mirrors the image into it
    (airbench; no black edge for the network to learn). Two ``gather`` calls select each
    image's rows and columns, so the whole batch moves at once; the mirror is folded into the
    column index (a flipped image reads its columns right to left), so it costs no extra copy.
    Exact on any dtype: the trainer crops the uint8 batch, a quarter of the bytes of floats.
    """
    b, c, h, w = x.shape
    cols = torch.arange(w, device=x.device).expand(b, w)
    if flip.any():
        cols = torch.where(flip.to(x.device)[:, None], w - 1 - cols, cols)
    if pad > 0:
        mode = {"zeros": "constant", "reflect": "reflect"}[pad_mode]
        x = F.pad(x, (pad, pad, pad, pad), mode=mode)
        rows = (dy.to(x.device)[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        x = torch.gather(x, 2, rows.expand(b, c, h, w + 2 * pad))
        cols = dx.to(x.device)[:, None] + cols
    elif not flip.any():
        return x
    return torch.gather(x, 3, cols[:, None, None, :].expand(b, c, h, w))
