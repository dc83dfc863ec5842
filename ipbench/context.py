"""The one run context every plugin receives, with an explicit thief view.

Schemes protect with the owner's data (``ctx.owner``); attacks and forged credentials get
``ctx.for_thief()``, whose ``owner`` is refused, so an attack can only use what a thief holds:
its own labelled split and the test set it is scored on (``ctx.thief``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ipbench.config import content_hash
from ipbench.errors import IpbenchError
from ipbench.models import ModelSpec, build_model

if TYPE_CHECKING:
    from ipbench.cache import StageCache
    from ipbench.datasets import ImageSet
    from ipbench.presets import Preset
    from ipbench.training import Trainer


@dataclass(frozen=True)
class ThiefView:
    """What an attacker works with: its own labelled split, disjoint from the owner's
    (``data``), and the test set its results are scored on (``test``)."""

    data: ImageSet
    test: ImageSet


@dataclass
class RunContext:
    """The task (network, budget, seed, device, trainer), its data and the run's services."""

    model_spec: ModelSpec
    preset: Preset
    seed: int
    device: torch.device
    trainer: Trainer
    thief: ThiefView
    owner_split: ImageSet | None = None  # None in a thief's view
    data_key: str = ""  # hash of the dataset, its split and sizes: part of every stage key
    # The unprotected model of the same recipe (a copy per call); None where there is none.
    baseline: Callable[[], nn.Module] | None = None
    cache: StageCache | None = None
    stage_dir: Path | None = None  # where the running stage may keep checkpoints
    code: str = ""  # code identity of the plugin this context serves (ipbench.plugins)
    data_root: str | None = None  # where other datasets are read (transfer fine-tuning)
    download: bool = False

    @property
    def owner(self) -> ImageSet:
        """The owner's training split; refused in a thief's view."""
        if self.owner_split is None:
            raise IpbenchError(
                "the owner's training data is not part of a thief's view; "
                "attacks use ctx.thief.data (their own split) and ctx.thief.test"
            )
        return self.owner_split

    @property
    def test(self) -> ImageSet:
        return self.thief.test

    def for_thief(self) -> RunContext:
        """This context as an attacker sees it: no owner data, no stage folder."""
        return dataclasses.replace(self, owner_split=None, stage_dir=None)

    def new_model(self) -> nn.Module:
        """A freshly initialised network, deterministic under the run's seed."""
        torch.manual_seed(self.seed)
        return build_model(self.model_spec)

    def unprotected(self) -> nn.Module:
        """A copy of the cached unprotected model of the same recipe."""
        if self.baseline is None:
            raise IpbenchError("this context has no unprotected baseline model")
        return self.baseline()

    def stage(
        self, name: str, material: Any, compute: Callable[[Path], dict[str, Any]]
    ) -> tuple[Path, str]:
        """A cached sub-stage of the running plugin (e.g. a token generator), keyed by
        ``material``, the data, the seed and the plugin's code: ``(folder, key)``."""
        if self.cache is None:
            raise IpbenchError(f"stage {name!r}: this context has no stage cache")
        key = content_hash(name, material, self.data_key, self.seed, self.code)
        folder, _ = self.cache.compute(
            name, key, compute, {"material": material, "code": self.code}
        )
        return folder, key
