"""ChaoW (Lin et al., TCAD 2021): weight positions of chosen layers shuffled by a chaotic map.

The deployed artefact holds each chosen layer's weights in permuted order; the key, one
logistic-map pair (r, x0) per layer, regenerates the permutation and puts every weight back,
bit for bit. ChaoW's exact chaotic map is not public (the paper names the map family, not the
construction), so ipbench uses the logistic map x_{n+1} = r x_n (1 - x_n): after ``burn_in``
steps, the orbit of length n is argsorted into the permutation of the layer's n weights. No
training: the protect stage permutes the cached unprotected model in seconds.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from annotated_types import Ge
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.models import ModelSpec, build_model
from ipbench.plugin.capabilities import CredentialForging
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected
from ipbench.schemes._modelside import (
    EncryptedWeights,
    LastModelCache,
    accuracy_with,
    forged_generator,
    weight_layers,
)

R_CHAOS = 3.5699456  # onset of chaos of the logistic map (Feigenbaum point)


@dataclass(frozen=True)
class ChaoWConfig:
    """Defaults: every conv and linear weight permuted, r drawn in [3.99, 4) where the map is
    fully chaotic (no periodic windows), 1000 discarded transient steps."""

    layers: str = "all"  # "all" (every Conv2d/Linear weight) or comma-separated module names
    r_low: float = 3.99  # logistic parameter r ~ U[r_low, r_high); chaotic for r > 3.5699
    r_high: float = 4.0
    burn_in: Annotated[int, Ge(0)] = (
        1000  # orbit steps discarded before the permutation is read off
    )
    key_seed: int = 0  # the owner's key is drawn from (the store's key seed, key_seed)


def logistic_orbit(r: float, x0: float, n: int, burn_in: int) -> torch.Tensor:
    """``n`` float64 iterates of x -> r x (1 - x) from ``x0``, after ``burn_in`` steps."""
    if not (R_CHAOS < r <= 4.0 and 0.0 < x0 < 1.0):
        raise IpbenchError(f"logistic key (r={r}, x0={x0}) outside r in (3.5699, 4], x0 in (0, 1)")
    x = x0
    for _ in range(burn_in):
        x = r * x * (1.0 - x)
    out = [0.0] * n
    for i in range(n):
        x = r * x * (1.0 - x)
        out[i] = x
    return torch.tensor(out, dtype=torch.float64)


def chaotic_permutation(r: float, x0: float, n: int, burn_in: int) -> torch.Tensor:
    """The permutation of ``n`` positions that sorts the orbit (stable, so always valid)."""
    return torch.argsort(logistic_orbit(r, x0, n, burn_in), stable=True)


def permute(w: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return w.detach().flatten()[perm].view_as(w).clone()


def unpermute(w: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(w).flatten()
    out[perm] = w.detach().flatten()
    return out.view_as(w)


def select_layers(model: nn.Module, spec: str) -> list[str]:
    """Names of the weight tensors this scheme touches (``module.weight``), in model order."""
    return weight_layers(model, spec, "ChaoW")


@schemes.register("chaow")
class ChaoW(EncryptedWeights, CredentialForging):
    """Chaotic weight-position permutation; the key restores the weights exactly."""

    Config = ChaoWConfig
    summary = "ChaoW: layer weights permuted by a logistic-map key (no retraining)"
    forge_kinds = ("random_key", "near_key")

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        if not (R_CHAOS < c.r_low < c.r_high <= 4.0):
            raise IpbenchError(
                f"ChaoW needs 3.5699 < r_low < r_high <= 4, got r_low={c.r_low}, r_high={c.r_high}"
            )
        if c.burn_in < 0:
            raise IpbenchError(f"ChaoW burn_in must be >= 0, got {c.burn_in}")
        self._cache = LastModelCache()

    def validate(self, spec: ModelSpec) -> None:
        """The layers named in ``layers`` must exist in the task's network."""
        select_layers(build_model(spec), self.config.layers)

    def draw_key(self, n_layers: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        r = c.r_low + (c.r_high - c.r_low) * torch.rand(n_layers, generator=g, dtype=torch.float64)
        x0 = 0.01 + 0.98 * torch.rand(n_layers, generator=g, dtype=torch.float64)
        return {"r": r, "x0": x0}

    def transform(
        self, model: nn.Module, layers: list[str], key: dict[str, torch.Tensor], inverse: bool
    ) -> nn.Module:
        """Permute (encrypt) or un-permute (decrypt) ``layers`` of ``model`` in place."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, r, x0 in zip(layers, key["r"].tolist(), key["x0"].tolist(), strict=True):
                w = params[name]
                perm = chaotic_permutation(r, x0, w.numel(), self.config.burn_in).to(w.device)
                w.copy_(unpermute(w, perm) if inverse else permute(w, perm))
        return model

    def protect(self, ctx: RunContext) -> Protected:
        model = ctx.unprotected().cpu().eval()
        layers = select_layers(model, self.config.layers)
        g = ctx.secret_generator("chaow", "key", self.config.key_seed)
        key = self.draw_key(len(layers), g)
        self.transform(model, layers, key, inverse=False)
        n_perm = sum(dict(model.named_parameters())[n].numel() for n in layers)
        n_all = sum(p.numel() for p in model.parameters())
        meta = {"layers": layers, "permuted": n_perm, "params": n_all}
        return Protected(self.name, model, ctx.model_spec, secrets=key, meta=meta)

    def authorize(self, protected: Protected, user: str) -> Credential:
        """Every authorized user holds the owner's key (ChaoW has no per-user keys)."""
        tensors = {k: protected.secrets[k].clone() for k in ("r", "x0")}
        return Credential(user, "chaotic_key", tensors, {"layers": protected.meta["layers"]})

    def forge(self, protected: Protected, seed: int, near: bool = False) -> Credential:
        """A wrong key: fresh (r, x0) per layer, or (``near``) x0 off by 1e-12 in every layer."""
        if near:
            tensors = {"r": protected.secrets["r"].clone(), "x0": protected.secrets["x0"] + 1e-12}
        else:
            tensors = self.draw_key(len(protected.meta["layers"]), forged_generator(seed, 1))
        return Credential("forger", "chaotic_key", tensors, {"layers": protected.meta["layers"]})

    def forge_credential(
        self, protected: Protected, kind: str, ctx: RunContext
    ) -> Credential | None:
        """random_key: a fresh logistic key; near_key: the owner's x0 off by 1e-12 (a thief
        who nearly recovered the key: chaos makes it as useless as a random one)."""
        if kind in self.forge_kinds:
            return self.forge(protected, ctx.seed, near=kind == "near_key")
        raise self.unknown_kind(kind)

    def decrypted(self, protected: Protected, credential: Credential) -> nn.Module:
        """A copy of the model un-permuted with ``credential``'s key (cached per credential)."""

        def make() -> nn.Module:
            key = {k: credential.tensors[k] for k in ("r", "x0")}
            layers = protected.meta["layers"]
            if len(key["r"]) != len(layers) or len(key["x0"]) != len(layers):
                raise IpbenchError(
                    f"ChaoW key has {len(key['r'])} r and {len(key['x0'])} x0 entries; "
                    f"the model has {len(layers)} encrypted layers"
                )
            model = copy.deepcopy(protected.model)  # the encrypted original stays untouched
            return self.transform(model, layers, key, inverse=True)

        return self._cache.get(protected, credential, make)

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        cred = self.authorize(protected, "owner")
        self._cache.clear()
        t0 = time.perf_counter()
        self.decrypted(protected, cred)
        decrypt_ms = 1000 * (time.perf_counter() - t0)
        out: dict[str, float | str | None] = {
            "A_td": accuracy_with(self, protected, ctx, self.forge(protected, ctx.seed)),
            "A_td_near_key": accuracy_with(self, protected, ctx, self.forge(protected, 0, True)),
            "permuted_pct": 100.0 * protected.meta["permuted"] / protected.meta["params"],
            "decrypt_ms": decrypt_ms,
            "map": "logistic x'=r x(1-x), orbit argsorted (ChaoW's own map is not public)",
        }
        return out
