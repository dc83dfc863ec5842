"""ADIP (Xue et al., TrustCom 2020): a visible blended grid trigger, trained in by poisoning.

As re-implemented by the ActiveDaemon authors: a 3x3 grid of white squares of side floor(S/9)
with top-left corners at S/9 + k*S/3 (k = 0, 1, 2 on both axes), alpha-blended at 0.5. The
paper claims 252 users without saying how; the capacity is reported as published, unverified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Interval

from ipbench.core.registry import schemes
from ipbench.ml.images import quantize
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Protected
from ipbench.schemes._poisoning.poisoning import PoisonConfig
from ipbench.schemes._poisoning.token_scheme import OwnerToken, Prepared, TokenScheme

PUBLISHED_CAPACITY = 252


@dataclass(frozen=True)
class AdipConfig(PoisonConfig):
    alpha: Annotated[float, Interval(gt=0, le=1)] = 0.5
    grid: Annotated[int, Ge(1)] = 3  # squares per side
    # The grid sits at fixed pixels: put on before crop-and-flip it would train on shifted and
    # mirrored grids no user sends (see PoisonConfig; measured in the README).
    token_after_augment: bool = True


def grid_mask(size: int, grid: int = 3) -> torch.Tensor:
    """(size, size) float mask: 1 inside the grid's squares."""
    side = max(1, size // 9)
    mask = torch.zeros(size, size)
    for i in range(grid):
        for j in range(grid):
            top, left = int(size / 9 + i * size / 3), int(size / 9 + j * size / 3)
            mask[top : top + side, left : left + side] = 1.0
    return mask


def blend_grid(x: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    m = (alpha * mask).to(x.device, x.dtype)
    return x * (1 - m) + m  # white (1.0) blended in at alpha


@schemes.register("adip")
class Adip(TokenScheme):
    """A blended white-grid trigger as the token."""

    Config = AdipConfig
    summary = (
        "visible blended 3x3 white grid token, poisoning (TrustCom'20); capacity 252 as published"
    )
    # quick: protection trains 2x the baseline's epochs (see the README's Presets section).
    preset_defaults = {"quick": {"protect_epochs": 20}}  # 2x whitenet's 10 baseline epochs

    def prepare(self, ctx: RunContext) -> Prepared:
        return Prepared({"mask": grid_mask(ctx.model_spec.image_size, self.config.grid)})

    def owner_token(
        self, secrets: dict[str, torch.Tensor], shape: tuple[int, ...], seed: int
    ) -> OwnerToken:
        return lambda x, rows: blend_grid(x, secrets["mask"], self.config.alpha)

    def token_transform(self, protected: Protected, user: str):
        mask = protected.secrets["mask"]
        return lambda x: quantize(blend_grid(x, mask, self.config.alpha))

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        return {
            "capacity_published": float(PUBLISHED_CAPACITY),
            "capacity_note": "252 users as published; how is not public, so unverified (one grid here)",
        }
