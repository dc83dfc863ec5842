"""``finetune``: the thief fine-tunes its stolen copy on its own labelled data.

ActiveDaemon paper Table VI (50 epochs of SGD on the thief's split), with the watermark
literature's three variants: ``last`` (the classifier only), ``all`` (every layer) and
``reinit`` (a re-initialised classifier, then every layer). A_ad and A_ud are scored after each
epoch budget in ``budgets``, so one run gives the whole curve. Each is run with each of
``recipes`` (``ipbench.attacks._finetuning``: the thief's plain SGD at lr 0.01 and batch 128,
and the owner's preset recipe at lr 0.01); curve labels are the variant (plain) or the variant
and ``preset``. The headline is the thief's best over variants, recipes and epochs.

``dataset=NAME`` is Table VI's transfer: the thief moves the stolen body to another task of the
same image size, with a fresh head for its classes, trains on that dataset's training split
(first ``images``) and is scored on its test split, with (A_ad: the owner's credential path, e.g.
the token on the new images) and without credential (A_ud). Every transfer variant needs a new
head, so ``all`` and ``reinit`` coincide there. For ActiveGuard the thief trains
the control-layer artefact as a whole: gradients reach the network only through the queries the
layer passes through (random answers carry none), which is all the thief can do without
stripping it (see ``strip-control``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Gt
from torch import nn

from ipbench.attacks._finetuning import (
    FINETUNE_BATCH,
    RECIPES,
    check_recipes,
    finetune_config,
    recipe_label,
)
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Results, pct
from ipbench.ml.datasets import ImageSet, load_dataset
from ipbench.plugin.attack import (
    Attack,
    Target,
    first,
    redeploy,
    score,
    steal,
    thief_data,
)
from ipbench.plugin.capabilities import WrappedDeployment
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Scheme

VARIANTS = ("last", "all", "reinit")


@dataclass(frozen=True)
class FinetuneConfig:
    variants: tuple[str, ...] = VARIANTS
    epochs: Annotated[int, Ge(1)] = 50  # paper Table VI
    budgets: tuple[Annotated[int, Ge(0)], ...] = (
        0,
        1,
        5,
        10,
        20,
        50,
    )  # scored after these epochs (capped)
    lr: Annotated[float, Gt(0)] = (
        0.01  # constant-rate SGD, the usual fine-tuning rate (the paper gives none)
    )
    # the thief's best over these recipes (ipbench.attacks._finetuning): its own plain SGD at
    # batch ``batch_size``, and the owner's preset recipe at rate ``lr``
    recipes: tuple[str, ...] = RECIPES
    batch_size: Annotated[int, Ge(1)] = FINETUNE_BATCH
    images: Annotated[int, Ge(1)] | None = None  # thief's labelled images (None: its whole split)
    max_test: Annotated[int, Ge(0)] | None = None
    dataset: str | None = None  # transfer to another ipbench dataset (Table VI); None: same task


def head(model: nn.Module) -> nn.Linear:
    """The classifier: the last linear layer of the network."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise IpbenchError(f"{type(model).__name__} has no linear classifier to fine-tune")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the classifier for a fresh one with ``num_classes`` outputs (transfer learning)."""
    old = head(model)
    name = next(n for n, m in model.named_modules() if m is old)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(parent, name.rpartition(".")[2], new.to(old.weight.device))


def transfer_data(
    ctx: RunContext, name: str, images: int | None, max_test: int | None
) -> tuple[ImageSet, ImageSet, int]:
    """The transfer task's (train, test, classes), checked against the stolen model's input."""
    ds = load_dataset(name, ctx.data_root, download=ctx.download)
    want = tuple(ctx.thief.test.x.shape[1:])
    if tuple(ds.shape) != want:
        raise IpbenchError(
            f"finetune dataset={name!r} has {tuple(ds.shape)} images; the stolen model takes {want}"
        )
    return first(ds.train, images), first(ds.test, max_test), ds.num_classes


@attacks.register("finetune")
class Finetune(Attack):
    """Fine-tune the stolen copy (last layer / all layers / re-initialised head)."""

    Config = FinetuneConfig
    summary = "fine-tune the stolen weights on the thief's data (paper Table VI)"
    metrics = (
        pct("A_ud", "lower", 1, "A_ud at the thief's best setting (variant, epochs)"),
        pct("A_ad", "higher", 2, "A_ad at that setting"),
    )
    preset_defaults = {
        "smoke": {"epochs": 2, "budgets": (0, 1, 2), "lr": 0.01},
        "quick": {"epochs": 8, "budgets": (0, 1, 4, 8), "max_test": 2000},
    }

    def budgets(self) -> list[int]:
        c = self.config
        return sorted({b for b in c.budgets if 0 <= b <= c.epochs} | {c.epochs})

    def skip_reason(self, scheme: Scheme) -> str | None:
        if self.config.dataset is not None and isinstance(scheme, WrappedDeployment):
            return (
                f"transfer is undefined for {scheme.name}'s artefact: it is a wrapper "
                "(WrappedDeployment) that answers in the original classes (strip-control first)"
            )
        return super().skip_reason(scheme)

    def check(self) -> None:
        c = self.config
        bad = [v for v in c.variants if v not in VARIANTS]
        if bad or not c.variants:
            raise IpbenchError(
                f"finetune variants {', '.join(bad) or '(none)'} unknown; valid: {', '.join(VARIANTS)}"
            )
        if c.epochs < 1:
            raise IpbenchError(f"finetune epochs={c.epochs} must be >= 1")
        check_recipes("finetune", c.recipes)

    def run(self, target: Target, ctx: RunContext) -> Results:
        self.check()
        out: Results = {}
        best: tuple[float, float] | None = None  # (A_ud, A_ad) at the thief's best setting
        for recipe in self.config.recipes:
            for variant in self.config.variants:
                label = recipe_label(recipe, variant)
                for epochs, (a_ad, a_ud) in self.curve(target, ctx, variant, recipe):
                    out[At("A_ad", "epochs", epochs, label)] = a_ad
                    out[At("A_ud", "epochs", epochs, label)] = a_ud
                    if epochs > 0 and (best is None or a_ud > best[0]):
                        best = (a_ud, a_ad)
        assert best is not None
        out["A_ud"], out["A_ad"] = best
        c_epochs = self.config.epochs
        if self.config.dataset is not None:  # Table VI's cells: every layer, the full budget
            variant = "all" if "all" in self.config.variants else self.config.variants[0]
            label = recipe_label(self.config.recipes[0], variant)  # the first recipe's
            for m in ("A_ad", "A_ud"):
                out[At(m, "to", self.config.dataset)] = out[At(m, "epochs", c_epochs, label)]
        return out

    def curve(
        self, target: Target, ctx: RunContext, variant: str, recipe: str = RECIPES[0]
    ) -> list[tuple[int, tuple[float, float]]]:
        """Fine-tune one stolen copy in budget increments, scoring after each."""
        c = self.config
        model = steal(target)
        if c.dataset is None:
            data, test = thief_data(ctx, c.images), ctx.thief.test
        else:
            data, test, classes = transfer_data(ctx, c.dataset, c.images, c.max_test)
            torch.manual_seed(ctx.seed + 17)
            replace_head(model, classes)
        params = None
        if variant == "last":
            params = list(head(model).parameters())
            for p in model.parameters():  # a frozen body: no gradients computed through it
                p.requires_grad_(any(p is q for q in params))
        elif variant == "reinit" and c.dataset is None:
            torch.manual_seed(ctx.seed + 17)
            head(model).reset_parameters()
        points, done = [], 0
        for budget in self.budgets():
            if budget > done:
                cfg = finetune_config(ctx, recipe, budget - done, c.lr, c.batch_size)
                ctx.trainer.fit(
                    model, data.x, data.y, cfg, seed=ctx.seed + 1000 * done, params=params,
                    desc=f"finetune {variant} {recipe}",
                )  # fmt: skip
                done = budget
            points.append((budget, score(redeploy(target, model), test, ctx, c.max_test)))
        return points
