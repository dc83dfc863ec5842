"""The reference pipeline's resampling, as Pillow does it, and the resample-lock control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.models import ModelSpec
from ipbench.schemes._resample import reference_resampling, resize_uint8


def photo_crops(n: int = 12) -> np.ndarray:
    """32-px crops of the photographs scikit-image's wheel ships (real images, no download)."""
    from skimage import data

    crops = []
    for photo in (data.astronaut(), data.coffee(), data.chelsea()):
        h, w = photo.shape[:2]
        for i in range(n // 3):
            top, left = (37 * i) % (h - 32), (71 * i) % (w - 32)
            crops.append(photo[top : top + 32, left : left + 32])
    return np.stack(crops)


def pil_resize(batch: np.ndarray, size: int, filt: Image.Resampling) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), filt)) for im in batch])


def as_torch(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch.copy()).permute(0, 3, 1, 2).float()


def test_the_filters_match_pillow_within_one_grey_level_on_photographs():
    crops = photo_crops()
    up = pil_resize(crops, 224, Image.Resampling.BICUBIC)
    mine_up = resize_uint8(as_torch(crops), 224, "bicubic").permute(0, 2, 3, 1).numpy()
    assert np.abs(mine_up - up).max() <= 1
    down = pil_resize(up, 32, Image.Resampling.BILINEAR)  # antialiased, as Resize([32, 32])
    mine_down = resize_uint8(as_torch(up), 32, "bilinear").permute(0, 2, 3, 1).numpy()
    assert np.abs(mine_down - down).max() <= 1
    trip = (reference_resampling(as_torch(crops) / 255) * 255).permute(0, 2, 3, 1).numpy()
    assert np.abs(trip - down).max() <= 1
    # torch's own filters are other filters: the reason this module exists
    torch_up = torch.nn.functional.interpolate(as_torch(crops), 224, mode="bicubic")
    gap = np.abs(torch_up.round().clamp(0, 255).permute(0, 2, 3, 1).numpy() - up).max()
    assert gap > 1
    torch_down = torch.nn.functional.interpolate(as_torch(up), 32, mode="bilinear")
    assert np.abs(torch_down.round().permute(0, 2, 3, 1).numpy() - down).max() > 1


def test_the_round_trip_changes_images_as_much_as_a_weak_token():
    """In the classifier's 32-px view the round trip is a visible blur (the reference pairs:
    35.1 dB): not the identity, not a destruction."""
    x = as_torch(photo_crops()) / 255
    y = reference_resampling(x)
    mse = float(((y - x) ** 2).mean())
    psnr = 10 * np.log10(1 / mse)
    assert 25 < psnr < 45, psnr


def test_resample_lock_refuses_an_intermediate_size_that_does_not_upsample():
    cls = schemes.get("resample-lock")
    spec = ModelSpec("tiny", 10, 3, 32, (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(IpbenchError, match="up_size=32 must be above the images' 32 px"):
        cls(cls.Config(up_size=32)).validate(spec)
    cls(cls.Config()).validate(spec)  # 224, the reference's


def test_resample_lock_forgeries_are_resamplings_of_similar_strength():
    cls = schemes.get("resample-lock")
    scheme = cls(cls.Config())
    x = as_torch(photo_crops()) / 255
    owner = reference_resampling(x)
    for kind in scheme.forge_kinds:
        fake = scheme.forge_credential(None, kind, None)  # type: ignore[arg-type]
        y = fake.transform(x)
        assert y.shape == x.shape and not torch.equal(y, owner), kind
        psnr = 10 * np.log10(1 / float(((y - x) ** 2).mean()))
        assert 25 < psnr < 50, (kind, psnr)
    with pytest.raises(IpbenchError, match="valid: bilinear_bicubic"):
        scheme.forge_credential(None, "nope", None)  # type: ignore[arg-type]
