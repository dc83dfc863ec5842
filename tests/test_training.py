from __future__ import annotations

import dataclasses

import pytest
import torch

from ipbench.core.errors import IpbenchError, TrainingDivergedError
from ipbench.ml.augment import crop_flip
from ipbench.ml.datasets import load_dataset, make_splits
from ipbench.ml.models import ModelSpec, build_model
from ipbench.ml.presets import TrainConfig
from ipbench.ml.training import Trainer, lr_at

CFG = TrainConfig(
    epochs=2,
    batch_size=64,
    lr=0.05,
    nesterov=True,
    schedule="onecycle",
    warmup_epochs=0.5,
    crop_padding=2,
    precision="fp32",
)


def _task(n: int = 400):
    ds = load_dataset("synthetic:1000")
    splits = make_splits(ds, seed=0, attacker_fraction=0.1, max_train=n)
    spec = ModelSpec("tiny", ds.num_classes, 3, 32, ds.mean, ds.std)
    return splits, spec


def _fresh(spec, seed=0):
    torch.manual_seed(seed)
    return build_model(spec)


def test_lr_schedules():
    cfg = TrainConfig(
        lr=1.0, schedule="multistep", milestones=(0.5, 0.75), lr_gamma=0.1, warmup_epochs=1
    )
    # 10 steps per epoch, 100 steps in all
    assert lr_at(0, 100, 10, cfg) == pytest.approx(0.1)  # warm-up: (0+1)/10
    assert lr_at(9, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_at(49, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_at(50, 100, 10, cfg) == pytest.approx(0.1)
    assert lr_at(75, 100, 10, cfg) == pytest.approx(0.01)
    one = dataclasses.replace(cfg, schedule="onecycle", warmup_epochs=0)
    assert lr_at(50, 100, 10, one) == pytest.approx(0.5)
    cos = dataclasses.replace(cfg, schedule="cosine", warmup_epochs=0)
    assert lr_at(50, 100, 10, cos) == pytest.approx(0.5)
    assert lr_at(0, 100, 10, cos) == pytest.approx(1.0)


def test_crop_flip_moves_pixels_as_specified():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    same = crop_flip(x, 1, torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([False, False]))
    assert torch.equal(same, x)  # offset == pad is the identity crop
    shifted = crop_flip(
        x, 1, torch.tensor([0, 2]), torch.tensor([1, 1]), torch.tensor([False, True])
    )
    assert (
        torch.equal(shifted[0, 0, 1:], x[0, 0, :3]) and shifted[0, 0, 0].eq(0).all()
    )  # down by one, zero row on top
    assert torch.equal(shifted[1, 0, :3], x[1, 0, 1:].flip(-1))  # up by one, then mirrored


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_crop_flip_matches_per_image_pad_crop_mirror_on_uint8_and_float(mode):
    """The batched gathers (mirror folded into the column index) against the plain recipe
    written per image; uint8 input gives exactly the float result, as the trainer relies on."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 8, 8), generator=g, dtype=torch.uint8)
    dy, dx = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    flip = torch.tensor([True, False, True, True, False, False])
    pad_mode = {"zeros": "constant", "reflect": "reflect"}[mode]
    expected = []
    for i in range(6):
        padded = torch.nn.functional.pad(x[i : i + 1].float(), (2, 2, 2, 2), mode=pad_mode)[0]
        crop = padded[:, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        expected.append(crop.flip(-1) if flip[i] else crop)
    got_uint8 = crop_flip(x, 2, dy, dx, flip, mode)
    assert got_uint8.dtype == torch.uint8
    assert torch.equal(got_uint8.float(), torch.stack(expected))
    assert torch.equal(crop_flip(x.float() / 255, 2, dy, dx, flip, mode), got_uint8.float() / 255)
    assert torch.equal(crop_flip(x, 0, dy, dx, flip, mode), torch.stack(
        [x[i].flip(-1) if flip[i] else x[i] for i in range(6)]
    ))  # fmt: skip


@pytest.mark.slow
def test_training_learns_synthetic():
    splits, spec = _task(800)
    model = _fresh(spec)
    trainer = Trainer("cpu")
    before = trainer.accuracy(model, splits.test.x, splits.test.y)
    trainer.fit(model, splits.owner.x, splits.owner.y, dataclasses.replace(CFG, epochs=4), seed=0)
    after = trainer.accuracy(model, splits.test.x, splits.test.y)
    assert before < 25 and after > 80


@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_weights():
    splits, spec = _task()
    states = []
    for _ in range(2):
        model = _fresh(spec)
        Trainer("cpu").fit(model, splits.owner.x, splits.owner.y, CFG, seed=3)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    other = _fresh(spec)
    Trainer("cpu").fit(other, splits.owner.x, splits.owner.y, CFG, seed=4)
    assert not all(torch.equal(states[0][k], other.state_dict()[k]) for k in states[0])


@pytest.mark.slow
def test_resume_from_epoch_checkpoint_matches_uninterrupted(tmp_path):
    splits, spec = _task()
    full = _fresh(spec)
    Trainer("cpu").fit(full, splits.owner.x, splits.owner.y, CFG, seed=1)

    class Crash(Exception):
        pass

    steps = []

    def crash_in_second_epoch(model):
        steps.append(1)
        if len(steps) > 8:  # 400 images / 64 = 7 steps per epoch
            raise Crash
        return torch.zeros(())

    first = _fresh(spec)
    with pytest.raises(Crash):
        Trainer("cpu").fit(
            first,
            splits.owner.x,
            splits.owner.y,
            CFG,
            seed=1,
            extra_loss=crash_in_second_epoch,
            checkpoint_dir=tmp_path,
        )
    resumed = _fresh(spec, seed=99)
    result = Trainer("cpu").fit(
        resumed, splits.owner.x, splits.owner.y, CFG, seed=1, checkpoint_dir=tmp_path
    )
    assert result.resumed_from_epoch == 1
    assert all(
        torch.equal(full.state_dict()[k], resumed.state_dict()[k]) for k in full.state_dict()
    )


def test_nan_loss_stops_with_clear_error():
    splits, spec = _task(128)
    model = _fresh(spec)
    bad = splits.owner.x.float() / 255
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="loss became nan"):
        Trainer("cpu").fit(
            model, bad, splits.owner.y, dataclasses.replace(CFG, crop_padding=0, epochs=1), seed=0
        )


def test_soft_targets_and_extra_loss_and_label_hook():
    splits, spec = _task(128)
    model = _fresh(spec)
    soft = torch.full((len(splits.owner), 10), 0.1)
    calls = []

    def targets(epoch):
        calls.append(epoch)
        return soft

    Trainer("cpu").fit(
        model,
        splits.owner.x,
        splits.owner.y,
        CFG,
        seed=0,
        targets_fn=targets,
        extra_loss=lambda m: 0.0 * m[1][0].weight.sum(),
    )
    assert calls == [0, 1]


def test_bad_inputs():
    splits, spec = _task(64)
    with pytest.raises(IpbenchError, match="64 images but 3 labels"):
        Trainer("cpu").fit(_fresh(spec), splits.owner.x, splits.owner.y[:3], CFG, seed=0)


def test_epoch_checkpoints_follow_the_interval(tmp_path, monkeypatch):
    """Every epoch at interval 0; with a long interval only after the last epoch (a resume
    then starts from the end, not from an intermediate epoch); a bad value is one error."""
    import ipbench.ml.training as training

    saved: list[int] = []
    real = training.save_checkpoint

    def record(folder, model, opt, epoch, look=None, epochs=None):
        saved.append(epoch)
        real(folder, model, opt, epoch, look, epochs)

    monkeypatch.setattr(training, "save_checkpoint", record)
    splits, spec = _task(128)
    cfg = dataclasses.replace(CFG, epochs=3)
    for every, expected in (("0", [1, 2, 3]), ("3600", [3])):
        saved.clear()
        monkeypatch.setenv("IPBENCH_CHECKPOINT_EVERY_S", every)
        ckpt = tmp_path / every
        Trainer("cpu").fit(
            _fresh(spec), splits.owner.x, splits.owner.y, cfg, seed=0, checkpoint_dir=ckpt
        )
        assert saved == expected
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("IPBENCH_CHECKPOINT_EVERY_S", bad)
        with pytest.raises(IpbenchError, match="IPBENCH_CHECKPOINT_EVERY_S"):
            training.checkpoint_interval_s()
