"""Image conversions every part shares: what a user really sends is an 8-bit image."""

from __future__ import annotations

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] -> uint8 images, as sent over the wire."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] rounded to the 256 levels an 8-bit image can hold."""
    return (x.clamp(0, 1) * 255).round() / 255


def gaussian_blur(x: torch.Tensor, kernel_size: list[int], sigma: list[float]) -> torch.Tensor:
    """torchvision's ``gaussian_blur``, imported on first use: importing torchvision costs
    about 1.5 s (its ops pull in torch._dynamo), which every CLI start paid for a filter only
    the token generator's noise layers run."""
    from torchvision.transforms.functional import gaussian_blur as blur

    return blur(x, kernel_size, sigma)
