"""ActiveGuard's own numbers: watermark checks, Table 1's authentication rates, capacity.

Kept apart from the scheme module so the protocol (activeguard.py) stays short; everything here
only calls the scheme's public methods, as an evaluator outside the deployment would.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from ipbench.ml.training import to_float_images
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Protected
from ipbench.schemes._activeguard.fingerprint import cw_fingerprints, source_images

if TYPE_CHECKING:
    from ipbench.schemes.activeguard import ActiveGuard


def cell_name(t: int, c: float) -> str:
    return f"auth_t{t}_c{c:.2f}"


def table1(
    scheme: ActiveGuard, protected: Protected, x: torch.Tensor, y: torch.Tensor, seed: int
) -> tuple[dict[str, float], float, float]:
    """Fresh fingerprints per (t, c) from owner images, submitted to the service.

    A trial succeeds when the service authenticates it as exactly the cell's user; returns the
    per-cell rates (percent), the share identified as some other user and the mean L2 distortion.
    """
    k = int(protected.meta["num_classes"])
    targets, confs = scheme._grid(k)
    n = scheme.config.fp_trials
    cell = torch.arange(len(targets)).repeat_interleave(n)
    src = source_images(y, targets[cell], 55_555 + seed + scheme.config.seed_offset)
    x0 = to_float_images(x[src])
    images, _, _ = cw_fingerprints(protected.model, x0, targets[cell], confs[cell], scheme.cw())
    got = scheme.slots(protected, images)
    hit = got == cell
    rates = {
        cell_name(int(targets[s]), float(confs[s])): 100.0 * float(hit[cell == s].float().mean())
        for s in range(len(targets))
    }
    other = 100.0 * float(((got >= 0) & ~hit).float().mean())
    l2 = float((images - x0).flatten(1).norm(dim=1).mean())
    return rates, other, l2


@torch.no_grad()
def passthrough_rate(scheme: ActiveGuard, protected: Protected, x: torch.Tensor) -> float:
    """Percent of clean images whose own top probability lies in a band: served unauthenticated."""
    passed = scheme.check(protected, x)[0]
    return 100.0 * float(passed.float().mean())


def activeguard_metrics(
    scheme: ActiveGuard, protected: Protected, ctx: RunContext
) -> dict[str, float | str | None]:
    """Everything ActiveGuard reports beyond A_ad / A_ud."""
    out: dict[str, float | str | None] = {}
    own = scheme.verify_ownership(protected, protected.model)
    stolen = scheme.verify_ownership(protected, scheme.stolen(protected))
    base = scheme.verify_ownership(protected, ctx.unprotected())
    out |= {
        "wm_digit_acc": own["digit_acc"], "wm_verified": own["verified"],
        "wm_stolen_verified": stolen["verified"],
        "wm_baseline_digit_acc": base["digit_acc"], "wm_baseline_verified": base["verified"],
    }  # fmt: skip
    s = protected.secrets
    slots = torch.arange(len(s["fp_targets"]))
    out["fp_library_converged"] = 100.0 * float(s["fp_ok"].float().mean())
    out["user_id_acc"] = 100.0 * float(
        (scheme.slots(protected, s["fp_images"]) == slots).float().mean()
    )
    out["capacity"] = scheme.capacity(int(protected.meta["num_classes"]))
    out["capacity_used"] = float(len(slots))
    out["ud_passthrough"] = passthrough_rate(scheme, protected, ctx.test.x)
    if scheme.config.fp_trials > 0:
        t0 = time.perf_counter()
        owner = ctx.owner
        rates, other, l2 = table1(scheme, protected, owner.x, owner.y, ctx.seed)
        out |= rates
        out["auth_rate"] = sum(rates.values()) / len(rates)
        out["auth_min"] = min(rates.values())
        out["auth_as_other_user"] = other
        out["fp_l2"] = l2
        out["fp_trials_per_cell"] = float(scheme.config.fp_trials)
        out["fp_eval_wall_s"] = time.perf_counter() - t0
    else:
        out["auth_rate"] = "fp_trials=0: Table 1 not measured"
    return out
