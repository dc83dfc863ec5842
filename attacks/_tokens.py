"""Small helpers of the credential attacks: the scored test slice and one accuracy call.

(The shared ``_common.score`` of the removal attacks lives on another branch; these stay tiny
so the two can be merged into one.)
"""

from __future__ import annotations

import torch
from ipbench.metrics.accuracy import accuracy

from ipbench.attack import AttackContext
from ipbench.contract import Credential
from ipbench.errors import IpbenchError
from ipbench.evaluate import query_logits
from ipbench.training import to_float_images


def test_slice(ctx: AttackContext, max_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_test`` test images in [0, 1] and their labels (0: all of them)."""
    if max_test < 0:
        raise IpbenchError(f"max_test={max_test} must be >= 0 (0: the whole test split)")
    test = ctx.splits.test
    n = len(test) if max_test == 0 else min(max_test, len(test))
    return to_float_images(test.x[:n]), test.y[:n]


def served_accuracy(
    ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, credential: Credential | None = None
) -> float:
    """Accuracy (percent) of the deployed service's answers to images ``x`` sent as they are."""
    return accuracy(query_logits(ctx.scheme, ctx.protected, x, credential, ctx.device), y)


def seeded(seed: int, salt: int) -> torch.Generator:
    """A CPU generator for an attack's random draws, reproducible per (run seed, salt)."""
    return torch.Generator().manual_seed(5_000_011 * (seed + 1) + salt)
