"""Fake tokens against input-space schemes (ActiveDaemon section VI-B, Tables IV and VII, Fig. 4).

The thief holds no credential and sends forged tokens. Three forgeries, each scored on the test
slice through the deployed service (every forged image is quantised to 8 bits, as sent):

- ``gaussian``: x + N(0, sigma^2) per pixel, sigma the std of the real residual G(x, s) - x on
  the thief's images. A thief can only guess sigma; it is given the true scale, the strongest
  version of Table IV's random token.
- ``deteriorated``: a fraction gamma_f of the spatial positions (all channels together) carry the
  genuine residual, the rest stay clean (Fig. 4): how much of a token must survive.
  gamma_f = 1 is the genuine token, gamma_f = 0 the clean image.
- ``mismatched``: the residual made for another test image, G(x', s) - x', added to x (Table VII;
  for an image-independent sticker this equals the genuine token, reported anyway).

``A_td`` (the headline) is the better of the two forgeries a thief can make without any part of
the genuine token, Gaussian and mismatched. The deteriorated curve assumes the thief holds part
of a genuine token (a lossy copy), so it is reported as a curve, not folded into A_td.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Interval

from ipbench.core.errors import IpbenchError
from ipbench.core.progress import track
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Metric, Results, pct
from ipbench.ml.images import quantize
from ipbench.ml.training import to_float_images
from ipbench.plugin.attack import Attack, Target, seeded, served_accuracy, test_slice
from ipbench.plugin.capabilities import InputSpaceToken, capability
from ipbench.plugin.context import RunContext
from ipbench.plugin.evaluate import eval_users

MODES = ("gaussian", "deteriorated", "mismatched")
GAUSSIAN, MISMATCHED = At("A_fake", label="gaussian"), At("A_fake", label="mismatched")


@dataclass(frozen=True)
class FakeTokenConfig:
    modes: tuple[str, ...] = MODES
    gammas: tuple[Annotated[float, Interval(ge=0, le=1)], ...] = tuple(
        i / 10 for i in range(11)
    )  # Fig. 4's gamma_f sweep
    max_test: Annotated[int, Ge(0)] = (
        2000  # test images scored per forgery (0: the whole test split)
    )
    users: Annotated[int, Ge(1)] = (
        4  # genuine tokens come from this many users, as in the shared evaluation
    )
    batch_size: Annotated[int, Ge(1)] = 500

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise IpbenchError(f"fake-token modes {bad or '()'} invalid; valid: {', '.join(MODES)}")
        bad_g = [g for g in self.gammas if not 0.0 <= g <= 1.0]
        if bad_g:
            raise IpbenchError(f"fake-token gammas {bad_g} must lie in [0, 1]")


def genuine(
    target: Target, ctx: RunContext, x: torch.Tensor, users: int, batch_size: int
) -> torch.Tensor:
    """What authorized users send for clean images ``x`` (CPU), ``x`` split among ``users``."""
    scheme, protected = target.scheme, target.protected
    token = capability(scheme, InputSpaceToken)
    protected.model.to(ctx.device).eval()
    names = eval_users(ctx.seed, max(1, min(users, len(x))))
    out = []
    for user, idx in zip(names, torch.arange(len(x)).tensor_split(len(names)), strict=True):
        cred = scheme.authorize(protected, user)
        with torch.no_grad():
            out += [
                token.apply(cred, x[idx[i : i + batch_size]].to(ctx.device)).cpu()
                for i in range(0, len(idx), batch_size)
            ]
    return torch.cat(out) if out else x.clone()


def keep_positions(n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Random rank of every spatial position per image (N, 1, H, W): keeping ranks below
    gamma_f * H * W keeps exactly that fraction, and the kept sets are nested in gamma_f."""
    return torch.rand(n, h * w, generator=g).argsort(1).argsort(1).view(n, 1, h, w)


def other_image(n: int, g: torch.Generator) -> torch.Tensor:
    """For each image, the index of a different one (the identity where there is only one)."""
    if n < 2:
        return torch.arange(n)
    return (torch.arange(n) + torch.randint(1, n, (n,), generator=g)) % n


@attacks.register("fake-token")
class FakeToken(Attack):
    """Forged tokens (random, deteriorated, mismatched) sent without a credential."""

    Config = FakeTokenConfig
    requires = (InputSpaceToken,)
    summary = "forged tokens: Gaussian (Table IV), deteriorated (Fig. 4), mismatched (Table VII)"
    preset_defaults = {"smoke": {"max_test": 500}}  # the whole smoke test split: seconds
    metrics = (
        pct("A_td", "lower", 1, "the better of the Gaussian and mismatched forgeries"),
        pct("A_fake", "lower", 0, "accuracy with one forgery (label) or kept share gamma_f"),
        Metric("token_sigma", "", "neither", ".2f", 0, "std of the genuine residual"),
    )

    def run(self, target: Target, ctx: RunContext) -> Results:
        c = self.config
        x, y = test_slice(ctx, c.max_test)
        residual = genuine(target, ctx, x, c.users, c.batch_size) - x
        out: Results = {}
        if "gaussian" in c.modes:
            n_thief = len(x) if c.max_test == 0 else c.max_test
            own = to_float_images(ctx.thief.data.x[:n_thief])
            if len(own) == 0:
                raise IpbenchError(
                    "fake-token gaussian needs the thief's images; attacker split is empty"
                )
            sigma = float((genuine(target, ctx, own, c.users, c.batch_size) - own).std())
            noise = torch.randn(x.shape, generator=seeded(ctx.seed, 1)) * sigma
            out["token_sigma"] = sigma
            out[GAUSSIAN] = served_accuracy(target, quantize(x + noise), y, ctx)
        if "deteriorated" in c.modes:
            rank = keep_positions(len(x), x.shape[-2], x.shape[-1], seeded(ctx.seed, 2))
            for gamma in track(c.gammas, "deteriorated tokens"):
                kept = (rank < round(gamma * rank[0].numel())).to(x.dtype)
                acc = served_accuracy(target, quantize(x + kept * residual), y, ctx)
                out[At("A_fake", "gamma_f", gamma)] = acc
        if "mismatched" in c.modes:
            other = other_image(len(x), seeded(ctx.seed, 3))
            out[MISMATCHED] = served_accuracy(target, quantize(x + residual[other]), y, ctx)
        forged = [out[k] for k in (GAUSSIAN, MISMATCHED) if k in out]
        if forged:
            out["A_td"] = max(forged)
        return out
