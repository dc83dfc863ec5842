"""Seeds -> mean ± std per (scheme, configuration, stage, metric), printed in each metric's
stored format (``ipbench.metrics.spec``) so a regenerated table is byte-identical."""

from __future__ import annotations

import math

import pandas as pd

from ipbench.metrics.spec import Metric, describe
from ipbench.report.leaderboard.collect import Collected

KEYS = ["scheme", "variant", "stage", "name"]
POINT = ["metric", "param", "x", "label", "spec"]  # what the number is, as the store has it
AGG_COLUMNS = [*KEYS, "mean", "std", "n", "seeds", "note", "status", *POINT, "runs"]


def aggregate(col: Collected) -> pd.DataFrame:
    """One row per (scheme, variant, stage, metric): mean, sample std (0 for one seed), n,
    and the runs it comes from (a tuple of run ids in seed order; the HTML links them).

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
        specs = [sp for sp in g["spec"] if isinstance(sp, dict)]
        first = g.iloc[0]
        out.append({
            **dict(zip(KEYS, key, strict=True)),
            "mean": float(vals.mean()) if len(vals) else math.nan,
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "n": len(vals),
            "seeds": ",".join(str(s) for s in sorted(set(g["seed"]))),
            "note": notes[0] if notes else "",
            "status": str(g["status"].iloc[-1]),
            "metric": first["metric"], "param": first["param"], "x": first["x"],
            "label": first["label"], "spec": specs[-1] if specs else None,
            "runs": tuple(g.loc[g["value"].notna(), "run_id"]) or tuple(g["run_id"][:1]),
        })  # fmt: skip
    return pd.DataFrame(out, columns=AGG_COLUMNS)


def meaning(name: str, spec: dict | None = None) -> Metric:
    """A metric as the store describes it (older stores: from its name)."""
    return Metric.from_spec(name, spec) if spec else describe(name)


def fmt(metric: str, v: float, spec: dict | None = None) -> str:
    """A metric value in its stored format (accuracies 2 decimals, SSIM 3, LPIPS 4, counts SI)."""
    return meaning(metric, spec).format(v)


def cell(metric: str, mean: float, std: float, n: int, spec: dict | None = None) -> str:
    """``mean ± std`` over seeds (just ``mean`` for one seed)."""
    if n == 0:
        return "–"
    return fmt(metric, mean, spec) + (f" ± {fmt(metric, std, spec)}" if n > 1 else "")
