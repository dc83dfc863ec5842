from __future__ import annotations

import math

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.metrics.image_quality import ergas, image_quality, lpips_distance, psnr, ssim


def test_psnr_matches_hand_computation():
    x = torch.zeros(1, 3, 4, 4)
    y = torch.full((1, 3, 4, 4), 0.1)  # MSE = 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr(x, y) == pytest.approx(20.0)
    y2 = torch.cat([y, torch.full((1, 3, 4, 4), 0.01)])  # second image: MSE 1e-4 -> 40 dB
    assert psnr(torch.zeros(2, 3, 4, 4), y2) == pytest.approx(30.0)


def test_ergas_matches_hand_computation():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0], x[0, 1], x[0, 2] = 0.5, 0.25, 1.0
    y = x.clone()
    y[0, 0] += 0.05  # RMSE_c / mean_c = 0.1, 0, 0
    expected = 100 * 4 * math.sqrt((0.1**2 + 0 + 0) / 3)
    assert ergas(x, y) == pytest.approx(expected)
    assert ergas(x, y, ratio=1) == pytest.approx(expected / 4)


def test_ssim_is_one_for_identical_and_lower_for_noisy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert ssim(x, (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)) < 0.9


def test_ssim_of_flat_images_matches_hand_computation():
    # Flat images: no variance, so SSIM = luminance term (2 a b + C1) / (a^2 + b^2 + C1) with
    # C1 = (0.01 L)^2, L = 1 (the contrast-structure term is C2 / C2 = 1).
    a, b, c1 = 0.5, 0.25, 0.01**2
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    assert ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)


def test_lpips_is_reported_missing_offline_never_computed_on_a_random_backbone():
    x = torch.rand(1, 3, 32, 32)
    value = lpips_distance(x, x)
    # the tests run offline (IPBENCH_OFFLINE=1): no ImageNet backbone, so a reason, not a number
    assert isinstance(value, str) and "LPIPS" in value
    assert isinstance(image_quality(x, x)["LPIPS"], str)


def test_shape_mismatch_is_an_error():
    with pytest.raises(IpbenchError, match="one shape"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_each_lpips_caller_gets_its_own_model(monkeypatch):
    """The token generator moves its LPIPS model to its device and freezes it; the metric's
    model must not follow (a GPU run fed CPU images to a model moved to cuda)."""
    from ipbench.metrics import image_quality

    shared = torch.nn.Linear(2, 2)
    monkeypatch.setattr(image_quality, "_load_lpips", lambda: (shared, ""))
    first, _ = image_quality._lpips_model()
    first.to(torch.float64).requires_grad_(False)  # what a caller may do to its copy
    second, reason = image_quality._lpips_model()
    assert first is not shared and second is not first and reason == ""
    assert second.weight.dtype == torch.float32 and second.weight.requires_grad
    assert torch.equal(second.weight, shared.weight)
