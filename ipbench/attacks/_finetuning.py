"""The thief's fine-tuning recipes, shared by ``finetune``, ``finetune-budget`` and
``fine-pruning`` (a private helper of the attack family, so its code is part of their stage keys).

A fine-tuning rate means nothing without its recipe. ``lr`` 0.01 is the usual rate for plain SGD
at a batch of ~128; the quick preset trains the owner's model at lr 1.5 per 1,024 images with
label smoothing, batch-norm biases at 64x the rate and Lookahead. Until 2026-11-26 the attacks
fine-tuned with the preset's recipe at lr 0.01, a fine-tune that barely moves the weights: on
CIFAR-10 quick it left NTL locked (A_ud 31.75) while NAD's teacher, a plain SGD fine-tune, opened
it (78.20). That gentle recipe is still the stronger one against some locks (ActiveDaemon: 87.20
against plain SGD's 84.85), so the attacks try both and report the thief's best:

- ``plain``: the thief's own SGD, whatever the owner used: constant rate ``lr``, Nesterov
  momentum 0.9, weight decay 5e-4, batch ``batch_size`` (128), no label smoothing, no Lookahead,
  no batch-norm bias multiplier; the preset's augmentation and precision.
- ``preset``: the owner's recipe (published with the paper or the preset) at constant rate
  ``lr`` and the preset's batch: the attacks' recipe before 2026-11-26, so its numbers are the
  stored ones.
"""

from __future__ import annotations

import dataclasses

from ipbench.core.errors import IpbenchError
from ipbench.ml.presets import TrainConfig
from ipbench.plugin.attack import thief_train
from ipbench.plugin.context import RunContext

FINETUNE_BATCH = 128  # the thief's plain-SGD batch, whatever the owner's preset uses
RECIPES = ("plain", "preset")


def check_recipes(attack: str, recipes: tuple[str, ...]) -> None:
    """One clear error for an unknown or empty recipe list."""
    bad = [r for r in recipes if r not in RECIPES]
    if bad or not recipes:
        raise IpbenchError(
            f"{attack} recipes {', '.join(map(repr, bad)) or '(none)'} unknown; "
            f"valid: {', '.join(RECIPES)}"
        )


def recipe_label(recipe: str, label: str | None = None) -> str | None:
    """The curve label of a point: ``plain`` points keep ``label``, ``preset`` ones add it."""
    if recipe == "plain":
        return label
    return f"{label} {recipe}" if label else recipe


def finetune_config(
    ctx: RunContext, recipe: str, epochs: int, lr: float, batch_size: int = FINETUNE_BATCH,
    data_size: int | None = None,
) -> TrainConfig:  # fmt: skip
    """The training recipe of a thief's fine-tune (see the module docstring). ``batch_size`` is
    ``plain``'s batch; ``preset`` keeps the owner's; either is capped at ``data_size``."""
    check_recipes("fine-tuning", (recipe,))
    batch = batch_size if recipe == "plain" else ctx.preset.train.batch_size
    if data_size is not None:
        batch = max(1, min(batch, data_size))
    if recipe == "preset":
        return thief_train(ctx, epochs, lr, "constant", batch_size=batch)
    return dataclasses.replace(
        ctx.preset.train, epochs=epochs, lr=lr, batch_size=batch, momentum=0.9, nesterov=True,
        weight_decay=5e-4, schedule="constant", warmup_epochs=0.0, label_smoothing=0.0,
        norm_bias_lr_scale=1.0, lookahead_every=0,
    )  # fmt: skip
