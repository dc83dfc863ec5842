"""AuthNet (ECAI 2025): the gate and tail split, the mask's bound, and on the smoke task the
secret mask unlocks the fine-tuned tail while plain images and a random mask do not."""

from __future__ import annotations

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.models import ModelSpec, build_model
from ipbench.schemes.authnet import AuthNetConfig, blend, default_gate, tail_parameters

CHANCE_PLUS = 25.0  # 10 classes: chance is 10%
SPEC = ModelSpec("tiny", 10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_the_gate_splits_the_network_into_a_frozen_head_and_a_tail():
    model = build_model(SPEC)
    gate = default_gate(model)
    tail = {id(p) for p in tail_parameters(model, gate)}
    params = list(model.named_parameters())
    after = [n for n, p in params if id(p) in tail]
    assert after and len(after) < len(params)
    # everything after the gate in forward order is tail: the last conv block and the classifier
    assert params[-1][0] in after and params[0][0] not in after
    order = [n for n, _ in params]
    assert order[order.index(after[0]) :] == after


@pytest.mark.parametrize("name", ["whitenet", "fastnet", "resnet18"])
def test_a_gate_is_found_in_every_preset_network(name):
    """The quick preset's whitenet has GELUs, not ReLUs: the first CIFAR-10 campaign stopped
    at 'cannot pick a gate layer' before the gate counted every activation kind."""
    model = build_model(ModelSpec(name, 10, 3, 32, (0.5,) * 3, (0.25,) * 3))
    gate = default_gate(model)
    assert tail_parameters(model, gate)  # something after the gate to fine-tune
    if name == "whitenet":  # the input of its last stage: all of group 3 is the tail
        assert isinstance(dict(model.named_modules())[gate], torch.nn.GELU)
        tail = {id(p) for p in tail_parameters(model, gate)}
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert [id(c.weight) in tail for c in convs][-3:] == [False, True, True]


def test_the_mask_moves_no_pixel_further_than_its_bound():
    x = torch.rand(4, 3, 8, 8)
    mask, pattern = torch.full((1, 8, 8), 0.1), torch.rand(3, 8, 8)
    assert float((blend(x, mask, pattern) - x).abs().max()) <= 0.1 + 1e-6


def test_settings_are_checked():
    with pytest.raises(IpbenchError, match="0 < mask_max <= 1"):
        schemes.get("authnet")(AuthNetConfig(mask_max=0.0))


@pytest.mark.slow
def test_the_mask_unlocks_and_plain_or_random_mask_images_do_not(scheme_smoke):
    m, wall = scheme_smoke("authnet")
    assert m["A_or"] > 80  # the smoke task is learnt
    assert m["A_ad"] > m["A_or"] - 5  # the tail answers masked images correctly
    assert m["A_ud"] < CHANCE_PLUS and m["A_td"] < CHANCE_PLUS
    assert 50 < m["tail_pct"] < 100 and m["capacity"] == 1
    assert wall < 300
