"""``passport-retrain`` (adaptive, passport): forge a passport by training it on frozen weights.

DeepIPR's reverse-engineering ambiguity attack (SCHEMES.md section 5; reported "at best 70%"
on CIFAR-10): the thief holds the network but not the passport, freezes every weight (batch-norm
statistics included) and trains the passport tensors themselves on its own labelled data, so
the gamma/beta they produce make the network useful again. Reports the accuracy the forged
passport reaches (A_fake) and how many of the owner's signature bits its gamma signs carry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Gt
from torch import nn

from ipbench.core.registry import attacks
from ipbench.metrics.accuracy import accuracy
from ipbench.metrics.spec import Metric, Results, pct
from ipbench.plugin.attack import Attack, Target, answers, first, steal, thief_data, thief_train
from ipbench.plugin.capabilities import PassportLayers, capability
from ipbench.plugin.context import RunContext

Install = Callable[[nn.Module, dict[str, torch.Tensor]], None]  # (network, passports) -> None


@dataclass(frozen=True)
class PassportRetrainConfig:
    epochs: Annotated[int, Ge(1)] = 50
    # Passports live on the feature scale: plain SGD needs a large rate to move them at all
    # (smoke: lr 0.1 moved them 1.5%, A_fake stayed at chance; lr 20 reached A_ad).
    lr: Annotated[float, Gt(0)] = 20.0
    images: Annotated[int, Ge(1)] | None = None  # thief's labelled images (None: its whole split)
    max_test: Annotated[int, Ge(0)] | None = None


class ForgedPassports(nn.Module):
    """The stolen network, frozen, with trainable passports fed into its passport layers."""

    def __init__(self, model: nn.Module, install: Install, start: dict[str, torch.Tensor]):
        super().__init__()
        self.model, self.install = model, install
        self.keys = sorted(start)
        self.passports = nn.ParameterList([nn.Parameter(start[k].clone()) for k in self.keys])
        for p in model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> ForgedPassports:
        super().train(mode)
        self.model.eval()  # frozen: batch-norm statistics stay the owner's
        return self

    def current(self) -> dict[str, torch.Tensor]:
        # view_as: a non-leaf tensor, so installing it keeps a buffer (not a parameter) there
        return {k: p.view_as(p) for k, p in zip(self.keys, self.passports, strict=True)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.install(self.model, self.current())
        return self.model(x)


@attacks.register("passport-retrain")
class PassportRetrain(Attack):
    """Train a forged passport on frozen weights; A_fake is the accuracy it restores."""

    Config = PassportRetrainConfig
    requires = (PassportLayers,)
    summary = "adaptive: reverse-engineer a passport on frozen weights (DeepIPR)"
    metrics = (
        pct("A_fake", "lower", 1, "accuracy with the passport the thief trained"),
        pct("signature_detection", "higher", 2, "owner signature bits its gamma signs carry"),
        Metric("passport_change", "", "neither", ".2f", 0, "relative L2 move from the start"),
    )
    preset_defaults = {
        "smoke": {"epochs": 15},
        "quick": {"epochs": 10, "max_test": 2000},
    }

    def run(self, target: Target, ctx: RunContext) -> Results:
        c, protected = self.config, target.protected
        layers = capability(target.scheme, PassportLayers)
        model = steal(target)
        # The thief starts from what it holds: the public no-passport noise installed at load.
        held = layers.installed_passports(protected, model)
        start = {k: v.detach().clone() for k, v in held.items()}

        def install(net: nn.Module, passports: dict[str, torch.Tensor]) -> None:
            layers.install_passports(protected, net, passports)

        forger = ForgedPassports(model, install, start)
        data = thief_data(ctx, c.images)
        ctx.trainer.fit(
            forger, data.x, data.y, thief_train(ctx, c.epochs, c.lr),
            seed=ctx.seed + 31, params=list(forger.passports), desc="passport-retrain",
        )  # fmt: skip
        forged = {k: v.detach().cpu().contiguous() for k, v in forger.current().items()}
        test = first(ctx.thief.test, c.max_test)
        logits = answers(target, test.x, ctx, layers.passport_credential(forged))
        none_logits = answers(target, test.x, ctx)
        sig = layers.signature_match(protected, protected.model, forged)
        return {
            "A_fake": accuracy(logits, test.y),
            "A_ud": accuracy(none_logits, test.y),
            "signature_detection": sig["signature_detection"],
            # how far training moved the passports from the public noise (relative L2)
            "passport_change": float(
                torch.stack(
                    [(forged[k] - start[k].cpu()).norm() / start[k].norm() for k in start]
                ).mean()
            ),
        }
