"""``strip-control`` (adaptive, ActiveGuard): remove the control layer from the stolen copy.

ActiveGuard's protection is a wrapper around unmodified weights; a thief who copies the
artefact can call the network inside it directly. A_ud after stripping is the attack's success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks
from ipbench.metrics.spec import Results
from ipbench.plugin.attack import Attack, Target, bare_network, first, score, steal
from ipbench.plugin.capabilities import WrappedDeployment
from ipbench.plugin.context import RunContext


@dataclass(frozen=True)
class StripControlConfig:
    max_test: Annotated[int, Ge(0)] | None = None  # test images scored


@attacks.register("strip-control")
class StripControl(Attack):
    """Query the bare network inside ActiveGuard's control layer, with no credential."""

    Config = StripControlConfig
    requires = (WrappedDeployment,)
    summary = "adaptive: strip the wrapper (a control layer) and query the bare network"
    preset_defaults = {"smoke": {"max_test": 500}, "quick": {"max_test": 2000}}

    def run(self, target: Target, ctx: RunContext) -> Results:
        wrapped = steal(target)
        inner = bare_network(target, wrapped)
        if inner is wrapped:
            raise IpbenchError(f"{target.scheme.name}: the stolen artefact has no inner network")
        test = first(ctx.thief.test, self.config.max_test)
        bs = ctx.preset.train.eval_batch_size
        # the deployment as served, for comparison on the same images
        a_ad, a_ud_before = score(target, test, ctx)
        return {
            "A_ud": ctx.trainer.accuracy(inner, test.x, test.y, bs),
            "A_ud_before": a_ud_before,
            "A_ad": a_ad,
        }
