"""Protection training by data poisoning, shared by ActiveDaemon, M-LOCK and ADIP.

A fraction gamma of the owner's training images becomes authorized images (the token applied,
true label kept); the rest stay clean, optionally with ordinary noise, and get labels from a
strategy G_l. Only the token differs between the three schemes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from annotated_types import Ge, Interval

from ipbench.core.errors import IpbenchError

Strategy = Literal["single", "random", "near", "surjective", "uniform"]
STRATEGIES: tuple[str, ...] = ("single", "random", "near", "surjective", "uniform")


@dataclass(frozen=True)
class PoisonConfig:
    """The poisoning recipe; defaults follow the ActiveDaemon reference code."""

    gamma: Annotated[float, Interval(gt=0, lt=1)] = (
        0.5  # share of authorized images (paper text: 0.2; reference code: 0.5)
    )
    strategy: Strategy = "single"
    target_class: Annotated[int, Ge(0)] = 5  # `single`: the reference code's class 5
    # `surjective`: G_l(y) = candidates[y mod 5] with candidates (1, 2, 3, 4, 0): five
    # candidate labels taken in order; no label below 5 maps to itself.
    surjective_candidates: tuple[Annotated[int, Ge(0)], ...] = (1, 2, 3, 4, 0)
    noise_fraction: Annotated[float, Interval(ge=0, le=1)] = (
        0.0  # share of unauthorized images given ordinary noise
    )
    noise: Literal["gaussian", "saltpepper", "jpeg", "mixed"] = "mixed"
    gaussian_std: Annotated[float, Ge(0)] = 0.02
    saltpepper_amount: Annotated[float, Interval(ge=0, le=1)] = 0.01
    jpeg_quality: Annotated[int, Interval(ge=1, le=100)] = 75
    # Epochs of protection training; None: the preset's, as for the baseline. The quick
    # preset sets twice the baseline's (see the README's Presets section for why).
    protect_epochs: Annotated[int, Ge(1)] | None = None
    # Where the owner's token goes relative to the trainer's crop-and-flip augmentation. False:
    # tokens made once, before training, then cropped and mirrored with their image (the common
    # order in backdoor code; the papers do not say). True: on each augmented batch, so training
    # sees the token exactly where and how a user's query carries it. Needs a token the scheme
    # can apply per batch (M-LOCK and ADIP, which default to True; see the README).
    token_after_augment: bool = False

    # What runs stored before a field existed did, where it differs from a subclass's default
    # (the leaderboard names such runs by these values).
    LEGACY: ClassVar[dict[str, Any]] = {"token_after_augment": False}


def validate(cfg: PoisonConfig, num_classes: int) -> None:
    if not 0.0 < cfg.gamma < 1.0:
        raise IpbenchError(f"gamma must be in (0, 1), got {cfg.gamma}")
    if cfg.strategy not in STRATEGIES:
        raise IpbenchError(f"unknown strategy {cfg.strategy!r}; valid: {', '.join(STRATEGIES)}")
    if cfg.strategy == "single" and not 0 <= cfg.target_class < num_classes:
        raise IpbenchError(f"target_class {cfg.target_class} outside 0..{num_classes - 1}")
    if cfg.strategy == "surjective" and any(
        not 0 <= c < num_classes for c in cfg.surjective_candidates
    ):
        raise IpbenchError(
            f"surjective_candidates {cfg.surjective_candidates} outside 0..{num_classes - 1}"
        )
    if cfg.protect_epochs is not None and cfg.protect_epochs < 1:
        raise IpbenchError(f"protect_epochs must be >= 1 (or None), got {cfg.protect_epochs}")
    if not 0.0 <= cfg.noise_fraction <= 1.0:
        raise IpbenchError(f"noise_fraction must be in [0, 1], got {cfg.noise_fraction}")


def unauthorized_targets(
    y: torch.Tensor, num_classes: int, cfg: PoisonConfig, epoch: int = 0, seed: int = 0
) -> torch.Tensor:
    """G_l: labels (N,) for hard strategies, soft targets (N, K) for ``uniform``.

    ``random`` draws a uniformly random class per image, afresh for every epoch.
    """
    if cfg.strategy == "single":
        return torch.full_like(y, cfg.target_class)
    if cfg.strategy == "near":
        return (y + 1) % num_classes
    if cfg.strategy == "surjective":
        cands = torch.tensor(cfg.surjective_candidates, dtype=torch.long)
        return cands[y % len(cands)]
    if cfg.strategy == "random":
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return torch.randint(0, num_classes, y.shape, generator=g)
    if cfg.strategy == "uniform":
        soft = torch.full((len(y), num_classes), 1.0 / (num_classes - 1))
        soft[torch.arange(len(y)), y] = 0.0
        return soft
    raise IpbenchError(f"unknown strategy {cfg.strategy!r}; valid: {', '.join(STRATEGIES)}")


def ordinary_noise(x: torch.Tensor, cfg: PoisonConfig, g: torch.Generator) -> torch.Tensor:
    """Gaussian, salt-and-pepper or JPEG noise on uint8 images: what a channel does, no token."""
    kinds = ["gaussian", "saltpepper", "jpeg"] if cfg.noise == "mixed" else [cfg.noise]
    choice = torch.randint(0, len(kinds), (len(x),), generator=g)
    out = x.clone()
    for k, kind in enumerate(kinds):
        idx = (choice == k).nonzero().flatten()
        if len(idx) == 0:
            continue
        xf = x[idx].float() / 255
        if kind == "gaussian":
            xf = xf + cfg.gaussian_std * torch.randn(xf.shape, generator=g)
        elif kind == "saltpepper":
            u = torch.rand(xf.shape[0], 1, *xf.shape[2:], generator=g)
            xf = torch.where(u < cfg.saltpepper_amount / 2, torch.zeros_like(xf), xf)
            xf = torch.where(u > 1 - cfg.saltpepper_amount / 2, torch.ones_like(xf), xf)
        else:
            out[idx] = _jpeg(x[idx], cfg.jpeg_quality)
            continue
        out[idx] = (xf.clamp(0, 1) * 255).round().to(torch.uint8)
    return out


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    res = []
    for img in x:
        buf = io.BytesIO()
        arr = img.permute(1, 2, 0).numpy()
        Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(
            buf, format="JPEG", quality=quality
        )
        dec = torch.from_numpy(np.asarray(Image.open(buf)).copy())
        res.append(dec.reshape(img.shape[1], img.shape[2], -1).permute(2, 0, 1))
    return torch.stack(res)


@dataclass
class PoisonedSet:
    """The materialised training set: images once, targets per epoch (``random`` redraws)."""

    x: torch.Tensor  # uint8 (N, C, H, W): authorized images first, then unauthorized ones
    y_true: torch.Tensor
    authorized: torch.Tensor  # bool (N,)
    num_classes: int
    cfg: PoisonConfig
    seed: int

    def targets(self, epoch: int) -> torch.Tensor:
        """Labels for ``epoch``: true labels for authorized images, G_l for the rest."""
        unauth = ~self.authorized
        g_l = unauthorized_targets(
            self.y_true[unauth], self.num_classes, self.cfg, epoch, self.seed
        )
        if g_l.ndim == 2:  # soft targets: one-hot for the authorized images
            out = torch.zeros(len(self.y_true), self.num_classes)
            out[self.authorized, self.y_true[self.authorized]] = 1.0
            out[unauth] = g_l
            return out
        out = self.y_true.clone()
        out[unauth] = g_l
        return out


def build_poisoned_set(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: PoisonConfig, seed: int, tokenize,
    clean: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
) -> PoisonedSet:  # fmt: skip
    """Split (x, y) by gamma; ``tokenize(x_uint8, indices) -> uint8`` makes the authorized part,
    ``clean(x_uint8) -> uint8 | None`` (optional) transforms the unauthorized part first."""
    validate(cfg, num_classes)
    g = torch.Generator().manual_seed(seed * 7_919 + 17)
    perm = torch.randperm(len(x), generator=g)
    n_auth = round(cfg.gamma * len(x))
    a_idx, u_idx = perm[:n_auth].sort().values, perm[n_auth:].sort().values
    x_auth = tokenize(x[a_idx], a_idx)
    x_unauth = x[u_idx]
    changed = clean(x_unauth) if clean is not None else None
    if changed is not None:
        x_unauth = changed
    if cfg.noise_fraction > 0:
        n_noisy = round(cfg.noise_fraction * len(u_idx))
        which = torch.randperm(len(u_idx), generator=g)[:n_noisy]
        x_unauth = x_unauth.clone()
        x_unauth[which] = ordinary_noise(x_unauth[which], cfg, g)
    authorized = torch.cat(
        [torch.ones(len(a_idx), dtype=torch.bool), torch.zeros(len(u_idx), dtype=torch.bool)]
    )
    return PoisonedSet(
        torch.cat([x_auth, x_unauth]),
        torch.cat([y[a_idx], y[u_idx]]),
        authorized,
        num_classes,
        cfg,
        seed,
    )
