"""Identity strings <-> BCH(127, 64, t=10) code words, through bchlib.

An identity of up to 8 ASCII characters fills the 64 message bits (NUL-padded); bchlib's
BCH(t=10, m=7) adds 63 parity bits. Decoding corrects up to 10 flipped bits and reports
failure, never a wrong identity silently, when there are more than it can locate.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

import bchlib
import numpy as np
import torch

from ipbench.core.errors import IpbenchError

MESSAGE_BYTES = 8


@dataclass(frozen=True)
class Decoded:
    identity: str | None  # None: more errors than the code can correct, or not an identity
    corrected: int  # bits corrected (-1 on failure)
    message: torch.Tensor  # the 64 message bits after correction (the raw ones on failure)


class IdentityCodec:
    """BCH code for identity strings; ``n_bits`` is the code-word length the encoder embeds."""

    def __init__(self, t: int = 10, m: int = 7):
        self.bch = bchlib.BCH(t, m=m)
        self.t = t
        self.n_bits = MESSAGE_BYTES * 8 + self.bch.ecc_bits
        if self.n_bits > self.bch.n:
            raise IpbenchError(f"BCH(t={t}, m={m}) cannot carry {MESSAGE_BYTES * 8} message bits")

    @staticmethod
    def _message(identity: str) -> bytearray:
        if (
            not identity
            or len(identity) > MESSAGE_BYTES
            or not identity.isascii()
            or "\x00" in identity
        ):
            raise IpbenchError(
                f"identity must be 1-{MESSAGE_BYTES} ASCII characters without NUL, got {identity!r}"
            )
        return bytearray(identity.encode("ascii").ljust(MESSAGE_BYTES, b"\x00"))

    def encode(self, identity: str) -> torch.Tensor:
        """The 127-bit code word of ``identity`` as a float tensor of 0s and 1s."""
        data = self._message(identity)
        ecc = self.bch.encode(data)
        bits = np.unpackbits(np.frombuffer(bytes(data + ecc), dtype=np.uint8))[: self.n_bits]
        return torch.from_numpy(bits.astype(np.float32))

    def encode_many(self, identities: list[str]) -> torch.Tensor:
        return torch.stack([self.encode(s) for s in identities])

    def decode(self, bits: torch.Tensor) -> Decoded:
        """Hard bits (or probabilities, thresholded at 0.5) -> the identity, corrected."""
        if bits.numel() != self.n_bits:
            raise IpbenchError(f"expected {self.n_bits} bits, got {bits.numel()}")
        hard = (bits.detach().flatten().cpu() > 0.5).numpy().astype(np.uint8)
        padded = np.zeros((MESSAGE_BYTES + self.bch.ecc_bytes) * 8, dtype=np.uint8)
        padded[: self.n_bits] = hard
        packet = np.packbits(padded).tobytes()
        data = bytearray(packet[:MESSAGE_BYTES])
        ecc = bytearray(packet[MESSAGE_BYTES:])
        raw_message = torch.from_numpy(hard[: MESSAGE_BYTES * 8].astype(np.float32))
        flips = self.bch.decode(data, ecc)
        if flips < 0:
            return Decoded(None, -1, raw_message)
        self.bch.correct(data, ecc)
        message = torch.from_numpy(
            np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8)).astype(np.float32)
        )
        text = bytes(data).rstrip(b"\x00")
        # A code word that decodes to something no identity can be (NUL inside, non-printable)
        # was reached by miscorrection: report failure rather than a wrong user.
        if not text or not all(32 <= c < 127 for c in text):
            return Decoded(None, flips, message)
        return Decoded(text.decode("ascii"), flips, message)

    def decode_many(self, bits: torch.Tensor) -> list[Decoded]:
        return [self.decode(row) for row in bits]


IDENTITY_CHARS = string.ascii_letters + string.digits


def random_identities(n: int, seed: int) -> list[str]:
    """``n`` random 8-character identity strings (the strings poisoned training uses)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(IDENTITY_CHARS) for _ in range(8)) for _ in range(n)]
