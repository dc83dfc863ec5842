"""``strip-control`` (adaptive, ActiveGuard): remove the control layer from the stolen copy.

ActiveGuard's protection is a wrapper around unmodified weights; a thief who copies the
artefact can call the network inside it directly. A_ud after stripping is the attack's success.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipbench.attacks._common import bare_network, first, score, steal

from ipbench.attack import Attack, AttackContext
from ipbench.errors import IpbenchError
from ipbench.registry import attacks


@dataclass(frozen=True)
class StripControlConfig:
    max_test: int | None = None  # test images scored


@attacks.register("strip-control")
class StripControl(Attack):
    """Query the bare network inside ActiveGuard's control layer, with no credential."""

    name = "strip-control"
    Config = StripControlConfig
    schemes = frozenset({"activeguard"})
    summary = "adaptive: strip ActiveGuard's control layer and query the bare network"

    def run(self, ctx: AttackContext) -> dict[str, float]:
        wrapped = steal(ctx.scheme, ctx.protected)
        inner = bare_network(wrapped)
        if inner is wrapped:
            raise IpbenchError(f"{ctx.scheme.name}: the stolen artefact has no inner network")
        test = first(ctx.splits.test, self.config.max_test)
        bs = ctx.preset.train.eval_batch_size
        a_ad, a_ud_before = score(
            ctx.scheme, ctx.protected, test, ctx.device, ctx.seed
        )  # the deployment as served, for comparison on the same images
        return {
            "A_ud": ctx.trainer.accuracy(inner, test.x, test.y, bs),
            "A_ud_before": a_ud_before,
            "A_ad": a_ad,
        }
