from __future__ import annotations

import torch

from ipbench.registry import schemes
from ipbench.tokens.bch import IdentityCodec
from ipbench.tokens.stegastamp import TokenDecoder, TokenEncoder


def test_token_is_dynamic_per_image_and_per_string():
    """The paper's "dynamic" property: G_e(x_i, s) != G_e(x_j, s) and G_e(x, s_i) != G_e(x, s_j)."""
    torch.manual_seed(0)
    codec = IdentityCodec()
    enc = TokenEncoder(codec.n_bits, 32).eval()
    x = torch.rand(2, 3, 32, 32)
    s_a, s_b = codec.encode("alice"), codec.encode("bob")
    with torch.no_grad():
        t_xa = enc(s_a[None].expand(2, -1), x)
        t_b = enc(s_b[None].expand(2, -1), x)
    assert (t_xa[0] - t_xa[1]).abs().max() > 1e-4  # same string, different images
    assert (t_xa[0] - t_b[0]).abs().max() > 1e-4  # same image, different strings


def test_decoder_reads_bits_from_any_resolution_divisible_by_16():
    for size in (32, 64):
        dec = TokenDecoder(127, size)
        assert dec(torch.rand(3, 3, size, size)).shape == (3, 127)


def test_config_defaults_are_the_papers():
    cfg = schemes.get("activedaemon").Config()
    assert (cfg.l_ssim, cfg.l_lpips, cfg.l_secret, cfg.l_critic) == (-2.0, 1.5, 1.5, 0.5)
    assert (
        cfg.gamma == 0.5 and cfg.strategy == "single" and cfg.target_class == 5 and cfg.bch_t == 10
    )
