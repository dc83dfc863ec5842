"""``knockoff``: Knockoff Nets (Orekondy, Schiele, Fritz, CVPR 2019) against an active lock.

The thief queries the service with images from *another* distribution (a transfer set it holds:
another dataset of the same image size, or the synthetic set), collects the returned
probabilities (soft labels: the paper's setting) and trains a fresh network of the victim's
architecture on them, scored on clean test images with no credential (``A_sub``). It runs as
an ``outsider`` (no credential, the Copycat thief with foreign images) and as an ``insider``
(with its own valid credential, as ``insider``): curve labels ``outsider-soft``,
``insider-soft`` and so on; the headline is the better role.

The default transfer set is ``patches``: crops of the seventeen photographs scikit-image's
wheel ships, the natural images this offline machine has (the paper's are ImageNet-scale sets:
``--set attack.knockoff.dataset=cifar100`` or ``imagefolder:DIR`` where one is at hand). On
CIFAR-10 quick's unprotected model the synthetic set copied 10.1% (nothing), the crops 28.1%
(10,000 queries at 8 epochs, the same compute: 27.4%, so the set, not the budget, is the limit).

Sampling is the paper's ``random`` strategy: a uniform draw of ``queries`` transfer images
without replacement. The paper's ``adaptive`` strategy (a gradient bandit over the transfer
set's label hierarchy) is not implemented here. Budget: the paper sweeps up to 100k queries;
the default is Copycat's 2,500 (ActiveDaemon Table V) so the three extraction attacks compare
at one budget; ``queries`` raises it (capped at the transfer set).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ipbench.attacks.extraction import ExtractionConfig
from ipbench.attacks.insider import Insider
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Results
from ipbench.ml.datasets import load_dataset
from ipbench.plugin.attack import Target, seeded
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential

ROLES = ("outsider", "insider")


@dataclass(frozen=True)
class KnockoffConfig(ExtractionConfig):
    labels: tuple[str, ...] = ("soft",)  # the paper's posteriors
    # the transfer set (an ipbench dataset spec of the same shape): crops of photographs, the
    # natural images available offline (ipbench.ml.datasets.patches); smoke: the synthetic set
    dataset: str = "patches"
    roles: tuple[str, ...] = ROLES

    def __post_init__(self) -> None:
        bad = [r for r in self.roles if r not in ROLES]
        if bad or not self.roles:
            raise IpbenchError(f"knockoff roles {bad or '()'} invalid; valid: {', '.join(ROLES)}")


@attacks.register("knockoff")
class Knockoff(Insider):
    """A substitute trained on the service's answers to a foreign transfer set."""

    Config = KnockoffConfig
    summary = "Knockoff Nets (CVPR'19): transfer-set queries, soft labels, outsider and insider"
    preset_defaults = {
        "smoke": {"queries": 400, "epochs": 3, "dataset": "synthetic"},  # ~2 s: both roles
        "quick": {"epochs": 30, "batch_size": 64, "max_test": 2000},  # as insider
    }
    role = "outsider"  # the role being run (budgets: insider's, which are extraction's)

    def credential(self, target: Target, ctx: RunContext) -> Credential | None:
        return None if self.role == "outsider" else super().credential(target, ctx)

    def query_images(self, ctx: RunContext) -> torch.Tensor:
        ds = load_dataset(self.config.dataset, ctx.data_root, download=ctx.download)
        want = tuple(ctx.thief.test.x.shape[1:])
        if tuple(ds.train.x.shape[1:]) != want:
            raise IpbenchError(
                f"knockoff dataset={self.config.dataset!r} has {tuple(ds.train.x.shape[1:])} "
                f"images; the service takes {want} (patches:N:SIZE: crops of another size)"
            )
        n = min(self.config.queries, len(ds.train))
        pick = torch.randperm(len(ds.train), generator=seeded(ctx.seed, 83))[:n]
        return ds.train.x[pick.sort().values]

    def run(self, target: Target, ctx: RunContext) -> Results:
        out: Results = {}
        for role in self.config.roles:
            self.role = role
            got = super().run(target, ctx)
            out["queries"] = got.pop("queries")
            for name in ("A_sub", "A_sub_vs_victim_agreement"):
                out[At(name, label=role)] = got.pop(name)
            for k, v in got.items():
                assert isinstance(k, At)
                out[dataclasses.replace(k, label=f"{role}-{k.label}")] = v
        best = max(self.config.roles, key=lambda r: out[At("A_sub", label=r)])
        out["A_sub"] = out[At("A_sub", label=best)]
        out["A_sub_vs_victim_agreement"] = out[At("A_sub_vs_victim_agreement", label=best)]
        return out
