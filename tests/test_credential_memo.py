"""The memo of credentialed images: what it returns is exactly what ``apply`` returns, it
serves repeated batches without applying again, and it never serves one credential's images
for another's, nor memoises a credential that is not deterministic."""

from __future__ import annotations

import pytest
import torch

from ipbench.ml.models import ModelSpec, build_model
from ipbench.plugin import credential_memo
from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.plugin.evaluate import query_logits

SPEC = ModelSpec("tiny", 10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
CPU = torch.device("cpu")


class Shift(Scheme, InputSpaceToken):
    """Adds the user's secret offset (or, with ``noisy``, fresh noise) and counts applies."""

    Config = dict

    def __init__(self, noisy: bool = False):
        super().__init__({})
        self.noisy, self.calls = noisy, 0

    def protect(self, ctx):
        raise NotImplementedError

    def authorize(self, protected, user):
        return Credential(user, "shift", tensors={"offset": protected.secrets["offset"]})

    def apply(self, credential, x):
        self.calls += 1
        noise = torch.rand_like(x) * 0.1 if self.noisy else 0.0
        return (x + credential.tensors["offset"] + noise).clamp(0, 1)


def _protected(offset: float) -> Protected:
    torch.manual_seed(0)
    return Protected("x", build_model(SPEC).eval(), SPEC, secrets={"offset": torch.tensor(offset)})


@pytest.fixture(autouse=True)
def _fresh_memo():
    credential_memo.clear()
    yield
    credential_memo.clear()


def _logits(scheme, protected, x, user="u"):
    return query_logits(scheme, protected, x, scheme.authorize(protected, user), CPU, 4)


def test_memoised_logits_equal_unmemoised_and_repeat_without_applying():
    scheme, p = Shift(), _protected(0.2)
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    expected = torch.cat([scheme.query(p, (x[i : i + 4].float() / 255), scheme.authorize(p, "u"))
                          for i in range(0, 10, 4)])  # fmt: skip
    first = _logits(scheme, p, x)
    applies = scheme.calls
    again = _logits(scheme, p, x)
    assert torch.equal(first, expected) and torch.equal(again, expected)
    assert scheme.calls - applies == 2  # the two probes only: the three batches came from the memo
    assert credential_memo.stats()["hits"] == 3


def test_another_secret_or_user_or_batch_is_never_served_from_the_memo():
    scheme, x = Shift(), torch.rand(4, 3, 32, 32)
    a, b = _protected(0.2), _protected(-0.3)
    la = _logits(scheme, a, x)
    lb = _logits(scheme, b, x)  # the same user name under another owner's secret
    assert torch.equal(lb, b.model((x - 0.3).clamp(0, 1)))
    assert not torch.equal(la, lb)
    _logits(scheme, a, x, user="v")
    y = x.clone()
    y[0, 0, 0, 0] = 1 - y[0, 0, 0, 0]  # one value changed: another batch
    assert torch.equal(_logits(scheme, a, y), a.model((y + 0.2).clamp(0, 1)))
    assert credential_memo.stats()["hits"] == 0


def test_a_credential_that_is_not_deterministic_is_not_memoised():
    scheme = Shift(noisy=True)
    p = _protected(0.0)
    assert credential_memo.memo_for(scheme, scheme.authorize(p, "u"), (3, 32, 32), CPU) is None
    x = torch.rand(8, 3, 32, 32)
    _logits(scheme, p, x)
    _logits(scheme, p, x)
    assert credential_memo.stats() == {"hits": 0, "misses": 0, "entries": 0, "bytes": 0}


def test_the_memo_stays_within_its_bytes_and_hands_out_copies(monkeypatch):
    monkeypatch.setattr(credential_memo, "MEMO_BYTES", 2 * 4 * 3 * 32 * 32 * 4)  # two batches
    scheme, p = Shift(), _protected(0.1)
    memo = credential_memo.memo_for(scheme, scheme.authorize(p, "u"), (3, 32, 32), CPU)
    assert memo is not None
    batches = [torch.rand(4, 3, 32, 32) for _ in range(3)]
    for b in batches:
        memo.apply(b, b)
    assert credential_memo.stats()["entries"] == 2
    assert credential_memo.stats()["bytes"] <= credential_memo.MEMO_BYTES
    out = memo.apply(batches[2], batches[2])
    out.zero_()  # a serve that writes into its input
    assert torch.equal(memo.apply(batches[2], batches[2]), (batches[2] + 0.1).clamp(0, 1))
