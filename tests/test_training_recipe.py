"""The quick preset's recipe parts in the shared trainer: whitening stem, BN-bias lr, Lookahead,
alternating flips, reflected crops, the triangular schedule; all on synthetic data."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ipbench.core.tensorio import read_tensors
from ipbench.ml.augment import crop_flip, draw_params
from ipbench.ml.datasets import load_dataset, make_splits
from ipbench.ml.models import ModelSpec, WhiteningConv, build_model
from ipbench.ml.presets import TrainConfig, presets
from ipbench.ml.training import Trainer, init_from_data, lr_at, param_groups

RECIPE = TrainConfig(
    epochs=2,
    batch_size=64,
    lr=0.2,
    momentum=0.85,
    nesterov=True,
    weight_decay=1e-3,
    schedule="triangle",
    label_smoothing=0.2,
    crop_padding=2,
    crop_pad_mode="reflect",
    flip_mode="alternate",
    norm_bias_lr_scale=16.0,
    lookahead_every=3,
    data_init_images=200,
    precision="fp32",
)


def _task(n: int = 320):
    ds = load_dataset("synthetic:1000")
    splits = make_splits(ds, seed=0, attacker_fraction=0.1, max_train=n)
    spec = ModelSpec("whitenet", ds.num_classes, 3, 32, ds.mean, ds.std)
    return splits, spec


def _fresh(spec, seed=0):
    torch.manual_seed(seed)
    return build_model(spec)


def _stem(model) -> WhiteningConv:
    return model[1][0]


def test_whitening_stem_is_set_from_the_images_given_and_deterministic():
    splits, spec = _task()
    x = splits.owner.x
    a, b, c = _fresh(spec, 0), _fresh(spec, 1), _fresh(spec, 0)
    assert init_from_data(a, x[:200], torch.device("cpu")) == 1
    init_from_data(b, x[:200], torch.device("cpu"))  # other seed, same images: same filters
    init_from_data(c, x[200:], torch.device("cpu"))  # other images: other filters
    assert torch.equal(_stem(a).weight, _stem(b).weight)
    assert not torch.allclose(_stem(a).weight, _stem(c).weight)
    assert bool(_stem(a).initialised) and not bool(_stem(_fresh(spec)).initialised)
    # the first half of the filters whitens the 2x2 patches of the normalised images
    with torch.no_grad():
        z = torch.nn.functional.conv2d(a[0](x[:200].float() / 255), _stem(a).weight[:12])
    z = z.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(12, dtype=cov.dtype), atol=0.05)
    assert torch.equal(_stem(a).weight[12:], -_stem(a).weight[:12])


def test_trainer_initialises_the_stem_once_from_its_first_training_images():
    splits, spec = _task()
    model = _fresh(spec)
    expected = _fresh(spec)
    init_from_data(expected, splits.owner.x[: RECIPE.data_init_images], torch.device("cpu"))
    cfg = dataclasses.replace(RECIPE, epochs=1)
    Trainer("cpu").fit(model, splits.owner.x, splits.owner.y, cfg, seed=0)
    assert torch.equal(_stem(model).weight, _stem(expected).weight)  # frozen after init
    before = _stem(model).weight.clone()
    # fine-tuning on other images keeps the stem the model was trained with
    Trainer("cpu").fit(model, splits.attacker.x, splits.attacker.y, cfg, seed=1)
    assert torch.equal(_stem(model).weight, before)
    loaded = _fresh(spec, 5)
    loaded.load_state_dict(model.state_dict())
    assert init_from_data(loaded, splits.attacker.x, torch.device("cpu")) == 0


def test_recipe_is_deterministic_and_resumes_bitwise_with_lookahead(tmp_path):
    splits, spec = _task()
    full = _fresh(spec)
    Trainer("cpu").fit(full, splits.owner.x, splits.owner.y, RECIPE, seed=1)
    again = _fresh(spec)
    Trainer("cpu").fit(again, splits.owner.x, splits.owner.y, RECIPE, seed=1)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in full.state_dict().items())

    class Crash(Exception):
        pass

    steps = []

    def crash_in_second_epoch(model):
        steps.append(1)
        if len(steps) > 6:  # 288 images / 64 = 5 steps per epoch
            raise Crash
        return torch.zeros(())

    first = _fresh(spec)
    with pytest.raises(Crash):
        Trainer("cpu").fit(
            first, splits.owner.x, splits.owner.y, RECIPE, seed=1,
            extra_loss=crash_in_second_epoch, checkpoint_dir=tmp_path,
        )  # fmt: skip
    saved = read_tensors(tmp_path / "checkpoint.safetensors", "test")
    assert any(k.startswith("slow.") for k in saved)  # Lookahead's slow weights are saved
    resumed = _fresh(spec, seed=99)
    result = Trainer("cpu").fit(
        resumed, splits.owner.x, splits.owner.y, RECIPE, seed=1, checkpoint_dir=tmp_path
    )
    assert result.resumed_from_epoch == 1
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in full.state_dict().items())


def test_lookahead_leaves_the_model_on_the_slow_weights():
    splits, spec = _task(128)
    cfg = dataclasses.replace(RECIPE, epochs=1, lookahead_every=1000)  # only the final pull
    a, b = _fresh(spec), _fresh(spec)
    Trainer("cpu").fit(a, splits.owner.x, splits.owner.y, cfg, seed=0)
    Trainer("cpu").fit(b, splits.owner.x, splits.owner.y, dataclasses.replace(cfg, lookahead_every=0), seed=0)  # fmt: skip
    # the slow weights never moved, so every floating tensor (BN statistics included) ends
    # where it started, but for the stem set from the data; counters move on
    fresh = _fresh(spec)
    init_from_data(fresh, splits.owner.x[: cfg.data_init_images], torch.device("cpu"))
    floats = {k: v for k, v in fresh.state_dict().items() if v.is_floating_point()}
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in floats.items())
    assert not torch.equal(a[1][-2].weight, b[1][-2].weight)


def test_norm_biases_get_scaled_lr_and_the_same_decay_per_step():
    _, spec = _task()
    model = _fresh(spec)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = param_groups(model, params, RECIPE)
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in groups[0]["params"]} == bn_biases
    assert groups[0]["lr_scale"] * groups[0]["weight_decay"] == pytest.approx(
        groups[1]["lr_scale"] * groups[1]["weight_decay"]
    )
    plain = param_groups(model, params, dataclasses.replace(RECIPE, norm_bias_lr_scale=1.0))
    assert len(plain) == 1 and plain[0]["lr_scale"] == 1.0


def test_triangle_schedule():
    cfg = TrainConfig(lr=1.0, schedule="triangle")  # 0.2 -> 1 at 23% -> 0.07
    assert lr_at(0, 100, 10, cfg) == pytest.approx(0.2)
    assert lr_at(23, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, cfg) == pytest.approx(0.07)
    assert 0.07 < lr_at(60, 100, 10, cfg) < 1.0


def test_alternating_flips_and_reflected_crops():
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([True, False, True, False])
    even = draw_params(4, 2, True, g, base, epoch=2)["flip"]
    odd = draw_params(4, 2, True, g, base, epoch=3)["flip"]
    assert torch.equal(even, base) and torch.equal(odd, ~base)
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    no = torch.tensor([False])
    shifted = crop_flip(x, 1, torch.tensor([0]), torch.tensor([1]), no, "reflect")
    assert torch.equal(shifted[0, 0, 0], x[0, 0, 1]) and torch.equal(shifted[0, 0, 1:], x[0, 0, :3])


def test_paper_preset_keeps_the_papers_recipe():
    paper = presets.get("paper").train
    assert (paper.schedule, paper.lookahead_every, paper.norm_bias_lr_scale) == (
        "multistep",
        0,
        1.0,
    )
    assert (paper.crop_pad_mode, paper.flip_mode, presets.get("paper").model) == (
        "zeros", "random", "resnet18",
    )  # fmt: skip
