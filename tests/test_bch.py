from __future__ import annotations

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.schemes._poisoning.tokens.bch import IdentityCodec

CODEC = IdentityCodec()


def test_code_word_is_127_bits_with_64_message_bits():
    bits = CODEC.encode("alice")
    assert bits.shape == (127,) and set(bits.unique().tolist()) <= {0.0, 1.0}
    # the first 64 bits are the NUL-padded ASCII message, MSB first
    assert bits[:8].tolist() == [0, 1, 1, 0, 0, 0, 0, 1]  # 'a' = 0x61
    assert bits[40:64].sum() == 0


@pytest.mark.parametrize("flips", range(11))
def test_up_to_ten_flipped_bits_are_corrected(flips):
    g = torch.Generator().manual_seed(flips)
    bits = CODEC.encode("user0042")
    noisy = bits.clone()
    pos = torch.randperm(127, generator=g)[:flips]
    noisy[pos] = 1 - noisy[pos]
    decoded = CODEC.decode(noisy)
    assert decoded.identity == "user0042" and decoded.corrected == flips


@pytest.mark.parametrize("flips", [11, 12, 15, 20, 30])
def test_more_than_ten_flips_is_reported_not_misread(flips):
    """Beyond t=10 the decoder must say it failed; it must never return the wrong user."""
    failures = 0
    for trial in range(20):
        g = torch.Generator().manual_seed(1000 * flips + trial)
        bits = CODEC.encode("bob")
        noisy = bits.clone()
        pos = torch.randperm(127, generator=g)[:flips]
        noisy[pos] = 1 - noisy[pos]
        decoded = CODEC.decode(noisy)
        assert decoded.identity != "bob"
        failures += decoded.identity is None
    assert failures >= 18  # a BCH decoder can, rarely, land on another code word


def test_probabilities_are_thresholded():
    probs = CODEC.encode("carol") * 0.8 + 0.1
    assert CODEC.decode(probs).identity == "carol"


@pytest.mark.parametrize("bad", ["", "ninechars", "ümlaut", "a\x00b"])
def test_bad_identities_are_rejected(bad):
    with pytest.raises(IpbenchError, match="identity must be 1-8 ASCII"):
        CODEC.encode(bad)


def test_wrong_length_is_rejected():
    with pytest.raises(IpbenchError, match="expected 127 bits"):
        CODEC.decode(torch.zeros(100))
