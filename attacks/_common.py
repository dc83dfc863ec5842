"""What every attack shares: the thief's copy, its data, and scoring what it sends or holds.

``score`` is the evaluator's own A_ad/A_ud (same users, same credential split), so an attack's
numbers compare directly with the evaluate stage's.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from ipbench.metrics.accuracy import accuracy
from torch import nn

from ipbench.attack import AttackContext
from ipbench.contract import Credential, Protected, Scheme
from ipbench.datasets import ImageSet
from ipbench.errors import IpbenchError
from ipbench.evaluate import ad_ud_accuracy, query_logits
from ipbench.presets import TrainConfig
from ipbench.training import to_float_images


def steal(scheme: Scheme, protected: Protected) -> nn.Module:
    """A private copy of what the thief holds, safe to modify (``stolen`` may alias the model)."""
    return copy.deepcopy(scheme.stolen(protected))


def bare_network(stolen: nn.Module) -> nn.Module:
    """The network inside a stolen artefact (ActiveGuard ships it wrapped in a control layer)."""
    return getattr(stolen, "model", stolen)


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
    ctx: AttackContext, epochs: int, lr: float | None = None, schedule: str | None = None,
    batch_size: int | None = None,
) -> TrainConfig:  # fmt: skip
    """The preset's recipe with the thief's budget (None keeps the preset's lr / schedule).

    A constant schedule has no warm-up: fine-tuning starts from trained weights. A smaller
    batch (more steps on a small set) scales the preset's learning rate linearly with it."""
    changes: dict = {"epochs": epochs}
    if batch_size is not None:
        changes["batch_size"] = batch_size
        if lr is None:
            lr = ctx.preset.train.lr * batch_size / ctx.preset.train.batch_size
    if lr is not None:
        changes["lr"] = lr
    if schedule is not None:
        changes["schedule"] = schedule
        if schedule == "constant":
            changes["warmup_epochs"] = 0.0
    return dataclasses.replace(ctx.preset.train, **changes)


def test_slice(ctx: AttackContext, max_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_test`` test images in [0, 1] and their labels (0: all of them)."""
    if max_test < 0:
        raise IpbenchError(f"max_test={max_test} must be >= 0 (0: the whole test split)")
    test = first(ctx.splits.test, max_test or None)
    return to_float_images(test.x), test.y


def served_accuracy(
    ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, credential: Credential | None = None
) -> float:
    """Accuracy (percent) of the deployed service's answers to images ``x`` sent as they are."""
    return accuracy(query_logits(ctx.scheme, ctx.protected, x, credential, ctx.device), y)


def seeded(seed: int, salt: int) -> torch.Generator:
    """A CPU generator for an attack's random draws, reproducible per (run seed, salt)."""
    return torch.Generator().manual_seed(5_000_011 * (seed + 1) + salt)
