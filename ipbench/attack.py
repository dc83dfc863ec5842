"""The attack contract: an attack declares what it needs and returns named metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ipbench.contract import Capability, Protected, Scheme
from ipbench.datasets import Splits
from ipbench.presets import Preset
from ipbench.training import Trainer


@dataclass
class AttackContext:
    """What the attacker works with: the deployment, its own data split, a budget, a trainer."""

    scheme: Scheme
    protected: Protected
    splits: Splits  # the attacker uses splits.attacker; splits.test is for scoring only
    trainer: Trainer
    preset: Preset
    seed: int
    device: torch.device
    # The unprotected model of the same recipe: what a forger who "knows the pretrained model"
    # holds (passport's features-forged passport). None where the caller has none.
    baseline: Callable[[], nn.Module] | None = None
    data_root: str | None = None  # where other datasets are read (transfer fine-tuning)
    download: bool = False


class Attack(ABC):
    """Base class of attack plugins; ``Config`` defaults are the papers' values."""

    name: ClassVar[str]
    Config: ClassVar[type]
    requires: ClassVar[frozenset[Capability]] = frozenset()
    schemes: ClassVar[frozenset[str] | None] = None  # None: any scheme with the capabilities
    summary: ClassVar[str] = ""
    # Metrics (no ``@``) summarising the attack at its strongest setting, for the leaderboard;
    # curve points are named ``<metric>@<param>=<value>``.
    headline: ClassVar[tuple[str, ...]] = ("A_ud",)

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def skip_reason(self, scheme: Scheme) -> str | None:
        """Why this attack does not apply to ``scheme``, or None when it does."""
        if self.schemes is not None and scheme.name not in self.schemes:
            return f"{self.name} targets {', '.join(sorted(self.schemes))} only"
        missing = [c.value for c in self.requires if not scheme.has(c)]
        if missing:
            return f"{scheme.name} lacks capability {', '.join(missing)}"
        return None

    @abstractmethod
    def run(self, ctx: AttackContext) -> dict[str, float]:
        """Attack and return metrics (accuracies in percent)."""
