"""Shared by the model-side schemes (passport, ChaoW, AdvParams): fake-credential accuracy,
recorded through ``scheme_metrics`` (overhead is measured for every scheme in evaluate)."""

from __future__ import annotations

from abc import abstractmethod

import torch

from ipbench.core.errors import IpbenchError
from ipbench.metrics.accuracy import accuracy
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.plugin.evaluate import query_logits


class EncryptedWeights(Scheme):
    """A deployment whose weights are encrypted: a key credential decrypts a copy (cached per
    credential), which answers; without one, the encrypted weights answer."""

    @abstractmethod
    def decrypted(self, protected: Protected, credential: Credential) -> torch.nn.Module:
        """The model ``credential``'s key restores from ``protected``'s encrypted weights."""

    def serve(
        self, protected: Protected, x: torch.Tensor, credential: Credential | None
    ) -> torch.Tensor:
        model = protected.model if credential is None else self.decrypted(protected, credential)
        return model.eval()(x)


def accuracy_with(
    scheme: Scheme, protected: Protected, ctx: RunContext, credential: Credential | None
) -> float:
    """Test accuracy (percent) of the deployed service for one credential (A_ad/A_ud/A_td)."""
    test = ctx.test
    logits = query_logits(scheme, protected, test.x, credential, ctx.device)
    return accuracy(logits, test.y)


def credential_fingerprint(credential: Credential) -> tuple:
    """A hashable identity of a credential's tensors, to cache what was derived from it."""
    return tuple(
        (k, tuple(v.shape), hash(v.detach().cpu().contiguous().numpy().tobytes()))
        for k, v in sorted(credential.tensors.items())
    )


def forged_generator(seed: int, salt: int) -> torch.Generator:
    """The generator fake credentials are drawn from: reproducible, never the owner's."""
    return torch.Generator().manual_seed(7_777_777 + 104_729 * seed + salt)


class LastModelCache:
    """The model derived from the last credential seen: evaluation sends one credential for
    many batches, so decrypting once per credential instead of once per batch."""

    def __init__(self) -> None:
        self._entry: tuple[Protected, tuple, torch.nn.Module] | None = None

    def get(self, protected: Protected, credential: Credential, make) -> torch.nn.Module:
        # Keyed by the deployment object itself, not its id: attacks redeploy many modified
        # copies in turn, and a freed copy's id is reused by the next one.
        key = credential_fingerprint(credential)
        if self._entry is None or self._entry[0] is not protected or self._entry[1] != key:
            self._entry = (protected, key, make())
        return self._entry[2]

    def clear(self) -> None:
        self._entry = None


def weight_layers(model: torch.nn.Module, spec: str, scheme: str) -> list[str]:
    """Conv/linear weight names picked by ``spec`` ("all" or comma-separated module names)."""
    valid = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    if spec.strip() in ("all", ""):
        return [f"{n}.weight" for n in valid]
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [w for w in wanted if w not in valid]
    if bad:
        raise IpbenchError(
            f"{scheme} layers {', '.join(map(repr, bad))} are not conv/linear modules; "
            f"valid: all, {', '.join(valid)}"
        )
    return [f"{n}.weight" for n in valid if n in wanted]
