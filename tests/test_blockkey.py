"""Secret-key block-wise transformation (AprilPyone & Kiya): the transforms are keyed bijections
acting block by block, and on the smoke task the key unlocks the model while plain images and a
random key of the same kind do not."""

from __future__ import annotations

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.images import quantize
from ipbench.schemes.blockkey import KINDS, BlockKeyConfig, blockwise, draw_key, key_bits

CHANCE_PLUS = 25.0  # 10 classes: chance is 10%


def _images(n: int = 3, c: int = 3, size: int = 8) -> torch.Tensor:
    return quantize(torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(1)))


def _per_block(t: torch.Tensor, m: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, H/m, W/m, C*m*m): the values of each block."""
    return t.unfold(2, m, m).unfold(3, m, m).permute(0, 2, 3, 1, 4, 5).flatten(3)


@pytest.mark.parametrize("kind", KINDS)
def test_each_transform_is_a_keyed_bijection_of_every_block(kind):
    x, m = _images(), 4
    key = draw_key(kind, m * m * 3, torch.Generator().manual_seed(0))
    out = blockwise(x, key, kind, m)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(quantize(out), out)  # still an 8-bit image
    assert not torch.equal(out, x)
    if kind == "shuffle":  # each M x M x C block keeps its own values, rearranged
        assert torch.equal(_per_block(out, m).sort(-1).values, _per_block(x, m).sort(-1).values)
    # a change inside one block changes that block only
    y = x.clone()
    y[0, :, :m, :m] = 1 - y[0, :, :m, :m]
    diff = (blockwise(y, key, kind, m) != out).any(1)[0]
    assert diff[:m, :m].any() and not diff[m:, :].any() and not diff[:, m:].any()
    # bijective: distinct images stay distinct; the same key always gives the same image
    assert torch.equal(blockwise(x, key, kind, m), out)


def test_shuffle_and_negpos_are_invertible_with_the_key():
    x, m = _images(), 4
    perm = draw_key("shuffle", 48, torch.Generator().manual_seed(3))
    inv = torch.argsort(perm)
    assert torch.equal(blockwise(blockwise(x, perm, "shuffle", m), inv, "shuffle", m), x)
    bits = draw_key("negpos", 48, torch.Generator().manual_seed(3))
    assert torch.allclose(blockwise(blockwise(x, bits, "negpos", m), bits, "negpos", m), x)


def test_key_space_and_settings_are_checked():
    assert key_bits("negpos", 48) == 48 and key_bits("shuffle", 48) > 200
    with pytest.raises(IpbenchError, match="valid: shuffle, negpos, ffx"):
        schemes.get("blockkey")(BlockKeyConfig(transform="rot13"))  # type: ignore[arg-type]
    with pytest.raises(IpbenchError, match="does not divide"):
        blockwise(_images(size=6), torch.arange(48), "shuffle", 4)


@pytest.mark.slow
def test_negpos_key_unlocks_and_plain_or_random_key_images_do_not(scheme_smoke):
    m, wall = scheme_smoke("blockkey", transform="negpos")
    assert m["A_or"] > 80  # the smoke task is learnt
    assert m["A_ad"] > m["A_or"] - 5  # authorized: near the unprotected model
    assert m["A_ud"] < CHANCE_PLUS and m["A_td"] < CHANCE_PLUS  # plain images / a random key
    assert m["PSNR"] < 20  # the keyed image is scrambled on purpose, not a hidden token
    assert m["key_bits"] == 48 and m["capacity"] == 1
    assert wall < 300


@pytest.mark.slow
def test_shuffle_key_unlocks_but_leaks_on_the_synthetic_set(scheme_smoke):
    """The papers' default. A within-block shuffle keeps each block's values, which is enough
    for the synthetic classes (periodic patterns): plain images and random keys keep ~50-60%
    here (measured 51 / 61), far below the key's ~97 but not chance; documented."""
    m, _ = scheme_smoke("blockkey")
    assert m["A_ad"] > m["A_or"] - 5
    assert m["A_ad"] - m["A_ud"] > 30 and m["A_ad"] - m["A_td"] > 20
