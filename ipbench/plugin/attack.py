"""The attack contract and the public helpers every attack uses.

An attack is one module: a ``Config`` dataclass (the papers' defaults), an ``Attack`` subclass
registered with ``@attacks.register("name")`` that lists the capabilities it needs
(``requires``) and implements ``run(target, ctx)``. ``target`` is the deployment under attack;
``ctx`` is the thief's view of the run (``ctx.thief.data``: its own labelled split;
``ctx.thief.test``: the test set it is scored on; the owner's data is refused).

The helpers below (``steal``, ``redeploy``, ``score``, ``served_accuracy``, ...) score exactly
as the evaluate stage does (same users, same credential split), so an attack's numbers compare
directly with A_ad / A_ud.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.metrics.accuracy import accuracy
from ipbench.metrics.spec import Metric, Results, pct
from ipbench.ml.datasets import ImageSet
from ipbench.ml.models import ModelSpec
from ipbench.ml.presets import TrainConfig
from ipbench.ml.training import to_float_images
from ipbench.plugin.capabilities import WrappedDeployment, capabilities_of
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.plugin.evaluate import ad_ud_accuracy, query_logits


@dataclass
class Target:
    """The deployment under attack: the scheme's code and its protected artefact."""

    scheme: Scheme
    protected: Protected


class Attack(ABC):
    """Base class of attack plugins; ``Config`` defaults are the papers' values."""

    name: ClassVar[str] = ""  # set by the registry's decorator
    Config: ClassVar[type[Any]]
    requires: ClassVar[tuple[type, ...]] = ()  # capability classes (ipbench.plugin.capabilities)
    summary: ClassVar[str] = ""
    # What the attack's numbers mean; those with a headline rank summarise it at its strongest
    # setting (the leaderboard's column: the lowest rank present). Curve points are returned
    # under ``At`` keys and described by their metric's entry.
    metrics: ClassVar[tuple[Metric, ...]] = (pct("A_ud", "lower", headline=1),)
    # Config values per preset name (smaller budgets for smoke and quick); --set wins.
    preset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def headline_names(cls) -> tuple[str, ...]:
        """The headline metrics, by rank."""
        return tuple(m.name for m in sorted(cls.metrics, key=lambda m: m.headline) if m.headline)

    def skip_reason(self, scheme: Scheme) -> str | None:
        """Why this attack does not apply to ``scheme`` (the capabilities it lacks), or None."""
        missing = [c.__name__ for c in self.requires if not isinstance(scheme, c)]
        if missing:
            has = ", ".join(capabilities_of(scheme)) or "none"
            return f"{scheme.name} lacks capability {', '.join(missing)} (it has: {has})"
        return None

    def validate(self, spec: ModelSpec) -> None:
        """Check the settings against the task before any training starts (default: none)."""
        return None

    @abstractmethod
    def run(self, target: Target, ctx: RunContext) -> Results:
        """Attack and return metrics by name or curve point (accuracies in percent)."""


# --- the thief's copy ----------------------------------------------------------------------
def steal(target: Target) -> nn.Module:
    """A private copy of what the thief holds, safe to modify (``stolen`` may alias the model)."""
    return copy.deepcopy(target.scheme.stolen(target.protected))


def bare_network(target: Target, stolen: nn.Module) -> nn.Module:
    """The network inside a stolen artefact: unwrapped for a ``WrappedDeployment``."""
    scheme = target.scheme
    return scheme.bare_network(stolen) if isinstance(scheme, WrappedDeployment) else stolen


def redeploy(target: Target, stolen_model: nn.Module) -> Target:
    """The deployment users would query if the thief's modified copy were served."""
    return Target(target.scheme, target.scheme.redeploy(target.protected, stolen_model))


# --- the thief's data and budget -----------------------------------------------------------
def first(images: ImageSet, n: int | None) -> ImageSet:
    """The first ``n`` images (all when ``n`` is None or larger than the set)."""
    return images if n is None or n >= len(images) else images.subset(torch.arange(n))


def thief_data(ctx: RunContext, n: int | None = None) -> ImageSet:
    """The thief's own labelled images: its split, disjoint from the owner's (first ``n``)."""
    return first(ctx.thief.data, n)


def thief_train(
    ctx: RunContext, epochs: int, lr: float | None = None, schedule: str | None = None,
    batch_size: int | None = None,
) -> TrainConfig:  # fmt: skip
    """The preset's recipe with the thief's budget (None keeps the preset's lr / schedule).

    A constant schedule has no warm-up: fine-tuning starts from trained weights. A smaller
    batch (more steps on a small set) scales the preset's learning rate linearly with it."""
    changes: dict[str, Any] = {"epochs": epochs}
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


def training_set_size(ctx: RunContext) -> int:
    """The training set the thief's split was drawn from (its split / the attacker share):
    the base that data budgets given as a fraction of "the training set" count against."""
    share = ctx.preset.attacker_fraction
    if share <= 0:
        raise IpbenchError(f"preset {ctx.preset.name!r} gives the thief no data (attacker share 0)")
    return round(len(ctx.thief.data) / share)


def test_slice(ctx: RunContext, max_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_test`` test images in [0, 1] and their labels (0: all of them)."""
    if max_test < 0:
        raise IpbenchError(f"max_test={max_test} must be >= 0 (0: the whole test split)")
    test = first(ctx.thief.test, max_test or None)
    return to_float_images(test.x), test.y


def seeded(seed: int, salt: int) -> torch.Generator:
    """A CPU generator for an attack's random draws, reproducible per (run seed, salt)."""
    return torch.Generator().manual_seed(5_000_011 * (seed + 1) + salt)


# --- scoring -------------------------------------------------------------------------------
def score(
    target: Target, test: ImageSet, ctx: RunContext, max_images: int | None = None
) -> tuple[float, float]:
    """(A_ad, A_ud) in percent of ``target`` on the first ``max_images`` of ``test``."""
    a_ad, a_ud, _ = ad_ud_accuracy(
        target.scheme, target.protected, first(test, max_images), ctx.device, ctx.seed
    )
    return a_ad, a_ud


def answers(
    target: Target, x: torch.Tensor, ctx: RunContext, credential: Credential | None = None
) -> torch.Tensor:
    """The deployed service's logits (CPU, float32) for clean images ``x`` sent with
    ``credential`` (None: none)."""
    return query_logits(target.scheme, target.protected, x, credential, ctx.device)


def served_accuracy(
    target: Target, x: torch.Tensor, y: torch.Tensor, ctx: RunContext,
    credential: Credential | None = None,
) -> float:  # fmt: skip
    """Accuracy (percent) of the deployed service's answers to images ``x`` sent as they are."""
    return accuracy(answers(target, x, ctx, credential), y)


__all__ = [
    "Attack",
    "Target",
    "answers",
    "bare_network",
    "first",
    "redeploy",
    "score",
    "seeded",
    "served_accuracy",
    "steal",
    "test_slice",
    "thief_data",
    "thief_train",
    "training_set_size",
]
