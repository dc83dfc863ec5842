"""``prune``: global L1 magnitude pruning of every conv and linear weight of the stolen network.

ActiveDaemon paper Figs. 7-8 (after [33]): the thief zeroes the smallest weights, hoping to
break the protection before the accuracy. Each rate prunes a fresh copy of the stolen artefact
(for passport the passport layers' convs, for ActiveGuard the network inside the control layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge, Interval
from torch import nn
from torch.nn.utils import prune

from ipbench.core.errors import IpbenchError
from ipbench.core.progress import track
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Metric, Results, pct
from ipbench.plugin.attack import Attack, Target, redeploy, score, steal
from ipbench.plugin.context import RunContext


@dataclass(frozen=True)
class PruneConfig:
    """Rates 0..90% as in the paper's figures; ``max_test`` caps the images scored per rate."""

    rates: tuple[Annotated[float, Interval(ge=0, lt=1)], ...] = (
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
    )
    max_test: Annotated[int, Ge(0)] | None = None


def prune_global(model: nn.Module, rate: float) -> nn.Module:
    """Zero the fraction ``rate`` of conv/linear weights with the smallest |w|, model-wide."""
    targets = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if rate > 0:
        for module, _ in targets:  # torch's pruning flattens with view(): channels_last fails
            module.weight.data = module.weight.data.contiguous()
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=rate)
        for module, name in targets:
            prune.remove(module, name)  # make it permanent: a plain weight, as the thief ships it
    return model


@attacks.register("prune")
class Prune(Attack):
    """Global magnitude pruning at increasing rates; A_ad and A_ud per rate."""

    Config = PruneConfig
    summary = "global L1 pruning of conv/linear weights at 0..90% (paper Figs. 7-8)"
    metrics = (
        pct("A_ud", "lower", 1, "A_ud at the rate best for the thief"),
        pct("A_ad", "higher", 2, "A_ad at that rate"),
        Metric("rate_best", "fraction", "neither", ".2f", 3, "that rate"),
    )
    preset_defaults = {"smoke": {"rates": (0.0, 0.5, 0.9)}, "quick": {"max_test": 2000}}

    def run(self, target: Target, ctx: RunContext) -> Results:
        bad = [r for r in self.config.rates if not 0 <= r < 1]
        if bad or not self.config.rates:
            raise IpbenchError(f"prune rates must lie in [0, 1); got {self.config.rates}")
        out: Results = {}
        best: tuple[float, float, float] | None = None  # (A_ud, A_ad, rate)
        # ascending and once each, so the headline (the thief's best rate; on a tie, the lowest)
        # does not depend on the order the rates were given in
        for rate in track(sorted(set(self.config.rates)), "prune rates"):
            model = prune_global(steal(target), rate)
            a_ad, a_ud = score(redeploy(target, model), ctx.thief.test, ctx, self.config.max_test)
            out[At("A_ad", "rate", rate)], out[At("A_ud", "rate", rate)] = a_ad, a_ud
            if best is None or a_ud > best[0]:
                best = (a_ud, a_ad, rate)
        assert best is not None
        out.update({"A_ud": best[0], "A_ad": best[1], "rate_best": best[2]})
        return out
