"""AdvParams (Xue et al., IEEE TETC 2023): a handful of weights perturbed adversarially.

Adversarial examples perturb an input along the loss gradient; AdvParams perturbs *parameters*.
Greedily, the weight with the largest loss-gradient magnitude (among those not yet chosen) joins
the key, then every chosen weight takes signed gradient-ascent steps on the cross-entropy of a
few owner images, until their accuracy falls to ``target_accuracy`` or the budget runs out. The
positions and perturbations are the secret key. No training: the protect stage edits the cached
unprotected model. Decryption writes the stored original values back, so the authorized model
is bit-identical to the unprotected one (subtracting the perturbation in float32 would lose bits
where it dwarfs the weight).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Interval
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.models import ModelSpec, build_model
from ipbench.ml.training import to_float_images
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


@dataclass(frozen=True)
class AdvParamsConfig:
    """Defaults aim at the paper's CIFAR-10 outcome (accuracy 92 -> ~11%, i.e. a 81% drop) with
    a key of a few dozen weights (0.000205% of a ~11 M-parameter network is ~23 weights)."""

    layers: str = "all"  # candidate weights: "all" Conv2d/Linear, or comma-separated module names
    n_images: Annotated[int, Ge(1)] = (
        256  # owner images whose loss is ascended (the paper: a small training subset)
    )
    target_accuracy: Annotated[float, Interval(ge=0, le=100)] = (
        11.0  # stop once those images' accuracy (percent) is at most this
    )
    max_params: Annotated[int, Ge(1)] = 32  # key budget: at most this many weights are perturbed
    steps_per_param: Annotated[int, Ge(1)] = (
        8  # signed-gradient ascent steps after each weight joins the key
    )
    step_size: Annotated[float, Gt(0)] = (
        2.0  # ascent step, in units of the chosen weight's layer std
    )


def candidate_layers(model: nn.Module, spec: str) -> list[str]:
    """Names of the trainable weight tensors this scheme touches (``module.weight``), in order.

    Frozen weights are left out (whitenet's whitening stem, fixed from data): the paper's
    networks learn every weight, and a key hidden in a weight no fine-tune can move would credit
    the scheme with the harness's freezing. Naming a frozen layer in ``layers`` is an error.
    """
    names = weight_layers(model, spec, "AdvParams")
    params = dict(model.named_parameters())
    frozen = [n for n in names if not params[n].requires_grad]
    trainable = [n for n in names if params[n].requires_grad]
    if (frozen and spec.strip() not in ("all", "")) or not trainable:
        valid = [n for n in weight_layers(model, "all", "AdvParams") if params[n].requires_grad]
        raise IpbenchError(
            f"AdvParams layers={spec!r} names frozen weights ({', '.join(frozen)}); "
            f"valid (trainable): all, {', '.join(n.removesuffix('.weight') for n in valid)}"
        )
    return trainable


def encrypt(
    model: nn.Module, layers: list[str], x: torch.Tensor, y: torch.Tensor, cfg: AdvParamsConfig
) -> dict[str, Any]:
    """Perturb ``model`` in place; returns the key and the accuracy trace on ``(x, y)``."""
    model.eval()
    params = dict(model.named_parameters())
    weights = [params[n] for n in layers]
    stds = [float(w.detach().std()) for w in weights]
    originals = [w.detach().clone() for w in weights]
    chosen: list[tuple[int, int]] = []
    taken = [torch.zeros(w.numel(), dtype=torch.bool, device=w.device) for w in weights]
    trace: list[float] = []

    def loss_grads() -> tuple[float, list[torch.Tensor]]:
        logits = model(x)
        acc = 100.0 * (logits.argmax(1) == y).float().mean().item()
        grads = torch.autograd.grad(F.cross_entropy(logits, y), weights)
        return acc, [g.flatten() for g in grads]

    acc, grads = loss_grads()
    trace.append(acc)
    while acc > cfg.target_accuracy and len(chosen) < cfg.max_params:
        best = max(
            range(len(weights)),
            key=lambda i: float(grads[i].abs().masked_fill(taken[i], -1).max()),
        )
        idx = int(grads[best].abs().masked_fill(taken[best], -1).argmax())
        taken[best][idx] = True
        chosen.append((best, idx))
        for _ in range(cfg.steps_per_param):
            with torch.no_grad():
                for li, pi in chosen:
                    step = cfg.step_size * stds[li] * torch.sign(grads[li][pi])
                    weights[li].view(-1)[pi] += step
            acc, grads = loss_grads()
            trace.append(acc)
            if acc <= cfg.target_accuracy:
                break
    layer_idx = torch.tensor([c[0] for c in chosen], dtype=torch.int64)
    flat_idx = torch.tensor([c[1] for c in chosen], dtype=torch.int64)
    orig = torch.stack([originals[li].view(-1)[pi] for li, pi in chosen]).cpu() if chosen else None
    enc = (
        torch.stack([weights[li].detach().view(-1)[pi] for li, pi in chosen]).cpu()
        if chosen
        else None
    )
    empty = torch.zeros(0)
    return {
        "layer": layer_idx,
        "index": flat_idx,
        "original": orig if orig is not None else empty,
        "delta": enc - orig if enc is not None and orig is not None else empty,
        "trace": trace,
    }


def write_values(model: nn.Module, layers: list[str], key: dict[str, torch.Tensor]) -> nn.Module:
    """Set the keyed positions of ``model`` to ``key["original"]`` (decryption), in place."""
    params = dict(model.named_parameters())
    n = len(key["layer"])
    if not (len(key["index"]) == len(key["original"]) == n):
        raise IpbenchError("AdvParams key: layer, index and original must have the same length")
    with torch.no_grad():
        for li, pi, v in zip(
            key["layer"].tolist(), key["index"].tolist(), key["original"], strict=True
        ):
            if not (0 <= li < len(layers)) or not (0 <= pi < params[layers[li]].numel()):
                raise IpbenchError(f"AdvParams key position ({li}, {pi}) is outside the model")
            w = params[layers[li]]  # indexed by shape, not view(-1): fine-tuned copies may be
            w[tuple(int(i) for i in np.unravel_index(pi, w.shape))] = v.to(w.dtype)  # channels_last
    return model


@schemes.register("advparams")
class AdvParams(EncryptedWeights, CredentialForging):
    """Adversarially perturbed parameters; the key writes the original values back."""

    Config = AdvParamsConfig
    summary = "AdvParams: a few weights perturbed by gradient ascent (no retraining)"
    forge_kinds = ("random_key",)

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        if c.n_images < 1 or c.max_params < 1 or c.steps_per_param < 1 or c.step_size <= 0:
            raise IpbenchError(
                f"AdvParams needs n_images, max_params, steps_per_param >= 1 and step_size > 0; "
                f"got {c.n_images}, {c.max_params}, {c.steps_per_param}, {c.step_size}"
            )
        self._cache = LastModelCache()

    def validate(self, spec: ModelSpec) -> None:
        """The layers named in ``layers`` must exist in the task's network."""
        candidate_layers(build_model(spec), self.config.layers)

    def protect(self, ctx: RunContext) -> Protected:
        model = ctx.unprotected().to(ctx.device).eval()
        layers = candidate_layers(model, self.config.layers)
        owner = ctx.owner
        g = ctx.secret_generator("advparams", "images")
        pick = torch.randperm(len(owner), generator=g)[: self.config.n_images]
        x = to_float_images(owner.x[pick]).to(ctx.device)
        key = encrypt(model, layers, x, owner.y[pick].to(ctx.device), self.config)
        trace = key.pop("trace")
        n_all = sum(p.numel() for p in model.parameters())
        meta = {
            "layers": layers, "params": n_all, "changed": len(key["layer"]),
            "accuracy_trace": trace, "encryption_images": len(pick),
        }  # fmt: skip
        return Protected(self.name, model.cpu(), ctx.model_spec, secrets=key, meta=meta)

    def authorize(self, protected: Protected, user: str) -> Credential:
        """Every authorized user holds the owner's key: positions and perturbations."""
        tensors = {k: protected.secrets[k].clone() for k in ("layer", "index", "original", "delta")}
        return Credential(user, "advparams_key", tensors)

    def forge(self, protected: Protected, seed: int) -> Credential:
        """A wrong key of the right size: random positions in the same layers, random values."""
        g = forged_generator(seed, 2)
        params = dict(protected.model.named_parameters())
        layers = protected.meta["layers"]
        n = max(1, len(protected.secrets["layer"]))
        layer = torch.randint(0, len(layers), (n,), generator=g)
        index = torch.tensor(
            [int(torch.randint(0, params[layers[i]].numel(), (1,), generator=g)) for i in layer]
        )
        values = torch.stack([params[layers[i]].detach().flatten().std().cpu() for i in layer])
        original = values * torch.randn(n, generator=g)
        return Credential(
            "forger", "advparams_key",
            {"layer": layer, "index": index, "original": original, "delta": torch.zeros(n)},
        )  # fmt: skip

    def forge_credential(
        self, protected: Protected, kind: str, ctx: RunContext
    ) -> Credential | None:
        """random_key: random positions and values of the owner key's size (forge)."""
        if kind == "random_key":
            return self.forge(protected, ctx.seed)
        raise self.unknown_kind(kind)

    def decrypted(self, protected: Protected, credential: Credential) -> nn.Module:
        def make() -> nn.Module:
            key = {k: credential.tensors[k] for k in ("layer", "index", "original")}
            return write_values(copy.deepcopy(protected.model), protected.meta["layers"], key)

        return self._cache.get(protected, credential, make)

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        changed, total = protected.meta["changed"], protected.meta["params"]
        delta = protected.secrets["delta"]
        out: dict[str, float | str | None] = {
            "A_td": accuracy_with(self, protected, ctx, self.forge(protected, ctx.seed)),
            "params_changed": float(changed),
            "params_changed_pct": 100.0 * changed / total,
            "max_abs_perturbation": float(delta.abs().max()) if len(delta) else 0.0,
            "encryption_steps": float(len(protected.meta["accuracy_trace"]) - 1),
        }
        return out
