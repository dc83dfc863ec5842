"""Seeds -> mean ± std per (scheme, configuration, stage, metric), and fixed number formats so
a regenerated table is byte-identical."""

from __future__ import annotations

import math

import pandas as pd

from ipbench.leaderboard.collect import Collected

KEYS = ["scheme", "variant", "stage", "name"]
AGG_COLUMNS = [*KEYS, "mean", "std", "n", "seeds", "note", "status"]


def aggregate(col: Collected) -> pd.DataFrame:
    """One row per (scheme, variant, stage, metric): mean, sample std (0 for one seed), n.

    Notes (why a value is missing, why an attack was skipped) are kept, the first in seed order.
    """
    if col.metrics.empty:
        return pd.DataFrame(columns=AGG_COLUMNS)
    m = col.metrics.merge(col.runs[["run_id", "scheme", "variant", "seed"]], on="run_id")
    m = m.sort_values(["scheme", "variant", "stage", "name", "seed"], kind="stable")
    out = []
    for key, g in m.groupby(KEYS, sort=True, dropna=False):
        vals = g["value"].dropna().astype(float)
        notes = [n for n in g["note"] if isinstance(n, str) and n]
        out.append({
            **dict(zip(KEYS, key, strict=True)),
            "mean": float(vals.mean()) if len(vals) else math.nan,
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "n": len(vals),
            "seeds": ",".join(str(s) for s in sorted(set(g["seed"]))),
            "note": notes[0] if notes else "",
            "status": str(g["status"].iloc[-1]),
        })  # fmt: skip
    return pd.DataFrame(out, columns=AGG_COLUMNS)


def _si(v: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{suffix}"
    return f"{v:.0f}"


def fmt(metric: str, v: float) -> str:
    """A metric value in its fixed format (accuracies 2 decimals, SSIM 3, LPIPS 4, counts SI)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    base = metric.split("@")[0].split(":")[-1]
    if base.startswith("capacity") and v >= 2**20 and math.log2(v).is_integer():
        return f"2^{int(math.log2(v))}"
    if base.startswith(("params", "flops", "credential_flops", "credential_params", "buffers")):
        return _si(v)
    if "bytes" in base:
        return _si(v) + "B"
    if base == "SSIM":
        return f"{v:.3f}"
    if base == "LPIPS":
        return f"{v:.4f}"
    if base.endswith("_pct"):
        return f"{v:.6f}"
    if base.startswith(("capacity", "users_")):
        return f"{v:.0f}"
    return f"{v:.2f}"


def cell(metric: str, mean: float, std: float, n: int) -> str:
    """``mean ± std`` over seeds (just ``mean`` for one seed)."""
    if n == 0:
        return "–"
    return fmt(metric, mean) + (f" ± {fmt(metric, std)}" if n > 1 else "")
