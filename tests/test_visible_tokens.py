from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import STICKER_EPOCHS, run_context
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import presets, schemes
from ipbench.engine.runner import Runner, RunRequest
from ipbench.ml.datasets import make_splits
from ipbench.ml.datasets.base import Dataset, ImageSet
from ipbench.ml.images import quantize
from ipbench.ml.models import ModelSpec, build_model
from ipbench.ml.training import Trainer
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Protected
from ipbench.schemes.adip import blend_grid, grid_mask
from ipbench.schemes.mlock import paste
from ipbench.store.cache import StageCache

SPEC = ModelSpec("tiny", 10, 3, 32, (0.5,) * 3, (0.25,) * 3)


def test_mlock_sticker_lands_where_specified():
    x = torch.zeros(2, 3, 32, 32)
    sticker = torch.arange(3 * 4 * 4, dtype=torch.float32).view(3, 4, 4) / 100
    out = paste(x, sticker, torch.tensor([0, 28]), torch.tensor([5, 28]), alpha=1.0)
    assert torch.equal(out[0, :, 0:4, 5:9], sticker) and torch.equal(
        out[1, :, 28:32, 28:32], sticker
    )
    out[0, :, 0:4, 5:9] = 0
    out[1, :, 28:32, 28:32] = 0
    assert out.abs().sum() == 0  # nothing else changed


def test_mlock_bottom_right_and_every_user_holds_the_same_sticker():
    cfg = schemes.get("mlock").Config(placement="bottom_right")
    scheme = schemes.get("mlock")(cfg)
    sticker = torch.rand(3, 4, 4)
    protected = Protected("mlock", build_model(SPEC), SPEC, {"sticker": sticker})
    x = torch.full((3, 3, 32, 32), 128 / 255)  # on the 8-bit grid, so quantising keeps it
    a, b = (
        scheme.apply(scheme.authorize(protected, "alice"), x),
        scheme.apply(scheme.authorize(protected, "bob"), x),
    )
    assert torch.equal(a, b)
    assert torch.allclose(a[:, :, 28:, 28:], (sticker * 255).round().expand(3, -1, -1, -1) / 255)
    assert torch.equal(a[:, :, :28], x[:, :, :28])


def test_adip_grid_squares_are_where_the_paper_puts_them():
    mask = grid_mask(32)
    side = 32 // 9  # 3
    corners = [int(32 / 9 + k * 32 / 3) for k in range(3)]  # 3, 14, 24
    assert corners == [3, 14, 24] and mask.sum() == 9 * side * side
    for top in corners:
        for left in corners:
            assert mask[top : top + side, left : left + side].eq(1).all()
    x = torch.zeros(1, 3, 32, 32)
    out = blend_grid(x, mask, 0.5)
    assert out[0, :, 3, 3].tolist() == [0.5, 0.5, 0.5] and out[0, :, 0, 0].tolist() == [0, 0, 0]


# At the preset's epochs M-LOCK would not lock (conftest.STICKER_EPOCHS), so this also shows
# ``protect_epochs`` reaches the trainer. The store is shared with the attack tests.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STICKER_EPOCHS))
def test_smoke_model_is_locked_without_the_token_and_unlocked_with_it(sticker_store, name):
    outcome = Runner(
        RunRequest(
            scheme=name,
            preset="smoke",
            workdir=str(sticker_store),
            device="cpu",
            overrides={"protect_epochs": STICKER_EPOCHS[name]},
            attacks="none",
        )
    ).run()
    m = {r["name"]: r["value"] for r in outcome.metrics if r["stage"] == "evaluate"}
    assert m["A_ad"] > 85 and m["A_ud"] < 25 and m["A_pd"] > 60
    assert m["PSNR"] < 40  # a visible token


class _Recorder(Trainer):
    """A trainer that keeps every batch the model is trained on."""

    def __init__(self) -> None:
        super().__init__("cpu")
        self.seen: list[torch.Tensor] = []

    def fit(self, model, *args, **kwargs):
        model.register_forward_pre_hook(lambda m, inp: self.seen.append(inp[0].detach().clone()))
        return super().fit(model, *args, **kwargs)


def _black_task(trainer: Trainer, tmp_path) -> RunContext:
    """Black 32x32 images: crop padding is black too, so a trained image shows only the token."""
    n = 64
    black = ImageSet(torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.arange(n) % 10)
    ds = Dataset("black", black, black, 10, mean=(0.5,) * 3, std=(0.25,) * 3)
    preset = presets.get("smoke")
    preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, epochs=1))
    return run_context(
        make_splits(ds, 0, 0.1), SPEC, preset, trainer, lambda: build_model(SPEC),
        StageCache(tmp_path),
    )  # fmt: skip


@pytest.mark.parametrize("after", [True, False])
def test_adip_token_after_augmentation_is_trained_where_users_put_it(tmp_path, after):
    """With ``token_after_augment`` every authorized training image carries the grid exactly as
    a query does (0.5 inside the squares, black elsewhere); before augmentation, crop and flip
    move it, so some authorized images show a shifted grid."""
    trainer = _Recorder()
    scheme = schemes.get("adip")(schemes.get("adip").Config(token_after_augment=after))
    assert trainer.seen == [] and scheme.config.alpha == 0.5
    scheme.protect(_black_task(trainer, tmp_path))
    seen = torch.cat(trainer.seen)
    token = quantize(blend_grid(torch.zeros(1, 3, 32, 32), grid_mask(32), 0.5))  # 128/255
    exact = (seen == token).flatten(1).all(1)
    clean = seen.flatten(1).eq(0).all(1)
    assert clean.sum() > 0
    if after:
        assert (exact | clean).all() and exact.sum() == clean.sum()  # gamma 0.5
    else:
        assert (~(exact | clean)).sum() > 0  # moved grids


def test_activedaemon_refuses_token_after_augmentation_before_any_training(tmp_path):
    cfg = schemes.get("activedaemon").Config(token_after_augment=True)
    with pytest.raises(IpbenchError, match="token_after_augment=True"):
        schemes.get("activedaemon")(cfg)
    res = CliRunner().invoke(
        app,
        ["run", "--scheme", "activedaemon", "--preset", "smoke", "--workdir", str(tmp_path),
         "--set", "token_after_augment=true", "--attacks", "none"],
    )  # fmt: skip
    assert res.exit_code == 2 and "needs a token applied per batch" in res.output
    assert not (tmp_path / "artifacts").exists()  # nothing was trained
