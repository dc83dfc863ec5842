"""``fine-pruning``: the Fine-Pruning backdoor defense (Liu et al., RAID 2018) as an unlocking attack.

A lock trained in by poisoning is a backdoor turned around: the token is the trigger, and the
clean path is the one that is broken. Fine-Pruning removes the channels of the last
convolutional feature layer that the thief's clean images leave dormant (lowest mean
activation first), where a trigger's behaviour tends to hide, then fine-tunes on the thief's
labelled images with the pruned channels held at zero. Did the lock open (A_ud after) and did
the authorized path survive (A_ad after)?

The paper prunes until clean validation accuracy drops by a set amount; a thief's clean
accuracy is the locked one, so that criterion does not apply: the attack sweeps ``rates`` and
reports each (pruned only, label ``pruned``; pruned and fine-tuned, no label), headlining the
rate best for the thief. The feature layer is the network's last ``BatchNorm2d`` (its scale and
shift zeroed: the channel's output is 0 through the ReLU after it), or its last ``Conv2d``
where it has no batch norm; for a residual network the shortcut still adds, as in
torchvision's ResNet (the paper's nets are plain). Fine-tuning is ``finetune``'s recipe
(``ipbench.attacks._finetuning``: each of ``recipes`` at 0.01, the thief's best reported) for
``epochs`` (the paper does not fix one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Gt, Interval
from torch import nn

from ipbench.attacks._finetuning import (
    FINETUNE_BATCH,
    RECIPES,
    check_recipes,
    finetune_config,
    recipe_label,
)
from ipbench.attacks.prune import Prune
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Results
from ipbench.ml.datasets import ImageSet
from ipbench.ml.training import to_float_images
from ipbench.plugin.attack import (
    Attack,
    Target,
    bare_network,
    redeploy,
    score,
    steal,
    thief_data,
)
from ipbench.plugin.context import RunContext


@dataclass(frozen=True)
class FinePruningConfig:
    rates: tuple[Annotated[float, Interval(ge=0, lt=1)], ...] = (
        0.2,
        0.4,
        0.6,
        0.8,
        0.9,
    )  # share of feature channels pruned
    epochs: Annotated[int, Ge(0)] = (
        10  # fine-tuning after pruning (our choice; constant SGD as finetune)
    )
    lr: Annotated[float, Gt(0)] = 0.01
    recipes: tuple[str, ...] = RECIPES  # as finetune (the thief's best over them)
    batch_size: Annotated[int, Ge(1)] = FINETUNE_BATCH  # as finetune
    images: Annotated[int, Ge(1)] | None = (
        None  # the thief's labelled images (None: its whole split)
    )
    max_test: Annotated[int, Ge(0)] | None = None

    def __post_init__(self) -> None:
        if not self.rates or any(not 0 <= r < 1 for r in self.rates):
            raise IpbenchError(f"fine-pruning rates must lie in [0, 1); got {self.rates}")
        if self.epochs < 0:
            raise IpbenchError(f"fine-pruning epochs={self.epochs} must be >= 0")
        check_recipes("fine-pruning", self.recipes)


def feature_layer(model: nn.Module) -> nn.Module:
    """The last affine BatchNorm2d of the network, else its last Conv2d: the layer pruned."""
    for kind in (nn.BatchNorm2d, nn.Conv2d):  # a batch norm with a scale (passport's have none)
        found = [m for m in model.modules() if isinstance(m, kind) and m.weight is not None]
        if found:
            return found[-1]
    raise IpbenchError(f"{type(model).__name__} has no convolutional layer to prune")


@torch.no_grad()
def channel_activity(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """Mean ReLU activation of each of ``layer``'s output channels on images ``x``."""
    device = next(model.parameters()).device
    total: list[torch.Tensor] = []
    handle = layer.register_forward_hook(
        lambda _m, _i, out: total.append(out.relu().sum((0, 2, 3)).cpu())
    )
    try:
        model.eval()
        for i in range(0, len(x), batch_size):
            model(to_float_images(x[i : i + batch_size]).to(device))
    finally:
        handle.remove()
    return torch.stack(total).sum(0) / max(1, len(x))


def dormancy_order(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature channels of ``model``, least active on ``x`` first."""
    return channel_activity(model, feature_layer(model), x).argsort()


def prune_dormant(
    model: nn.Module, x: torch.Tensor, rate: float, order: torch.Tensor | None = None
) -> torch.Tensor:
    """Zero the ``rate`` share of feature channels least active on ``x``; their indices.
    ``order`` (``dormancy_order`` of the same weights on ``x``) saves measuring it again."""
    layer = feature_layer(model)
    order = dormancy_order(model, x) if order is None else order
    pruned = order[: round(rate * len(order))]
    with torch.no_grad():
        for p in (layer.weight, getattr(layer, "bias", None)):
            if p is not None:
                p[pruned] = 0
    return pruned


def finetune_pruned(
    model: nn.Module, pruned: torch.Tensor, data: ImageSet, ctx: RunContext, epochs: int,
    lr: float, recipe: str = RECIPES[0], batch_size: int = FINETUNE_BATCH,
) -> None:  # fmt: skip
    """Fine-tune ``model`` on ``data`` with the ``pruned`` channels held at zero."""
    if epochs == 0:
        return
    layer = feature_layer(model)
    keep = torch.ones(layer.weight.shape[0], device=layer.weight.device)
    keep[pruned.to(keep.device)] = 0
    # a frozen parameter (airbench's whitenet freezes its BatchNorm scales) is not trained, so
    # its pruned entries stay zero without a hook; a hook on it is an error
    handles = [
        p.register_hook(lambda g: g * keep.view(-1, *[1] * (g.dim() - 1)))
        for p in (layer.weight, getattr(layer, "bias", None))
        if p is not None and p.requires_grad
    ]
    try:
        cfg = finetune_config(
            ctx, recipe, epochs, lr, batch_size
        )  # zero weights stay zero under decay
        ctx.trainer.fit(model, data.x, data.y, cfg, seed=ctx.seed + 59, desc="fine-pruning")
    finally:
        for h in handles:
            h.remove()


@attacks.register("fine-pruning")
class FinePruning(Attack):
    """Prune dormant feature channels, then fine-tune (Liu et al., RAID 2018)."""

    Config = FinePruningConfig
    summary = "Fine-Pruning (RAID'18): prune dormant last-layer channels, then fine-tune"
    metrics = Prune.metrics  # the same numbers: A_ud and A_ad at the rate best for the thief
    preset_defaults = {
        "smoke": {"rates": (0.5, 0.9), "epochs": 1},
        "quick": {"rates": (0.3, 0.6, 0.9), "max_test": 2000},
    }

    def run(self, target: Target, ctx: RunContext) -> Results:
        c = self.config
        data, test = thief_data(ctx, c.images), ctx.thief.test
        out: Results = {}
        best: tuple[float, float, float] | None = None  # (A_ud, A_ad, rate)
        # every copy below starts from the same stolen weights: their channels' activity on the
        # thief's images is measured once, not once per rate and recipe
        order = dormancy_order(bare_network(target, steal(target)), data.x)
        for recipe in c.recipes:
            label = recipe_label(recipe)
            for rate in c.rates:
                stolen = steal(target)
                net = bare_network(target, stolen)
                pruned = prune_dormant(net, data.x, rate, order)
                a_ad, a_ud = score(redeploy(target, stolen), test, ctx, c.max_test)
                out[At("A_ad", "rate", rate, "pruned")] = a_ad
                out[At("A_ud", "rate", rate, "pruned")] = a_ud
                finetune_pruned(net, pruned, data, ctx, c.epochs, c.lr, recipe, c.batch_size)
                a_ad, a_ud = score(redeploy(target, stolen), test, ctx, c.max_test)
                out[At("A_ad", "rate", rate, label)] = a_ad
                out[At("A_ud", "rate", rate, label)] = a_ud
                if best is None or a_ud > best[0]:
                    best = (a_ud, a_ad, rate)
        assert best is not None
        out.update({"A_ud": best[0], "A_ad": best[1], "rate_best": best[2]})
        return out
