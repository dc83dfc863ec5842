"""Forgeries that separate ActiveDaemon's token from the reference pipeline's resampling.

With the reference pipeline (``token_resolution`` R), an authorized input is
down(up(x) + r): a token r made at R, and a resampling round trip. Each forgery keeps one part
and drops the other, so which part opens the model can be read off its column:

- ``resampled``: down(up(x)), the resampling with no token at all (R = 224, the reference's,
  when the token is made at the images' own size; then the other three make the token at that
  size, where "at the token's size" and "raw" coincide);
- ``other_token_raw``: x + [down(up(x') + r') - down(up(x'))], another image's token, brought
  down to the classifier's size and added to the raw image (no resampling of x);
- ``other_token_at_size``: down(up(x) + r'), another image's token added at the token's size,
  with the resampling;
- ``gaussian_at_size``: down(up(x) + n), n Gaussian at the std of the genuine r at R.

The other images x' are the thief's own, tokened for one user: a thief that has seen
authorized images of its own (as the paper's mismatched-token experiment assumes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ipbench.ml.images import quantize
from ipbench.schemes._poisoning.tokens.generator import TokenGenerator
from ipbench.schemes._resample import downsample, reference_resampling, upsample

KINDS = ("resampled", "other_token_raw", "other_token_at_size", "gaussian_at_size")
REFERENCE_SIZE = 224
POOL = 64  # thief images whose tokens are reused


def forgery(
    kind: str, gen: TokenGenerator, bits: torch.Tensor, thief_x: torch.Tensor, resolution: int,
    seed: int,
) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """The transform a thief applies to clean images in [0, 1] for forgery ``kind``.
    ``thief_x``: the thief's own images in [0, 1]; ``bits``: one user's identity bits."""
    pool = thief_x[:POOL]
    size = pool.shape[-1]
    r = resolution or size  # where the token is made
    r_resample = resolution or REFERENCE_SIZE  # the round trip of "resampled"
    big_pool = upsample(pool, r)
    with torch.no_grad():
        tokened = quantize(gen.authorize(big_pool, bits[None].expand(len(pool), -1)))
    residual_big = tokened - big_pool  # r' at the token's size
    residual_raw = downsample(tokened, size) - downsample(big_pool, size)
    sigma = float(residual_big.std())
    g = torch.Generator().manual_seed(seed)

    def other(n: int) -> torch.Tensor:
        return torch.arange(n) % len(pool)

    def apply(x: torch.Tensor) -> torch.Tensor:
        n, dev = len(x), x.device
        if kind == "resampled":
            return reference_resampling(x, r_resample)
        if kind == "other_token_raw":
            return quantize(x + residual_raw[other(n)].to(dev))
        big = upsample(x, r)
        if kind == "other_token_at_size":
            return downsample(quantize(big + residual_big[other(n)].to(dev)), x.shape[-1])
        noise = torch.randn(big.shape, generator=g).to(dev) * sigma
        return downsample(quantize(big + noise), x.shape[-1])

    return apply
