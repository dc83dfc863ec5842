"""What every model-side attack shares: the thief's copy, its data, and scoring a modified copy.

``score`` is the evaluator's own A_ad/A_ud (same users, same credential split), so an attack's
numbers compare directly with the evaluate stage's.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ipbench.attack import AttackContext
from ipbench.contract import Protected, Scheme
from ipbench.datasets import ImageSet
from ipbench.evaluate import ad_ud_accuracy
from ipbench.presets import TrainConfig


def steal(scheme: Scheme, protected: Protected) -> nn.Module:
    """A private copy of what the thief holds, safe to modify (``stolen`` may alias the model)."""
    return copy.deepcopy(scheme.stolen(protected))


def redeploy(scheme: Scheme, protected: Protected, stolen_model: nn.Module) -> Protected:
    """The deployment users would query if the thief's modified copy were served."""
    return scheme.redeploy(protected, stolen_model)


def first(images: ImageSet, n: int | None) -> ImageSet:
    """The first ``n`` images (all when ``n`` is None or larger than the set)."""
    return images if n is None or n >= len(images) else images.subset(torch.arange(n))


def score(
    scheme: Scheme, protected: Protected, test: ImageSet, device: torch.device, seed: int,
    max_images: int | None = None,
) -> tuple[float, float]:  # fmt: skip
    """(A_ad, A_ud) in percent of ``protected`` on the first ``max_images`` of ``test``."""
    a_ad, a_ud, _ = ad_ud_accuracy(scheme, protected, first(test, max_images), device, seed)
    return a_ad, a_ud


def thief_data(ctx: AttackContext, n: int | None = None) -> ImageSet:
    """The thief's own labelled images: its split, disjoint from the owner's (first ``n``)."""
    return first(ctx.splits.attacker, n)


def thief_train(
    ctx: AttackContext, epochs: int, lr: float | None = None, schedule: str | None = None
) -> TrainConfig:
    """The preset's recipe with the thief's budget (None keeps the preset's lr / schedule).

    A constant schedule has no warm-up: fine-tuning starts from trained weights."""
    changes: dict = {"epochs": epochs}
    if lr is not None:
        changes["lr"] = lr
    if schedule is not None:
        changes["schedule"] = schedule
        if schedule == "constant":
            changes["warmup_epochs"] = 0.0
    return dataclasses.replace(ctx.preset.train, **changes)
