from __future__ import annotations

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.schemes._poisoning.poisoning import (
    PoisonConfig,
    build_poisoned_set,
    ordinary_noise,
    unauthorized_targets,
    validate,
)

K = 10
Y = torch.arange(1000) % K


def test_single_sends_every_label_to_the_target():
    assert unauthorized_targets(
        Y, K, PoisonConfig(strategy="single", target_class=5)
    ).unique().tolist() == [5]


def test_near_shifts_by_one_and_wraps():
    out = unauthorized_targets(Y, K, PoisonConfig(strategy="near"))
    assert torch.equal(out, (Y + 1) % K) and out[Y == 9].unique().tolist() == [0]


def test_surjective_maps_onto_five_candidates_in_order():
    out = unauthorized_targets(Y, K, PoisonConfig(strategy="surjective"))
    assert sorted(out.unique().tolist()) == [0, 1, 2, 3, 4]
    assert [int(out[y == Y][0]) for y in range(K)] == [1, 2, 3, 4, 0, 1, 2, 3, 4, 0]
    assert not (out == Y).any()  # no unauthorized image keeps its label


def test_random_is_uniform_and_redrawn_every_epoch():
    y = torch.zeros(20000, dtype=torch.long)
    e0 = unauthorized_targets(y, K, PoisonConfig(strategy="random"), epoch=0)
    e1 = unauthorized_targets(y, K, PoisonConfig(strategy="random"), epoch=1)
    counts = torch.bincount(e0, minlength=K).float()
    expected = len(y) / K
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 27.9  # chi-square, 9 degrees of freedom, p = 0.001
    assert (e0 != e1).float().mean() > 0.8
    assert torch.equal(e0, unauthorized_targets(y, K, PoisonConfig(strategy="random"), epoch=0))


def test_uniform_puts_equal_mass_on_every_wrong_class():
    soft = unauthorized_targets(Y[:10], K, PoisonConfig(strategy="uniform"))
    assert soft.shape == (10, K) and torch.allclose(soft.sum(1), torch.ones(10))
    assert (soft[torch.arange(10), Y[:10]] == 0).all()
    assert torch.allclose(soft[0, 1:], torch.full((9,), 1 / 9))


def test_poisoned_set_mixes_authorized_and_relabelled_images():
    x = torch.randint(0, 200, (100, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(100) % K
    marked = build_poisoned_set(
        x, y, K, PoisonConfig(gamma=0.3, strategy="near"), seed=0, tokenize=lambda xa, idx: xa + 50
    )
    assert int(marked.authorized.sum()) == 30
    targets = marked.targets(0)
    assert torch.equal(targets[marked.authorized], marked.y_true[marked.authorized])
    assert torch.equal(targets[~marked.authorized], (marked.y_true[~marked.authorized] + 1) % K)
    # authorized images carry the token (+50 here); the others are untouched originals
    assert (marked.x[marked.authorized].int() >= 50).all()
    soft = build_poisoned_set(
        x, y, K, PoisonConfig(strategy="uniform"), seed=0, tokenize=lambda xa, idx: xa
    )
    t = soft.targets(0)
    assert t.shape == (100, K) and torch.allclose(t.sum(1), torch.ones(100))


def test_ordinary_noise_changes_images_but_keeps_dtype():
    x = torch.full((12, 3, 16, 16), 128, dtype=torch.uint8)
    noisy = ordinary_noise(x, PoisonConfig(noise="mixed"), torch.Generator().manual_seed(0))
    assert noisy.dtype == torch.uint8 and noisy.shape == x.shape and not torch.equal(noisy, x)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (PoisonConfig(gamma=1.2), "gamma must be in"),
        (PoisonConfig(strategy="single", target_class=12), "target_class 12 outside"),
        (PoisonConfig(strategy="nearest"), "unknown strategy 'nearest'; valid: single, random"),  # type: ignore[arg-type]
        (PoisonConfig(protect_epochs=0), "protect_epochs must be >= 1"),
    ],
)
def test_bad_poison_configs(cfg, message):
    with pytest.raises(IpbenchError, match=message):
        validate(cfg, K)
