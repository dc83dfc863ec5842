"""``passport-retrain`` (adaptive, passport): forge a passport by training it on frozen weights.

DeepIPR's reverse-engineering ambiguity attack (SCHEMES.md section 5; reported "at best 70%"
on CIFAR-10): the thief holds the network but not the passport, freezes every weight (batch-norm
statistics included) and trains the passport tensors themselves on its own labelled data, so
the gamma/beta they produce make the network useful again. Reports the accuracy the forged
passport reaches (A_fake) and how many of the owner's signature bits its gamma signs carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ipbench.attacks._common import first, steal, thief_data, thief_train
from ipbench.metrics.accuracy import accuracy
from ipbench.schemes import _passport_layers as pl
from torch import nn

from ipbench.attack import Attack, AttackContext
from ipbench.contract import Credential
from ipbench.evaluate import query_logits
from ipbench.registry import attacks


@dataclass(frozen=True)
class PassportRetrainConfig:
    epochs: int = 50
    # Passports live on the feature scale: plain SGD needs a large rate to move them at all
    # (smoke: lr 0.1 moved them 1.5%, A_fake stayed at chance; lr 20 reached A_ad).
    lr: float = 20.0
    images: int | None = None  # thief's labelled images (None: its whole split)
    max_test: int | None = None


class ForgedPassports(nn.Module):
    """The stolen network, frozen, with trainable passports fed into its passport layers."""

    def __init__(self, model: nn.Module, sites: list[str], start: dict[str, torch.Tensor]):
        super().__init__()
        self.model, self.sites = model, sites
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
        pl.install(self.model, self.sites, self.current())
        return self.model(x)


@attacks.register("passport-retrain")
class PassportRetrain(Attack):
    """Train a forged passport on frozen weights; A_fake is the accuracy it restores."""

    name = "passport-retrain"
    Config = PassportRetrainConfig
    schemes = frozenset({"passport"})
    summary = "adaptive: reverse-engineer a passport on frozen weights (DeepIPR)"
    headline = ("A_fake", "signature_detection")

    def run(self, ctx: AttackContext) -> dict[str, float]:
        c, scheme, protected = self.config, ctx.scheme, ctx.protected
        sites = protected.meta["sites"]
        model = steal(scheme, protected)
        # The thief starts from what it holds: the public no-passport noise installed at load.
        start = {k: v.detach().clone() for k, v in pl.installed(model, sites).items()}
        forger = ForgedPassports(model, sites, start)
        data = thief_data(ctx, c.images)
        ctx.trainer.fit(
            forger, data.x, data.y, thief_train(ctx, c.epochs, c.lr),
            seed=ctx.seed + 31, params=list(forger.passports), desc="passport-retrain",
        )  # fmt: skip
        forged = {k: v.detach().cpu().contiguous() for k, v in forger.current().items()}
        test = first(ctx.splits.test, c.max_test)
        cred = Credential("thief", "passport", forged)
        logits = query_logits(scheme, protected, test.x, cred, ctx.device)
        none_logits = query_logits(scheme, protected, test.x, None, ctx.device)
        sig = scheme.signature_match(protected, protected.model, forged)
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
