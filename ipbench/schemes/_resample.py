"""Pillow's resampling as matrices, so a batch resamples in torch exactly as Pillow would.

ActiveDaemon's reference pipeline (``../shared/SCHEMES.md``, "Resolution") upsamples each 32-px
image to 224 with Pillow BICUBIC, works there, saves an 8-bit PNG, and the classifier reads it
back through ``Resize([32, 32])``: Pillow BILINEAR, antialiased when shrinking. Neither filter
is torch's: torch's bicubic has a = -0.75 where Pillow's has a = -0.5, and torch's bilinear
downsampling does not widen its support the way Pillow's does. Pillow resizes separably, width
first, rounding to 8 bits after each pass; so does ``resize_uint8``, with each pass's weights
read off Pillow itself (an image of one-hot rows, resized: the filter's matrix), so no
kernel formula is re-derived here. It agrees with Pillow's own 8-bit resize to within one grey
level, which a test checks on photographs (the weights are read through a 32-bit integer
image, to 1e-9, so a fixed-point weight on a rounding boundary may still round the other way).
A hand-written torch version exists because it runs on whole batches, on any device.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@lru_cache(maxsize=32)
def pillow_matrix(n_in: int, n_out: int, filt: str) -> torch.Tensor:
    """(n_out, n_in) float64 weights of Pillow's ``filt`` resizing one axis from n_in to n_out."""
    if filt not in FILTERS:
        raise ValueError(f"filter {filt!r}; valid: {', '.join(FILTERS)}")
    one = 1 << 30  # a 32-bit integer image keeps each weight to 1e-9 (a float one to 1e-7)
    cols = []
    for i in range(n_in):
        row = np.zeros((1, n_in), dtype=np.int32)
        row[0, i] = one
        out = Image.fromarray(row, mode="I").resize((n_out, 1), FILTERS[filt])
        cols.append(np.asarray(out, dtype=np.float64)[0] / one)
    return torch.from_numpy(np.stack(cols, axis=1))


PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images (Resample.c)


def _pass(v: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    """One axis of a resize of 8-bit levels ``v`` (floats 0..255), in Pillow's fixed point:
    weights rounded to 22 fractional bits, half added, shifted, clipped to 8 bits. Float64
    holds those integer sums exactly (below 2^53)."""
    scale = float(1 << PRECISION_BITS)
    w = m.to(v.device, torch.float64) * scale
    w = torch.where(w < 0, w - 0.5, w + 0.5).trunc()  # C's (int)(k + 0.5 or - 0.5)
    moved = v.double().movedim(dim, -1) @ w.T
    out = torch.floor((moved + scale / 2) / scale).clamp(0, 255)
    return out.movedim(-1, dim).float()


CHUNK = 256  # images resampled at once: a 224-px float64 batch of 256 is 0.3 GB


def resize_uint8(x: torch.Tensor, size: int, filt: str) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) of 8-bit levels (uint8, or floats 0..255) resized to
    ``size`` x ``size`` with Pillow's ``filt``, width first; 8-bit levels as floats. Works
    through the batch ``CHUNK`` images at a time (a training set at 224 px would not fit)."""
    if len(x) > CHUNK:
        return torch.cat([resize_uint8(part, size, filt) for part in x.split(CHUNK)])
    v = x.float()
    h, w = v.shape[-2:]
    if w != size:
        v = _pass(v, pillow_matrix(w, size, filt), -1)
    if h != size:
        v = _pass(v, pillow_matrix(h, size, filt), -2)
    return v


def _resize01(x: torch.Tensor, size: int, filt: str) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return resize_uint8((x.clamp(0, 1) * 255).round(), size, filt) / 255


def upsample(x: torch.Tensor, size: int, filt: str = "bicubic") -> torch.Tensor:
    """Images in [0, 1] at ``size``, 8-bit, Pillow BICUBIC by default (the reference's
    ``ImageOps.fit(img, (224, 224))``); unchanged at their own size."""
    return _resize01(x, size, filt)


def downsample(x: torch.Tensor, size: int, filt: str = "bilinear") -> torch.Tensor:
    """Images in [0, 1] at ``size``, 8-bit, Pillow BILINEAR antialiased by default (the
    classifier's ``Resize([32, 32])``); unchanged at their own size."""
    return _resize01(x, size, filt)


def reference_resampling(
    x: torch.Tensor, up: int = 224, up_filter: str = "bicubic", down_filter: str = "bilinear"
) -> torch.Tensor:
    """down(up(x)) for images in [0, 1]: the reference's 32 -> 224 (BICUBIC) -> 32 (BILINEAR,
    antialiased) round trip, 8-bit after every step. Returns images in [0, 1]. ``CHUNK``
    images at a time: the upsampled set never exists whole (CIFAR-10's 22,500 authorized
    images at 224 px would be 13.5 GB of floats)."""
    if len(x) > CHUNK:
        parts = [reference_resampling(p, up, up_filter, down_filter) for p in x.split(CHUNK)]
        return torch.cat(parts)
    return downsample(upsample(x, up, up_filter), x.shape[-1], down_filter)


REFERENCE_RESIZE, REFERENCE_CROP = 36, 32  # the reference's stealthiness_test.py transforms


def reference_crop(x: torch.Tensor) -> torch.Tensor:
    """torchvision's Resize(36) (Pillow BILINEAR, either way) then CenterCrop(32), 8-bit:
    how the reference code's stealthiness test reads both images of a pair."""
    small = _resize01(x, REFERENCE_RESIZE, "bilinear")
    top = round((REFERENCE_RESIZE - REFERENCE_CROP) / 2)
    return small[..., top : top + REFERENCE_CROP, top : top + REFERENCE_CROP]


def blur3x3(x: torch.Tensor) -> torch.Tensor:
    """A 3x3 binomial blur ([1, 2, 1] / 4 per axis, edges replicated), 8-bit: a resampling-like
    softening of about the same strength, made with no knowledge of the owner's filters."""
    k = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    levels = (x.clamp(0, 1) * 255).round()
    c = levels.shape[1]
    pad = torch.nn.functional.pad(levels, (1, 1, 1, 1), mode="replicate")
    horiz = torch.nn.functional.conv2d(pad, k.view(1, 1, 1, 3).repeat(c, 1, 1, 1), groups=c)
    both = torch.nn.functional.conv2d(horiz, k.view(1, 1, 3, 1).repeat(c, 1, 1, 1), groups=c)
    return both.round().clamp(0, 255) / 255


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image through Pillow's JPEG encoder at ``quality`` and back (4:4:4 above 90)."""
    out = []
    for img in (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu():
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality)
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(back.copy()).permute(2, 0, 1))
    return torch.stack(out).to(x.device).float() / 255
