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

import torch
from ipbench.attacks._common import bare_network, seeded, served_accuracy, test_slice
from ipbench.schemes.activeguard_fingerprint import CWSettings, cw_fingerprints
from torch import nn

from ipbench.attack import Attack, AttackContext
from ipbench.contract import Credential
from ipbench.errors import IpbenchError
from ipbench.registry import attacks
from ipbench.training import to_float_images


@dataclass(frozen=True)
class ForgedFingerprintConfig:
    """Guesses: empty ``windows`` means the paper's published candidate grid on [z1, z2)."""

    windows: tuple[float, ...] = ()  # guessed confidences c; empty: the candidate grid
    interval: tuple[float, float] = (0.10, 0.50)  # [z1, z2), published
    eps: float = 0.01  # the published tolerance: guesses are 2 eps apart
    per_window: int = 5  # forged fingerprints per guessed confidence
    max_test: int = 2000  # test images queried through the forged session (0: all)
    # The C&W generator's settings (the scheme's defaults; the algorithm is public).
    cw_alpha: float = 100.0
    cw_steps: int = 300
    cw_lr: float = 0.01
    cw_batch_size: int = 512


def candidate_grid(interval: tuple[float, float], eps: float) -> tuple[float, ...]:
    """The paper's candidate confidences: z1, z1 + 2 eps, ... below z2."""
    z1, z2 = interval
    if not (0 < z1 < z2 < 1 and 0 < eps < 0.5):
        raise IpbenchError(f"interval={interval}, eps={eps}: need 0 < z1 < z2 < 1, 0 < eps < 0.5")
    n = round((z2 - z1) / (2 * eps))
    return tuple(round(z1 + 2 * eps * i, 6) for i in range(n) if z1 + 2 * eps * i < z2 - 1e-9)


def forge_fingerprints(
    model: nn.Module, x: torch.Tensor, windows: tuple[float, ...], per_window: int,
    settings: CWSettings, num_classes: int, g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``per_window`` fingerprints per confidence in ``windows`` from the thief's images ``x``
    (floats in [0, 1]), each aimed at a random class; returns images and their target c."""
    n = len(windows) * per_window
    if n == 0 or len(x) == 0:
        raise IpbenchError(f"no fingerprints to forge: {len(windows)} windows, {len(x)} images")
    confs = torch.tensor(windows, dtype=torch.float32).repeat_interleave(per_window)
    src = torch.randint(len(x), (n,), generator=g)
    targets = torch.randint(num_classes, (n,), generator=g)
    images, _, _ = cw_fingerprints(model, x[src], targets, confs, settings)
    return images, confs


@attacks.register("forged-fingerprint")
class ForgedFingerprint(Attack):
    """Fingerprints the thief crafted on the stolen weights for guessed confidences."""

    name = "forged-fingerprint"
    Config = ForgedFingerprintConfig
    schemes = frozenset({"activeguard"})
    summary = "ActiveGuard: thief-made C&W fingerprints for guessed confidences open a session"
    headline = ("A_td", "auth_rate")

    def settings(self) -> CWSettings:
        c = self.config
        return CWSettings(
            c.cw_alpha, c.cw_steps, c.cw_lr, c.eps, 0.5, 0.01, "prob", c.cw_batch_size
        )

    def run(self, ctx: AttackContext) -> dict[str, float]:
        c, scheme, protected = self.config, ctx.scheme, ctx.protected
        windows = c.windows or candidate_grid(c.interval, c.eps)
        model = bare_network(scheme.stolen(protected)).to(ctx.device).eval()
        n_src = max(1, len(windows) * c.per_window)
        own = to_float_images(ctx.splits.attacker.x[: 4 * n_src])
        images, confs = forge_fingerprints(
            model, own, windows, c.per_window, self.settings(),
            protected.model_spec.num_classes, seeded(ctx.seed, 11),
        )  # fmt: skip
        passed = scheme.check(protected, images)[0]
        out = {"auth_rate": float(passed.float().mean())}
        for w in windows:
            out[f"auth_rate@c={w:g}"] = float(passed[confs == torch.tensor(w)].float().mean())
        pick = int(passed.nonzero()[0]) if passed.any() else 0
        session = Credential("thief", "fingerprint", {"image": images[pick]})
        x, y = test_slice(ctx, c.max_test)
        out["A_td"] = served_accuracy(ctx, x, y, session)
        return out
