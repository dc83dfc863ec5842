"""``prune``: global L1 magnitude pruning of every conv and linear weight of the stolen network.

ActiveDaemon paper Figs. 7-8 (after [33]): the thief zeroes the smallest weights, hoping to
break the protection before the accuracy. Each rate prunes a fresh copy of the stolen artefact
(for passport the passport layers' convs, for ActiveGuard the network inside the control layer).
"""

from __future__ import annotations

from dataclasses import dataclass

from ipbench.attacks._common import redeploy, score, steal
from torch import nn
from torch.nn.utils import prune

from ipbench.attack import Attack, AttackContext
from ipbench.errors import IpbenchError
from ipbench.registry import attacks


@dataclass(frozen=True)
class PruneConfig:
    """Rates 0..90% as in the paper's figures; ``max_test`` caps the images scored per rate."""

    rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    max_test: int | None = None


def prune_global(model: nn.Module, rate: float) -> nn.Module:
    """Zero the fraction ``rate`` of conv/linear weights with the smallest |w|, model-wide."""
    targets = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if rate > 0:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=rate)
        for module, name in targets:
            prune.remove(module, name)  # make it permanent: a plain weight, as the thief ships it
    return model


@attacks.register("prune")
class Prune(Attack):
    """Global magnitude pruning at increasing rates; A_ad and A_ud per rate."""

    name = "prune"
    Config = PruneConfig
    summary = "global L1 pruning of conv/linear weights at 0..90% (paper Figs. 7-8)"
    headline = ("A_ud", "A_ad", "rate_best")

    def run(self, ctx: AttackContext) -> dict[str, float]:
        bad = [r for r in self.config.rates if not 0 <= r < 1]
        if bad or not self.config.rates:
            raise IpbenchError(f"prune rates must lie in [0, 1); got {self.config.rates}")
        out: dict[str, float] = {}
        best: tuple[float, float, float] | None = None  # (A_ud, A_ad, rate)
        for rate in self.config.rates:
            model = prune_global(steal(ctx.scheme, ctx.protected), rate)
            a_ad, a_ud = score(
                ctx.scheme, redeploy(ctx.scheme, ctx.protected, model), ctx.splits.test,
                ctx.device, ctx.seed, self.config.max_test,
            )  # fmt: skip
            out[f"A_ad@rate={rate:g}"], out[f"A_ud@rate={rate:g}"] = a_ad, a_ud
            if best is None or a_ud > best[0]:
                best = (a_ud, a_ad, rate)
        assert best is not None
        out.update({"A_ud": best[0], "A_ad": best[1], "rate_best": best[2]})
        return out
