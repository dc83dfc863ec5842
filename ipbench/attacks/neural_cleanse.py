"""Reverse engineering the token (ActiveDaemon section VI-B c, Fig. 5): Neural Cleanse.

The thief knows a pattern unlocks the model but not which. It optimises a mask m (1 x H x W)
and a pattern p (C x H x W), both tanh-parametrised as in Neural Cleanse, so that the stolen
network's answers on x' = (1 - m) x + m p match its own TRUE labels: cross-entropy plus
cost * |m|_1, the cost following Neural Cleanse's schedule (x2 after ``patience`` steps above
the accuracy threshold, /1.5 after ``patience`` below). One untargeted objective serves any
number of classes. The reversed token is sent to the deployed service on the test slice
(8-bit, as a user sends it); ``A_re`` is the best accuracy reached, with the mask's L1 norm then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Interval

from ipbench.core.errors import IpbenchError
from ipbench.core.progress import track
from ipbench.core.registry import attacks
from ipbench.metrics.spec import Metric, Results, pct
from ipbench.ml.images import quantize
from ipbench.ml.training import to_float_images
from ipbench.plugin.attack import Attack, Target, bare_network, seeded, served_accuracy, test_slice
from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.context import RunContext

TANH_EPS = 1e-7


@dataclass(frozen=True)
class NeuralCleanseConfig:
    """Neural Cleanse's reference settings where they exist (Adam lr 0.5 per SCHEMES.md, betas
    (0.5, 0.9), L1 cost 1e-3, x2 up, /1.5 down, batch 32); patience and threshold are ours."""

    steps: Annotated[int, Ge(1)] = 2000  # mini-batch steps on the thief's labelled split
    batch_size: Annotated[int, Ge(1)] = 32
    lr: Annotated[float, Gt(0)] = 0.5
    init_cost: Annotated[float, Ge(0)] = 1e-3
    cost_up: Annotated[float, Gt(0)] = 2.0
    cost_down: Annotated[float, Gt(0)] = 1.5
    patience: Annotated[int, Ge(1)] = 10  # steps (Neural Cleanse counts epochs of its mini-batches)
    threshold: Annotated[float, Interval(ge=0, le=100)] = (
        90.0  # batch accuracy (percent) above which the mask is pushed smaller
    )
    eval_every: Annotated[int, Ge(1)] = (
        100  # steps between test-slice scorings of the current mask and pattern
    )
    max_test: Annotated[int, Ge(0)] = 2000  # test images scored (0: the whole test split)

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.eval_every, self.patience) < 1 or self.lr <= 0:
            raise IpbenchError(
                "neural-cleanse needs steps, batch_size, eval_every, patience >= 1 and lr > 0; "
                f"got {self.steps}, {self.batch_size}, {self.eval_every}, {self.patience}, {self.lr}"
            )


def to_tanh_space(v: torch.Tensor) -> torch.Tensor:
    return torch.atanh((2 * v - 1).clamp(-1 + 1e-6, 1 - 1e-6))


def from_tanh_space(v: torch.Tensor) -> torch.Tensor:
    return torch.tanh(v) / (2 - TANH_EPS) + 0.5


def stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """x' = (1 - m) x + m p, the reversed token on images ``x``."""
    return (1 - mask) * x + mask * pattern


class CostSchedule:
    """Neural Cleanse's L1 cost: raised after ``patience`` steps at or above the threshold (the
    mask may shrink), lowered after ``patience`` below it (accuracy first)."""

    def __init__(self, cfg: NeuralCleanseConfig):
        self.cfg, self.cost, self.up, self.down = cfg, cfg.init_cost, 0, 0

    def step(self, acc: float) -> float:
        c = self.cfg
        if acc >= c.threshold:
            self.up, self.down = self.up + 1, 0
        else:
            self.up, self.down = 0, self.down + 1
        if self.up >= c.patience:
            self.cost, self.up = (self.cost or c.init_cost) * c.cost_up, 0
        elif self.down >= c.patience:
            self.cost, self.down = self.cost / c.cost_down, 0
        return self.cost


@attacks.register("neural-cleanse")
class NeuralCleanse(Attack):
    """Reverse-engineer a mask and pattern that unlock the stolen model."""

    Config = NeuralCleanseConfig
    requires = (InputSpaceToken,)
    summary = "Neural Cleanse mask + pattern optimised for true labels (untargeted), best A_re"
    metrics = (
        pct("A_re", "lower", 1, "best accuracy the reversed token reached"),
        Metric("mask_l1", "pixels", "higher", ".2f", 0, "L1 norm of the mask then"),
    )
    preset_defaults = {
        "smoke": {"steps": 100, "eval_every": 50, "max_test": 500},  # seconds, not 735 s
        "quick": {"steps": 1000},
    }

    def run(self, target: Target, ctx: RunContext) -> Results:
        c = self.config
        stolen = target.scheme.stolen(target.protected)
        model = bare_network(target, stolen).to(ctx.device).eval()
        own = ctx.thief.data
        if len(own) == 0:
            raise IpbenchError("neural-cleanse needs labelled attacker images; the split is empty")
        x_test, y_test = test_slice(ctx, c.max_test)
        g = seeded(ctx.seed, 21)
        shape = own.x.shape[1:]
        mask_p = to_tanh_space(torch.rand(1, *shape[1:], generator=g)).to(ctx.device)
        pattern_p = to_tanh_space(torch.rand(*shape, generator=g)).to(ctx.device)
        params = [mask_p.requires_grad_(True), pattern_p.requires_grad_(True)]
        opt = torch.optim.Adam(params, lr=c.lr, betas=(0.5, 0.9))
        schedule = CostSchedule(c)
        best = {"A_re": -math.inf, "mask_l1": math.nan}
        for step in track(range(1, c.steps + 1), "neural cleanse"):
            idx = torch.randint(len(own), (min(c.batch_size, len(own)),), generator=g)
            x = to_float_images(own.x[idx]).to(ctx.device)
            y = own.y[idx].to(ctx.device)
            mask, pattern = from_tanh_space(mask_p), from_tanh_space(pattern_p)
            logits = model(stamp(x, mask, pattern))
            loss = F.cross_entropy(logits, y) + schedule.cost * mask.abs().sum()
            grads = torch.autograd.grad(loss, params)
            for p, gr in zip(params, grads, strict=True):
                p.grad = gr
            opt.step()
            schedule.step(100.0 * float((logits.argmax(1) == y).float().mean()))
            if step % c.eval_every == 0 or step == c.steps:
                self._score(target, ctx, mask_p, pattern_p, x_test, y_test, best)
        return {"A_re": best["A_re"], "A_ud": best["A_re"], "mask_l1": best["mask_l1"]}

    @torch.no_grad()
    def _score(
        self, target: Target, ctx: RunContext, mask_p: torch.Tensor, pattern_p: torch.Tensor, x: torch.Tensor,
        y: torch.Tensor, best: dict[str, float],
    ) -> None:  # fmt: skip
        """Send the current reversed token on the test slice; keep the best accuracy."""
        mask, pattern = from_tanh_space(mask_p).cpu(), from_tanh_space(pattern_p).cpu()
        acc = served_accuracy(target, quantize(stamp(x, mask, pattern)), y, ctx)
        if acc > best["A_re"]:
            best["A_re"], best["mask_l1"] = acc, float(mask.abs().sum())
