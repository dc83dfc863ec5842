"""ActiveGuard's ownership watermark: decimal digits written into one conv filter's weights.

Paper section 2.5: the n digits of ``wm`` sit at n random positions of the largest output
filter of a chosen conv layer; a linear map d = a*h + b, fitted so the layer's weight range
[lo, hi] spans the digits [0, 9], turns a weight h into a digit. The filter and the
map come from a trained network of the same recipe; training adds lambda * MSE(wm, map(v))
(Eq. 4); verification reads the weights of a suspect model at the
same positions, maps, rounds and compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ipbench.core.errors import IpbenchError

MAX_DIGIT = 9


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """Conv layers in module order; a wrapper (control layer) keeps the same order inside."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def pick_conv(model: nn.Module, index: int) -> nn.Conv2d:
    convs = conv_layers(model)
    if not convs:
        raise IpbenchError("ActiveGuard's watermark needs a network with a Conv2d layer")
    if not -len(convs) <= index < len(convs):
        raise IpbenchError(
            f"wm_layer={index} is out of range; valid: {-len(convs)}..{len(convs) - 1} "
            f"(this network has {len(convs)} conv layers)"
        )
    return convs[index]


@dataclass(frozen=True)
class WatermarkKey:
    """What the owner keeps to verify: layer, filter, positions, digits and the map d = a*h + b."""

    layer: int
    filter: int
    positions: torch.Tensor  # (n,) flat indices into the filter's (I, F, F) weights
    digits: torch.Tensor  # (n,) the watermark, integers 0..9
    a: float
    b: float

    @classmethod
    def create(
        cls, model: nn.Module, digits: tuple[int, ...], layer: int, seed: int
    ) -> WatermarkKey:
        """Choose the filter (largest L2 norm), the positions and the map on ``model``'s layer.

        ``model`` is a trained network of the same architecture and recipe (the unprotected
        baseline): the paper fits the map to a trained layer's range (e.g. [0.10, 0.45] for
        LeNet-5's conv 2), and a fresh initialisation's far narrower range makes the
        regulariser so stiff (curvature 2*lambda*a^2/n) that SGD at the quick preset's lr
        diverges on the watermarked weights.
        """
        bad = [d for d in digits if not 0 <= int(d) <= MAX_DIGIT]
        if not digits or bad:
            raise IpbenchError(f"watermark digits must be 0..9 and non-empty; got {digits}")
        w = pick_conv(model, layer).weight.detach().float()
        m = w[0].numel()
        if len(digits) > m:
            raise IpbenchError(
                f"a {len(digits)}-digit watermark does not fit: the filter has {m} positions"
            )
        filt = int(w.flatten(1).norm(dim=1).argmax())
        g = torch.Generator().manual_seed(700_001 + seed)
        positions = torch.randperm(m, generator=g)[: len(digits)]
        lo, hi = float(w.min()), float(w.max())
        a = MAX_DIGIT / (hi - lo)
        return cls(layer, filt, positions, torch.tensor(digits, dtype=torch.long), a, -a * lo)

    def weights(self, model: nn.Module) -> torch.Tensor:
        """The watermarked weights v of ``model`` (differentiable)."""
        w = pick_conv(model, self.layer).weight
        return w[self.filter].flatten()[self.positions.to(w.device)]

    def regulariser(self, lam: float):
        """Eq. (4)'s term: lambda * mean((d_k - map(v_k))^2), for ``Trainer.fit(extra_loss=)``."""

        def loss(model: nn.Module) -> torch.Tensor:
            v = self.weights(model).float()
            d = self.digits.to(v.device, torch.float32)
            return lam * ((d - (self.a * v + self.b)) ** 2).mean()

        return loss

    @torch.no_grad()
    def extract(self, model: nn.Module) -> torch.Tensor:
        """Rounded digits read from ``model`` (the paper's Steps 1-3)."""
        return torch.round(self.a * self.weights(model).float().cpu() + self.b).long()

    def verify(self, model: nn.Module) -> dict[str, float]:
        """Digit accuracy and a pass flag (every digit recovered, the paper's V_owner)."""
        try:
            got = self.extract(model)
        except (IpbenchError, IndexError, RuntimeError):
            return {"digit_acc": 0.0, "verified": 0.0}  # another architecture: no watermark
        acc = float((got == self.digits).float().mean())
        return {"digit_acc": 100.0 * acc, "verified": float(acc == 1.0)}

    # Persistence as tensors (Protected.secrets is safetensors) ---------------------------------
    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "wm_positions": self.positions.long(),
            "wm_digits": self.digits.long(),
            "wm_layer_filter": torch.tensor([self.layer, self.filter]),
            "wm_map": torch.tensor([self.a, self.b], dtype=torch.float64),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> WatermarkKey:
        layer, filt = (int(v) for v in t["wm_layer_filter"])
        a, b = (float(v) for v in t["wm_map"])
        return cls(layer, filt, t["wm_positions"].long(), t["wm_digits"].long(), a, b)
