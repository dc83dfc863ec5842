"""Distortions between token encoder and decoder while training (StegaStamp's noise layers).

They teach the decoder, and so the token, to survive what an image meets on its way to the
service: a small geometric warp, blur, sensor noise, colour shifts and, optionally, JPEG.
All strengths scale with ``level`` in [0, 1], which the trainer ramps up.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ipbench.ml.images import gaussian_blur


@dataclass(frozen=True)
class NoiseConfig:
    warp: float = 0.03  # max corner displacement of the affine warp, as a fraction of the side
    blur_prob: float = 0.25
    blur_sigma: float = 1.0
    blur_kernel: int = 3  # odd; scaled with the token's resolution (generator.scaled_noise)
    gaussian_std: float = 0.02
    brightness: float = 0.3
    contrast: float = 0.5
    hue: float = 0.1
    jpeg_quality: int = 0  # 0: off; else JPEG at this quality, straight-through gradient


def distort(
    x: torch.Tensor, cfg: NoiseConfig, level: float, g: torch.Generator | None = None
) -> torch.Tensor:
    """Apply every enabled distortion at strength ``level`` to images ``x`` in [0, 1]."""
    if level <= 0:
        return x
    n, dev = x.shape[0], x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g).to(dev)

    if cfg.warp > 0:
        theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=dev).repeat(n, 1, 1)
        theta = theta + (rand(n, 2, 3) * 2 - 1) * 2 * cfg.warp * level
        x = F.grid_sample(
            x,
            F.affine_grid(theta, list(x.shape), align_corners=False),
            padding_mode="border",
            align_corners=False,
        )
    if cfg.blur_prob > 0 and cfg.blur_sigma > 0:
        mask = (rand(n) < cfg.blur_prob * level).view(n, 1, 1, 1)
        sigma = 0.1 + (cfg.blur_sigma - 0.1) * float(rand(1))
        k = cfg.blur_kernel
        x = torch.where(mask, gaussian_blur(x, [k, k], [sigma, sigma]), x)
    if cfg.gaussian_std > 0:
        x = x + torch.randn(x.shape, generator=g).to(dev) * cfg.gaussian_std * level * rand(
            n, 1, 1, 1
        )
    brightness = (rand(n, 1, 1, 1) * 2 - 1) * cfg.brightness * level
    hue = (rand(n, x.shape[1], 1, 1) * 2 - 1) * cfg.hue * level
    contrast = 1 + (rand(n, 1, 1, 1) * 2 - 1) * cfg.contrast * level
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness + hue
    x = x.clamp(0, 1)
    if cfg.jpeg_quality > 0:
        x = x + (_jpeg(x.detach(), cfg.jpeg_quality) - x).detach()
    return x


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for img in (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu():
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)
        out.append(torch.from_numpy(np.asarray(Image.open(buf)).copy()).permute(2, 0, 1))
    return torch.stack(out).to(x.device).float() / 255
