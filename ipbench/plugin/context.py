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

from ipbench.core.config import content_hash
from ipbench.core.errors import IpbenchError
from ipbench.core.owner import derive, key_digest, owner_dir
from ipbench.ml.models import ModelSpec, build_model

if TYPE_CHECKING:
    from ipbench.ml.datasets import ImageSet
    from ipbench.ml.presets import Preset
    from ipbench.ml.training import Trainer
    from ipbench.store.cache import StageCache


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
    code: str = ""  # code identity of the plugin this context serves (ipbench.core.identity)
    data_root: str | None = None  # where other datasets are read (transfer fine-tuning)
    download: bool = False
    # The owner's key seed (ipbench.core.owner): what every secret is drawn from. Never the
    # published run seed; None in a thief's view.
    key_seed: int | None = None

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
        """This context as an attacker sees it: no owner data, no stage folder, no key."""
        return dataclasses.replace(self, owner_split=None, stage_dir=None, key_seed=None)

    def _key(self) -> int:
        if self.key_seed is None:
            raise IpbenchError(
                "the owner's key seed is not part of a thief's view; secrets are drawn only "
                "in protect (ctx.secret_generator / ctx.secret_seed)"
            )
        return self.key_seed

    def secret_generator(self, *purpose: object) -> torch.Generator:
        """A generator for one of the owner's secrets (``purpose``: the scheme's name and a
        salt), drawn from the key seed, so no one holding only the run seed can redraw it."""
        return torch.Generator().manual_seed(derive(self._key(), purpose))

    def secret_seed(self, *purpose: object) -> int:
        """An integer seed (40 bits, so code that offsets or scales it stays in range) for
        owner-side randomness that shapes a secret, e.g. an encoder's initial weights."""
        return derive(self._key(), purpose, bits=40)

    def new_model(self) -> nn.Module:
        """A freshly initialised network, deterministic under the run's seed."""
        torch.manual_seed(self.seed)
        return build_model(self.model_spec)

    def unprotected(self) -> nn.Module:
        """A copy of the cached unprotected model of the same recipe."""
        if self.baseline is None:
            raise IpbenchError("this context has no unprotected baseline model")
        return self.baseline()

    def secret_folder(self, name: str) -> Path:
        """``WORKDIR/owner/NAME``, readable by the owner only: for a plugin's secret working
        files outside a stage folder (e.g. a token generator's resumable checkpoints)."""
        if self.cache is None or self.key_seed is None:
            raise IpbenchError(
                f"secret folder {name!r}: not part of a thief's view or a bare context"
            )
        folder = owner_dir(self.cache.root.parent) / name
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    def stage(
        self, name: str, material: Any, compute: Callable[[Path], dict[str, Any]]
    ) -> tuple[Path, str]:
        """A cached sub-stage of the running plugin (e.g. a token generator), keyed by
        ``material``, the data, the seed and the plugin's code: ``(folder, key)``."""
        if self.cache is None:
            raise IpbenchError(f"stage {name!r}: this context has no stage cache")
        secret = key_digest(self.key_seed) if self.key_seed is not None else None
        key = content_hash(name, material, self.data_key, self.seed, self.code, secret)
        folder, _ = self.cache.compute(
            name, key, compute, {"material": material, "code": self.code}
        )
        return folder, key
