"""Forged ActiveGuard fingerprints: the thief crafts its own adversarial inputs to open a session.

What the thief knows (ActiveGuard paper, sections 2.3-3.1): the method is public, and so are the
confidence interval [0.10, 0.50), the tolerance eps = 0.01 and the candidate grid
{0.10, 0.12, ..., 0.48} the owner picks C_fp from; the owner's actual C_fp is secret. The thief
holds the stolen artefact, hence the bare network's weights, and its own images. It runs the
paper's own C&W fingerprint generator (public) on the stolen weights for every guessed
confidence, submits the results, and uses the first one that authenticates to query the test
set. ``auth_rate`` is the fraction of forged fingerprints that authenticate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Gt, Interval
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Metric, Results, pct
from ipbench.ml.training import to_float_images
from ipbench.plugin.attack import Attack, Target, bare_network, seeded, served_accuracy, test_slice
from ipbench.plugin.capabilities import FingerprintAuthentication, capability
from ipbench.plugin.context import RunContext


@dataclass(frozen=True)
class ForgedFingerprintConfig:
    """Guesses: empty ``windows`` means the paper's published candidate grid on [z1, z2)."""

    windows: tuple[
        Annotated[float, Interval(ge=0, le=1)], ...
    ] = ()  # guessed confidences c; empty: the candidate grid
    interval: tuple[float, float] = (0.10, 0.50)  # [z1, z2), published
    eps: Annotated[float, Gt(0)] = 0.01  # the published tolerance: guesses are 2 eps apart
    per_window: Annotated[int, Ge(1)] = 5  # forged fingerprints per guessed confidence
    max_test: Annotated[int, Ge(0)] = (
        2000  # test images queried through the forged session (0: all)
    )
    # The C&W generator's settings (the scheme's defaults; the algorithm is public).
    cw_alpha: Annotated[float, Gt(0)] = 100.0
    cw_steps: Annotated[int, Ge(1)] = 300
    cw_lr: Annotated[float, Gt(0)] = 0.01
    cw_batch_size: Annotated[int, Ge(1)] = 512


def candidate_grid(interval: tuple[float, float], eps: float) -> tuple[float, ...]:
    """The paper's candidate confidences: z1, z1 + 2 eps, ... below z2."""
    z1, z2 = interval
    if not (0 < z1 < z2 < 1 and 0 < eps < 0.5):
        raise IpbenchError(f"interval={interval}, eps={eps}: need 0 < z1 < z2 < 1, 0 < eps < 0.5")
    n = round((z2 - z1) / (2 * eps))
    return tuple(round(z1 + 2 * eps * i, 6) for i in range(n) if z1 + 2 * eps * i < z2 - 1e-9)


def forge_fingerprints(
    auth: FingerprintAuthentication, model: nn.Module, x: torch.Tensor,
    windows: tuple[float, ...], per_window: int, c: ForgedFingerprintConfig, num_classes: int,
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``per_window`` fingerprints per confidence in ``windows`` from the thief's images ``x``
    (floats in [0, 1]), each aimed at a random class; returns images and their target c."""
    n = len(windows) * per_window
    if n == 0 or len(x) == 0:
        raise IpbenchError(f"no fingerprints to forge: {len(windows)} windows, {len(x)} images")
    confs = torch.tensor(windows, dtype=torch.float32).repeat_interleave(per_window)
    src = torch.randint(len(x), (n,), generator=g)
    targets = torch.randint(num_classes, (n,), generator=g)
    images = auth.craft_fingerprints(
        model, x[src], targets, confs, eps=c.eps, steps=c.cw_steps, lr=c.cw_lr,
        alpha=c.cw_alpha, batch_size=c.cw_batch_size,
    )  # fmt: skip
    return images, confs


@attacks.register("forged-fingerprint")
class ForgedFingerprint(Attack):
    """Fingerprints the thief crafted on the stolen weights for guessed confidences."""

    Config = ForgedFingerprintConfig
    requires = (FingerprintAuthentication,)
    summary = "thief-made fingerprints (the public C&W generator) for guessed confidences"
    # smoke: one forgery per guessed confidence and a shorter C&W search (seconds, not 45 s)
    preset_defaults = {"smoke": {"per_window": 1, "cw_steps": 100, "max_test": 500}}
    metrics = (
        pct("A_td", "lower", 1, "accuracy through the first forged session"),
        Metric("auth_rate", "fraction", "lower", ".2f", 2, "forged fingerprints accepted"),
    )

    def run(self, target: Target, ctx: RunContext) -> Results:
        c, protected = self.config, target.protected
        auth = capability(target.scheme, FingerprintAuthentication)
        windows = c.windows or candidate_grid(c.interval, c.eps)
        stolen = target.scheme.stolen(protected)
        model = bare_network(target, stolen).to(ctx.device).eval()
        n_src = max(1, len(windows) * c.per_window)
        own = to_float_images(ctx.thief.data.x[: 4 * n_src])
        images, confs = forge_fingerprints(
            auth, model, own, windows, c.per_window, c,
            protected.model_spec.num_classes, seeded(ctx.seed, 11),
        )  # fmt: skip
        passed = auth.authenticates(protected, images)
        out: Results = {"auth_rate": float(passed.float().mean())}
        for w in windows:
            out[At("auth_rate", "c", w)] = float(passed[confs == torch.tensor(w)].float().mean())
        pick = int(passed.nonzero()[0]) if passed.any() else 0
        session = auth.session_credential(images[pick])
        x, y = test_slice(ctx, c.max_test)
        out["A_td"] = served_accuracy(target, x, y, ctx, session)
        return out
