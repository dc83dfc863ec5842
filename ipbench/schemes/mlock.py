"""M-LOCK (Ren et al., IEEE TDSC 2022): one visible 4x4 sticker, trained in by poisoning.

The same poisoning recipe as ActiveDaemon (shared ``ipbench.schemes._poisoning.poisoning``); the token is a fixed
RGB sticker pasted at alpha 1.0 at a random position of every image (reference code
``rand_loc=1``), or at the bottom-right corner. The reference PNG stickers are not public, so
the sticker is drawn from the scheme's seed. Every user holds the same sticker: capacity 1.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from annotated_types import Ge, Interval

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.images import quantize
from ipbench.ml.models import ModelSpec
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Protected
from ipbench.schemes._poisoning.poisoning import PoisonConfig
from ipbench.schemes._poisoning.token_scheme import OwnerToken, Prepared, TokenScheme


@dataclass(frozen=True)
class MLockConfig(PoisonConfig):
    sticker_size: Annotated[int, Ge(1)] = 4
    placement: Literal["random", "bottom_right"] = "random"
    alpha: Annotated[float, Interval(gt=0, le=1)] = 1.0
    sticker_seed: int = (
        0  # with the owner's key seed (ipbench.core.owner), picks the sticker's colours
    )
    # Put on before crop-and-flip, a sticker would be trained mirrored and cut at the border,
    # as no user sends it (see PoisonConfig; measured in the README).
    token_after_augment: bool = True


def paste(
    x: torch.Tensor, sticker: torch.Tensor, top: torch.Tensor, left: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Blend ``sticker`` (C, s, s) into each image of ``x`` (N, C, H, W) at (top[i], left[i])."""
    out = x.clone()
    n, s = len(x), sticker.shape[-1]
    rows = torch.arange(n)
    for dy in range(s):
        for dx in range(s):
            ys, xs = top + dy, left + dx
            patch = sticker[:, dy, dx].to(x.dtype)
            out[rows, :, ys, xs] = (1 - alpha) * out[rows, :, ys, xs] + alpha * patch
    return out


def positions(
    n: int, size: int, s: int, placement: str, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    if placement == "bottom_right":
        return torch.full((n,), size - s), torch.full((n,), size - s)
    return torch.randint(0, size - s + 1, (n,), generator=g), torch.randint(
        0, size - s + 1, (n,), generator=g
    )


@schemes.register("mlock")
class MLock(TokenScheme):
    """A fixed visible sticker as the (single, shared) token."""

    Config = MLockConfig
    summary = "visible 4x4 sticker token, poisoning (TDSC'22); one credential for all users"
    # quick: protection trains 2x the baseline's epochs (see the README's Presets section).
    preset_defaults = {
        # smoke: the tiny network does not learn a 4x4 sticker at a random position in the
        # smoke budget (A_pd -2.0 at 4 epochs, -1.0 at 8, +10 at 12); an 8x8 one it does
        # (A_pd 85.2 / 88.8 / 86.2 for seeds 0 / 1 / 2 at 6 epochs)
        "smoke": {"sticker_size": 8, "protect_epochs": 6},
        "quick": {"protect_epochs": 20},  # 2x whitenet's 10 baseline epochs
    }

    def validate(self, spec: ModelSpec) -> None:
        super().validate(spec)
        if not 0 < self.config.sticker_size <= spec.image_size:
            raise IpbenchError(
                f"sticker_size must be in 1..{spec.image_size}, got {self.config.sticker_size}"
            )

    def prepare(self, ctx: RunContext) -> Prepared:
        s, size = self.config.sticker_size, ctx.model_spec.image_size
        if not 0 < s <= size:
            raise IpbenchError(f"sticker_size must be in 1..{size}, got {s}")
        g = ctx.secret_generator(self.name, "sticker", self.config.sticker_seed)
        return Prepared({"sticker": torch.rand(ctx.model_spec.in_channels, s, s, generator=g)})

    def _stick(self, sticker: torch.Tensor, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        top, left = positions(len(x), x.shape[-1], sticker.shape[-1], self.config.placement, g)
        return paste(x, sticker, top, left, self.config.alpha)

    def owner_token(
        self, secrets: dict[str, torch.Tensor], shape: tuple[int, ...], seed: int
    ) -> OwnerToken:
        """One position per authorized image, drawn once (the same draws whether the sticker
        goes on before or after augmentation)."""
        g = torch.Generator().manual_seed(seed + 31)
        s = secrets["sticker"]
        top, left = positions(shape[0], shape[-1], s.shape[-1], self.config.placement, g)
        return lambda x, rows: paste(x, s.to(x.device), top[rows], left[rows], self.config.alpha)

    def token_transform(self, protected: Protected, user: str):
        sticker = protected.secrets["sticker"]
        g = torch.Generator().manual_seed(zlib.crc32(user.encode()))  # reproducible per user

        def transform(x: torch.Tensor) -> torch.Tensor:
            return quantize(self._stick(sticker.to(x.device), x, g))

        return transform

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        return {"capacity": 1.0, "capacity_note": "one sticker shared by every user (capacity 1)"}
