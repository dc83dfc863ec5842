from __future__ import annotations

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.metrics.accuracy import accuracy, derived


def test_accuracy_against_hand_count():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])  # right, right, wrong, wrong
    assert accuracy(logits, labels) == pytest.approx(50.0)


def test_derived_metrics():
    assert derived(a_or=93.41, a_ad=92.36, a_ud=11.30) == pytest.approx(
        {"A_od": -1.05, "A_pd": 81.06}
    )


def test_accuracy_rejects_bad_shapes():
    with pytest.raises(IpbenchError, match=r"logits \(N, K\)"):
        accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(IpbenchError, match="empty"):
        accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
