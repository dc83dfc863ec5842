"""``finetune-budget``: how little labelled data opens a lock (fine-tuning as a data curve).

``finetune`` gives the thief its whole split and varies the epochs; this varies the data. For
each budget a fresh stolen copy is fine-tuned on that many of the thief's labelled images and
scored: ``fractions`` of the training set (the owner's and the thief's together, as the papers
count it: 1%, 2%, 5%, 10%; capped at the thief's split) and ``shots`` per class (few-shot: the
first k images of each class in the thief's split, class-balanced). Curve points are
``At("A_ud", "fraction", f)`` and ``At("A_ud", "shots", k)`` (and A_ad at each).

Recipe, where the data-efficient fine-tuning literature (e.g. Chen et al., REFIT, AsiaCCS 2021,
fine-tuning watermark removal with 1-10% of the data) leaves it open: ``finetune``'s recipes
(``ipbench.attacks._finetuning``; quick runs the thief's plain SGD only, see
``preset_defaults``) at its rate 0.01 and its ``all`` variant by default (every layer;
``reinit`` re-initialises the classifier first); a fixed number of optimiser ``steps`` per
budget rather than epochs, so a small budget is not also a short training (batch: the recipe's,
or the budget when smaller).
``images_to_unlock`` is the smallest budget whose A_ud comes within ``unlock_margin`` points of
the unmodified deployment's A_ad (absent when none does).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Gt, Interval

from ipbench.attacks._finetuning import (
    FINETUNE_BATCH,
    RECIPES,
    check_recipes,
    finetune_config,
    recipe_label,
)
from ipbench.attacks.finetune import head
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Metric, Results, pct
from ipbench.ml.datasets import ImageSet
from ipbench.plugin.attack import Attack, Target, redeploy, score, steal, training_set_size
from ipbench.plugin.context import RunContext


@dataclass(frozen=True)
class FinetuneBudgetConfig:
    fractions: tuple[Annotated[float, Interval(gt=0, le=1)], ...] = (
        0.01,
        0.02,
        0.05,
        0.1,
    )  # of the training set (issue 19)
    shots: tuple[Annotated[int, Ge(1)], ...] = (1, 5, 10, 50)  # labelled images per class
    variant: str = "all"  # "all" (every layer) or "reinit" (fresh classifier, then all)
    steps: Annotated[int, Ge(1)] = 500  # optimiser steps per budget
    lr: Annotated[float, Gt(0)] = 0.01  # as finetune (constant SGD)
    recipes: tuple[str, ...] = RECIPES  # as finetune (the thief's best over them)
    batch_size: Annotated[int, Ge(1)] = FINETUNE_BATCH  # as finetune; the budget when smaller
    unlock_margin: Annotated[float, Ge(0)] = 10.0  # points below A_ad that count as unlocked
    max_test: Annotated[int, Ge(0)] | None = None

    def __post_init__(self) -> None:
        if self.variant not in ("all", "reinit"):
            raise IpbenchError(f"finetune-budget variant {self.variant!r}; valid: all, reinit")
        if any(not 0 < f <= 1 for f in self.fractions) or any(k < 1 for k in self.shots):
            raise IpbenchError("finetune-budget fractions must lie in (0, 1], shots be >= 1")
        if not self.fractions and not self.shots:
            raise IpbenchError("finetune-budget needs at least one fraction or shot count")
        if self.steps < 1:
            raise IpbenchError(f"finetune-budget steps={self.steps} must be >= 1")
        check_recipes("finetune-budget", self.recipes)


def few_shot(data: ImageSet, k: int) -> ImageSet:
    """The first ``k`` images of each class (fewer where the class has fewer)."""
    idx = [torch.nonzero(data.y == c).flatten()[:k] for c in data.y.unique()]
    return data.subset(torch.cat(idx).sort().values)


@attacks.register("finetune-budget")
class FinetuneBudget(Attack):
    """Fine-tune a fresh stolen copy per labelled-data budget; A_ud and A_ad per budget."""

    Config = FinetuneBudgetConfig
    summary = "fine-tuning as a curve over labelled data: % of the training set, shots per class"
    metrics = (
        pct("A_ud", "lower", 1, "A_ud at the largest budget (the thief's best)"),
        pct("A_ad", "higher", 2, "A_ad at that budget"),
        Metric("images_to_unlock", "images", "higher", ".0f", 0, "least data that opens it"),
        Metric("images", "images", "neither", ".0f", 0, "labelled images at a budget"),
    )
    preset_defaults = {
        "smoke": {"fractions": (0.05, 0.2), "shots": (10,), "steps": 15},  # ~2 s
        # quick: plain SGD only; the owner's recipe (batch 1,024) costs ~8x per budget (~12 min)
        "quick": {"steps": 300, "max_test": 2000, "recipes": ("plain",)},
    }

    def budgets(self, ctx: RunContext) -> list[tuple[str, float, ImageSet]]:
        """(param, x, the thief's labelled images) per budget."""
        data, n = ctx.thief.data, training_set_size(ctx)
        out = [
            ("fraction", f, data.subset(torch.arange(max(1, min(len(data), round(f * n))))))
            for f in self.config.fractions
        ]
        return out + [("shots", float(k), few_shot(data, k)) for k in self.config.shots]

    def run(self, target: Target, ctx: RunContext) -> Results:
        c = self.config
        a_ad_before, _ = score(target, ctx.thief.test, ctx, c.max_test)
        out: Results = {}
        best: tuple[int, float, float] | None = None  # (images, A_ud, A_ad) at the largest
        unlocked: list[int] = []
        for recipe in c.recipes:
            label = recipe_label(recipe)
            for param, x, data in self.budgets(ctx):
                model = steal(target)
                if c.variant == "reinit":
                    torch.manual_seed(ctx.seed + 17)
                    head(model).reset_parameters()
                cfg = finetune_config(ctx, recipe, 1, c.lr, c.batch_size, len(data))
                epochs = math.ceil(c.steps / math.ceil(len(data) / cfg.batch_size))
                ctx.trainer.fit(
                    model, data.x, data.y, dataclasses.replace(cfg, epochs=epochs),
                    seed=ctx.seed + 31, desc=f"ft {param}={x:g} {recipe}",
                )  # fmt: skip
                a_ad, a_ud = score(redeploy(target, model), ctx.thief.test, ctx, c.max_test)
                out[At("A_ad", param, x, label)], out[At("A_ud", param, x, label)] = a_ad, a_ud
                out[At("images", param, x)] = float(len(data))
                if best is None or (len(data), a_ud) > best[:2]:  # the largest budget, best recipe
                    best = (len(data), a_ud, a_ad)
                if a_ud >= a_ad_before - c.unlock_margin:
                    unlocked.append(len(data))
        assert best is not None
        out["A_ud"], out["A_ad"] = best[1], best[2]
        if unlocked:
            out["images_to_unlock"] = float(min(unlocked))
        return out
