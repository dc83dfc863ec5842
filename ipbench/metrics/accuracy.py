"""The accuracy family of the papers (all in percent)."""

from __future__ import annotations

import torch

from ipbench.core.errors import IpbenchError


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
        raise IpbenchError(
            f"accuracy needs logits (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if len(labels) == 0:
        raise IpbenchError("accuracy of an empty set is undefined")
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def derived(a_or: float, a_ad: float, a_ud: float) -> dict[str, float]:
    """A_od = A_ad - A_or (feasibility, near 0 is good); A_pd = A_ad - A_ud (effectiveness)."""
    return {"A_od": a_ad - a_or, "A_pd": a_ad - a_ud}
