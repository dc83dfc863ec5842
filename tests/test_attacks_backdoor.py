"""Backdoor-removal defenses as unlocking attacks (issue 19), first shown to remove a
BadNets-style sticker backdoor trained on the smoke task, and the fine-tuning recipes the
thief's attacks train with. The attacks' runs against a lock are in test_attacks_reviewer.py."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import presets, schemes
from ipbench.ml.training import lr_at


# --- backdoor removal -------------------------------------------------------------------------
def sticker(x: torch.Tensor) -> torch.Tensor:
    """BadNets' trigger: a white 4x4 square in the bottom-right corner (uint8 images)."""
    out = x.clone()
    out[..., -5:-1, -5:-1] = 255
    return out


@pytest.fixture(scope="module")
def badnets(tmp_path_factory):
    """A tiny network with a BadNets backdoor (10% of the owner's images stickered and
    labelled 0) on the smoke task, and the thief's view: (model, ctx)."""
    from ipbench.testing import task_context

    ctx = task_context(tmp_path_factory.mktemp("badnets"))
    own = ctx.owner
    n = len(own) // 10
    x = torch.cat([own.x, sticker(own.x[:n])])
    y = torch.cat([own.y, torch.zeros(n, dtype=torch.long)])
    model = ctx.new_model()
    ctx.trainer.fit(model, x, y, ctx.preset.train, seed=0)
    return model.eval(), ctx.for_thief()


def attack_success(model: torch.nn.Module, ctx) -> float:
    """Percent of stickered test images not of class 0 that the model calls 0."""
    test = ctx.thief.test
    keep = test.y != 0
    logits = ctx.trainer.predict(model, sticker(test.x[keep]), 500)
    return 100.0 * float((logits.argmax(1) == 0).float().mean())


def clean_accuracy(model: torch.nn.Module, ctx) -> float:
    return 100.0 * float(
        (ctx.trainer.predict(model, ctx.thief.test.x, 500).argmax(1) == ctx.thief.test.y)
        .float()
        .mean()
    )


@pytest.mark.slow
def test_fine_pruning_removes_a_badnets_backdoor(badnets):
    from ipbench.attacks.fine_pruning import (
        dormancy_order,
        feature_layer,
        finetune_pruned,
        prune_dormant,
    )

    model, ctx = badnets
    before = attack_success(model, ctx)
    assert before > 80  # the backdoor is in
    high = prune_dormant(copy.deepcopy(model), ctx.thief.data.x, 0.9)
    assert len(high) == round(0.9 * feature_layer(model).weight.shape[0])  # high rates reached
    net = copy.deepcopy(model)
    pruned = prune_dormant(net, ctx.thief.data.x, 0.5)
    order = dormancy_order(model, ctx.thief.data.x)  # measured once, as the attack does
    assert torch.equal(prune_dormant(copy.deepcopy(model), ctx.thief.data.x, 0.5, order), pruned)
    layer = feature_layer(net)
    finetune_pruned(net, pruned, ctx.thief.data, ctx, 5, 0.01)
    assert torch.all(layer.weight[pruned] == 0) and torch.all(layer.bias[pruned] == 0)
    assert attack_success(net, ctx) < before / 2
    assert clean_accuracy(net, ctx) > 90  # still a model


@pytest.mark.slow
def test_fine_pruning_holds_pruned_channels_at_zero_with_frozen_batchnorm_scales(badnets):
    """whitenet (the quick preset's network) freezes its BatchNorm scales, as airbench does:
    fine-tuning must run and keep the pruned channels off through the trainable bias alone."""
    from ipbench.attacks.fine_pruning import feature_layer, finetune_pruned, prune_dormant

    model, ctx = badnets
    net = copy.deepcopy(model)
    layer = feature_layer(net)
    layer.weight.requires_grad_(False)
    pruned = prune_dormant(net, ctx.thief.data.x, 0.5)
    bias_before = layer.bias.detach().clone()
    finetune_pruned(net, pruned, ctx.thief.data, ctx, 2, 0.01)
    assert torch.all(layer.weight[pruned] == 0) and torch.all(layer.bias[pruned] == 0)
    kept = torch.ones(len(bias_before), dtype=torch.bool)
    kept[pruned] = False
    assert not torch.equal(layer.bias[kept], bias_before[kept])  # the rest did train


@pytest.mark.slow
def test_nad_removes_a_badnets_backdoor(badnets):
    from ipbench.attacks.nad import AttentionDistillation, NADConfig, attention_layers, nad_recipe

    model, ctx = badnets
    before = attack_success(model, ctx)
    c = NADConfig(lr=0.05, lr_decay_every=100)  # the smoke rate, the paper's epochs
    probe = torch.rand(1, 3, 32, 32)
    assert len(attention_layers(model, probe, 3)) == 3  # the tiny net's last 3 resolutions
    teacher, student = copy.deepcopy(model), copy.deepcopy(model)
    data = ctx.thief.data.subset(torch.arange(100))  # 5% of the 2,000-image training set
    ctx.trainer.fit(teacher, data.x, data.y, nad_recipe(ctx, c.teacher_epochs, c), seed=1)
    loss = AttentionDistillation(student, teacher, probe, c)
    student.train()
    student(probe)
    assert float(loss(student).detach()) > 0  # the student attends elsewhere than the teacher
    ctx.trainer.fit(student, data.x, data.y, nad_recipe(ctx, c.epochs, c), seed=2, extra_loss=loss)
    loss.close()
    assert attack_success(student, ctx) < before / 2
    assert clean_accuracy(student, ctx) > 85  # still a model


@pytest.mark.slow
def test_nad_trains_with_the_reference_optimiser_not_the_presets(badnets):
    """The quick preset's airbench parts (BN biases at 64x the rate, Lookahead, label
    smoothing) wrecked an unprotected CIFAR-10 model under NAD; the reference's SGD does not."""
    from ipbench.attacks.nad import NADConfig, nad_recipe

    _, ctx = badnets
    quick = dataclasses.replace(ctx, preset=presets.get("quick"))
    cfg = nad_recipe(quick, 20, NADConfig())
    assert (cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.label_smoothing) == (
        0.9,
        True,
        1e-4,
        0,
    )
    assert cfg.norm_bias_lr_scale == 1 and cfg.lookahead_every == 0 and cfg.batch_size == 64
    steps = 10  # per epoch
    lrs = [lr_at(e * steps, 20 * steps, steps, cfg) for e in (0, 1, 2, 4, 19)]
    assert lrs == pytest.approx([0.01, 0.01, 1e-3, 1e-4, 1e-11])  # x0.1 every 2 epochs
    with pytest.raises(IpbenchError, match="at most 3"):
        NADConfig(betas=(1.0, 1.0, 1.0, 1.0))


def test_nad_weighs_attention_by_the_reference_map_area():
    """The loss on a map is its summed squared distance over the reference's map area: the
    same distance counts the same on whitenet's 4x4 map as on the reference's 8x8."""
    from ipbench.attacks.nad import REFERENCE_AREAS, AttentionDistillation, NADConfig

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))  # attends its conv's output
    teacher = copy.deepcopy(net)
    with torch.no_grad():
        teacher[0].weight.mul_(-1.5)
    x = torch.rand(2, 3, 4, 4)
    loss = AttentionDistillation(net, copy.deepcopy(teacher), x, NADConfig(betas=(100.0,)))
    net.train()
    s_map, t_map = net(x), teacher(x)
    got = float(loss(net).detach())
    loss.close()
    a = torch.nn.functional.normalize(s_map.pow(2).mean(1).flatten(1), dim=1)
    b = torch.nn.functional.normalize(t_map.pow(2).mean(1).flatten(1), dim=1)
    want = 100.0 * (a - b).pow(2).sum(1).mean() / REFERENCE_AREAS[-1]
    assert got == pytest.approx(float(want), rel=1e-4) and got > 0


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_anp_prunes_perturbation_sensitive_neurons_of_a_badnets_backdoor(badnets, precision):
    """In fp32 (the default mask loop) and in bf16 (``precision="preset"``) alike: the masks
    learned expose the backdoor's neurons, so some threshold cuts it and leaves a model."""
    from ipbench.attacks.anp import ANPConfig, NeuronMasks, learn_masks, prune_masked
    from ipbench.ml.training import bf16_supported

    if precision == "bf16" and not bf16_supported(torch.device("cpu")):
        pytest.skip("this CPU runs no bf16")
    model, ctx = badnets
    before = attack_success(model, ctx)
    data = ctx.thief.data.subset(torch.arange(20))  # 1% of the 2,000-image training set
    net = copy.deepcopy(model)
    masks = learn_masks(net, data.x, data.y, ANPConfig(iterations=200), 0, precision)
    assert all(0 <= float(m.detach().min()) <= float(m.detach().max()) <= 1 for m in masks.masks)
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    shares, success, clean = [], [], []
    for threshold in (0.2, 0.5, 0.7):
        pruned = copy.deepcopy(net)
        mine = NeuronMasks(pruned, 0.4)
        mine.close()
        mine.masks = [m.detach().clone() for m in masks.masks]
        shares.append(prune_masked(mine, threshold))
        success.append(attack_success(pruned, ctx))
        clean.append(clean_accuracy(pruned, ctx))
    assert 0 < shares[0] <= shares[1] <= shares[2] < 0.5  # higher thresholds prune more
    # ... and the threshold best for the thief cuts the backdoor and leaves a model. At this
    # budget (200 iterations, 20 images) which threshold does it depends on the float order of
    # the CPU's kernels and thread count: measured (backdoor success, clean accuracy) at the
    # best one were fp32 31.5/75.7 and 34.8/80.0, bf16 40.1/88.3, 6.5/91.0 and 2.2/71.0 from
    # ~95/96 before (2 and 1 threads, AMX and AVX-512 kernels), so the test asks for a 20-point
    # cut with 60% clean accuracy kept, not a given threshold's figure.
    best = min(range(3), key=lambda i: success[i] if clean[i] >= 60 else 101.0)
    assert success[best] < before - 20 and clean[best] >= 60, (shares, success, clean)


def test_pruning_defenses_skip_batch_norms_without_a_scale():
    from ipbench.attacks.anp import NeuronMasks
    from ipbench.attacks.fine_pruning import feature_layer

    scaled = torch.nn.BatchNorm2d(4)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), scaled, torch.nn.Conv2d(4, 4, 3),
        torch.nn.BatchNorm2d(4, affine=False),  # passport layers take their scale elsewhere
    )  # fmt: skip
    assert feature_layer(net) is scaled
    masks = NeuronMasks(net, 0.4)
    masks.close()
    assert masks.layers == [scaled]


@pytest.mark.slow
def test_fine_tuning_attacks_try_the_thiefs_plain_sgd_and_the_owners_recipe(badnets, monkeypatch):
    """finetune, finetune-budget and fine-pruning fine-tune with plain SGD at batch 128 (quick's
    lr 1.5 per 1,024 images, label smoothing, 64x batch-norm bias rates and Lookahead made lr
    0.01 a ~10x weaker fine-tune) and with the owner's recipe at the same rate (the stored
    numbers' recipe), and headline the thief's best."""
    from ipbench.attacks._finetuning import FINETUNE_BATCH
    from ipbench.attacks.fine_pruning import FinePruning, FinePruningConfig
    from ipbench.attacks.finetune import Finetune, FinetuneConfig
    from ipbench.attacks.finetune_budget import FinetuneBudget, FinetuneBudgetConfig
    from ipbench.plugin.attack import Target, thief_train
    from ipbench.plugin.contract import Protected

    model, ctx = badnets
    owner_recipe = dataclasses.replace(presets.get("quick").train, precision="fp32")
    ctx = dataclasses.replace(ctx, preset=dataclasses.replace(ctx.preset, train=owner_recipe))
    recipes = []
    monkeypatch.setattr(ctx.trainer, "fit", lambda *args, **kw: recipes.append(args[3]))
    target = Target(schemes.get("none")(), Protected("none", model, ctx.model_spec))
    got = Finetune(FinetuneConfig(variants=("all",), epochs=1, budgets=(1,), max_test=50)).run(
        target, ctx
    )
    assert {"A_ud@all,epochs=1", "A_ud@all preset,epochs=1"} <= {str(k) for k in got}
    assert got["A_ud"] == max(
        v for k, v in got.items() if str(k).startswith("A_ud@") and "=1" in str(k)
    )
    FinetuneBudget(FinetuneBudgetConfig(fractions=(0.5,), shots=(1,), steps=3, max_test=50)).run(
        target, ctx
    )
    FinePruning(FinePruningConfig(rates=(0.5,), epochs=1, max_test=50)).run(target, ctx)
    assert len(recipes) == 8  # finetune: plain, preset; budget: 2 plain, 2 preset; fine-pruning
    plain = [recipes[0], recipes[2], recipes[3], recipes[6]]
    preset = [recipes[1], recipes[4], recipes[5], recipes[7]]
    for cfg in plain:
        assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.schedule) == (
            0.01,
            0.9,
            5e-4,
            "constant",
        )
        assert cfg.label_smoothing == 0 and cfg.lookahead_every == 0 and cfg.norm_bias_lr_scale == 1
        assert cfg.warmup_epochs == 0
    few_shot_images = 10  # one per class: the batch is the budget when smaller
    assert [c.batch_size for c in plain] == [
        FINETUNE_BATCH,
        FINETUNE_BATCH,
        few_shot_images,
        FINETUNE_BATCH,
    ]
    old = thief_train(ctx, 1, 0.01, "constant")  # the recipe the stored numbers ran
    for cfg in preset:
        assert dataclasses.replace(cfg, epochs=1, batch_size=old.batch_size) == old
    assert [c.batch_size for c in preset] == [1024, 200, few_shot_images, 1024]  # 200: the split
