"""ActiveGuard's fingerprints (C&W with a confidence-control term) and its control layer.

A fingerprint for (t, c) is an input the model classifies as t with top probability within eps
of c (paper section 2.3). The control layer (section 2.2) sits after the output: an input whose
top probability lies within eps of some c in C_fp passes; every other input gets a uniformly
random class. An authenticated session is served by the model without the control layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ipbench.core.errors import IpbenchError


@dataclass(frozen=True)
class CWSettings:
    """The C&W optimisation (Eq. 1 with g of Eq. 3): Adam on tanh-space delta, early stop."""

    alpha: float  # weight of g against the squared L2 distance
    steps: int
    lr: float
    eps: float  # authentication tolerance
    stop_fraction: float  # stop once |P_t - c| < stop_fraction * eps (headroom for numerics)
    stop_margin: float  # ... and Z_t beats every other logit by this much
    control_term: str  # "prob": |P_t - c| (what the paper means); "logit": |Z_t - c| (as typeset)
    batch_size: int
    lr_decay: bool = True  # cosine-decay Adam's step so iterates settle inside the 2*eps band


def authenticate(
    logits: torch.Tensor, confidences: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: does it pass (min_j |P_max - c_j| < eps), and its slot t*T + j (-1 if not)."""
    p = logits.float().softmax(1)
    p_max, t = p.max(1)
    if confidences.numel() == 0:  # a thief's copy: the owner's confidences are not in it
        return torch.zeros_like(t, dtype=torch.bool), torch.full_like(t, -1)
    err = (p_max[:, None] - confidences.to(p.device)[None, :]).abs()
    e_c, j = err.min(1)
    ok = e_c < eps
    slot = torch.where(ok, t * len(confidences) + j, torch.full_like(t, -1))
    return ok, slot


class ControlLayer(nn.Module):
    """The deployed artefact: the network plus the paper's Lambda-layer control on its output.

    ``model`` stays reachable, so an attack that strips the control layer finds it.
    ``passthrough`` (the paper's layer) serves any input whose own top probability falls in a
    band; with it off, every query of an unauthenticated session is answered at random.
    """

    confidences: torch.Tensor  # a buffer

    def __init__(
        self,
        model: nn.Module,
        confidences: torch.Tensor,
        eps: float,
        num_classes: int,
        seed: int,
        passthrough: bool = True,
    ):
        super().__init__()
        self.model = model
        self.register_buffer("confidences", confidences.float().clone(), persistent=False)
        self.eps, self.num_classes, self.passthrough = eps, num_classes, passthrough
        self.generator = torch.Generator().manual_seed(seed)

    def random_answer(self, n: int, device: torch.device) -> torch.Tensor:
        """One-hot logits of a uniformly random class per input (reproducible per seed)."""
        cls = torch.randint(self.num_classes, (n,), generator=self.generator)
        return F.one_hot(cls, self.num_classes).float().to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        rand = self.random_answer(len(x), logits.device)
        if not self.passthrough:
            return rand
        ok, _ = authenticate(logits, self.confidences, self.eps)
        return torch.where(ok[:, None], logits.float(), rand)


def _atanh_space(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))


def cw_fingerprints(
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    confs: torch.Tensor,
    s: CWSettings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fingerprints for rows (x_i, t_i, c_i): returns images, success flags, steps used.

    minimise ||x' - x||^2 + alpha * (max(max_{k!=t} Z_k - Z_t, 0) + |P_t - c|),
    x' = (tanh(delta) + 1) / 2; a row stops at the first iterate with argmax == t and
    |P_t - c| inside the tolerance, and only rows still running are forwarded.
    """
    model.eval()
    dev = next(model.parameters()).device
    out = x.clone().float()
    ok = torch.zeros(len(x), dtype=torch.bool)
    used = torch.full((len(x),), s.steps, dtype=torch.long)
    req = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for lo in range(0, len(x), s.batch_size):
            sl = slice(lo, lo + s.batch_size)
            res = _cw_batch(model, x[sl].float().to(dev), targets[sl].to(dev), confs[sl].to(dev), s)
            out[sl], ok[sl], used[sl] = res
    finally:
        for p, r in zip(model.parameters(), req, strict=True):
            p.requires_grad_(r)
    return out, ok, used


def _cw_batch(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, s: CWSettings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(x)
    delta = _atanh_space(x).requires_grad_(True)
    opt = torch.optim.Adam([delta], lr=s.lr)
    best = x.clone()
    ok = torch.zeros(n, dtype=torch.bool, device=x.device)
    used = torch.full((n,), s.steps, dtype=torch.long, device=x.device)
    for step in range(s.steps):
        if s.lr_decay:
            opt.param_groups[0]["lr"] = s.lr * 0.5 * (1 + math.cos(math.pi * step / s.steps))
        act = (~ok).nonzero().squeeze(1)
        if len(act) == 0:
            break
        xa = 0.5 * (torch.tanh(delta[act]) + 1)
        z = model(xa.contiguous(memory_format=torch.channels_last)).float()
        ta, ca = t[act], c[act]
        z_t = z.gather(1, ta[:, None]).squeeze(1)
        z_other = z.scatter(1, ta[:, None], float("-inf")).max(1).values
        p_t = z.softmax(1).gather(1, ta[:, None]).squeeze(1)
        with torch.no_grad():  # the stop test on this very iterate
            done = (z_t - z_other > s.stop_margin) & ((p_t - ca).abs() < s.stop_fraction * s.eps)
            idx = act[done]
            best[idx], ok[idx], used[idx] = xa[done].detach(), True, step
        ctrl = (p_t - ca).abs() if s.control_term == "prob" else (z_t - ca).abs()
        g = (z_other - z_t).clamp(min=0) + ctrl
        dist = ((xa - x[act]) ** 2).flatten(1).sum(1)
        loss = (dist + s.alpha * g)[~done].sum()
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            opt.step()
    return best.cpu(), ok.cpu(), used.cpu()


def source_images(y: torch.Tensor, targets: torch.Tensor, seed: int) -> torch.Tensor:
    """One random owner image per target, never of the target's own class."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(y), (len(targets),), generator=g)
    for _ in range(100):
        same = y[idx] == targets
        if not same.any():
            return idx
        idx[same] = torch.randint(len(y), (int(same.sum()),), generator=g)
    raise IpbenchError("could not find source images outside the target classes")
