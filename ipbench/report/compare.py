"""The comparison table: one row per scheme, Table I and a few attack headlines, mean ± std
over seeds, a flag where the protection did not take.

Read from the store for exactly the runs asked for (those a grid just ran), so the CLI, the
Python API and ``--json`` print the same numbers.

Columns (all in percent): the Table I accuracies of the evaluate stage (A_or, A_ad, A_ud, A_od,
A_pd); ``forged``: the best accuracy any forged credential reached (fake-token, fake-credential,
forged-fingerprint: A_td; passport-retrain: A_fake; whichever apply to the scheme); the
headlines of three removal attacks (finetune A_ud, prune A_ud, extraction A_sub); ``thief_best``:
the highest thief accuracy over every attack that ran (each attack's headline where lower is
better for the owner). Lower is better for the owner in all attack columns. ``wall_s``: the
compute time of the scheme's own stages (protect, evaluate, attacks; not the shared baseline)
per seed, as measured when each stage ran (a cached stage keeps its original time).

Rows: per dataset, preset and model, the schemes whose protection took, by A_pd (the headline:
how much the protection takes from an unauthorized user) high to low; then the flagged ones, by
A_pd; then ``none`` (the unprotected reference, never flagged).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from ipbench.metrics.health import run_warnings
from ipbench.store.results import Store

TABLE_I = ("A_or", "A_ad", "A_ud", "A_od", "A_pd")
FORGED = ("fake-token", "fake-credential", "forged-fingerprint", "passport-retrain")
ROBUSTNESS = {"finetune": "finetune_A_ud", "prune": "prune_A_ud", "extraction": "extraction_A_sub"}
COLUMNS = (*TABLE_I, "forged", *ROBUSTNESS.values(), "thief_best")
GROUP = ["dataset", "preset", "model"]


def protects(scheme: str) -> bool:
    """Whether the registered scheme declares that it protects (``Scheme.protects``); the
    unprotected control does not, so it is never flagged and sorts last. A scheme this install
    does not have (a row from another store) counts as protecting."""
    from ipbench.core.errors import IpbenchError
    from ipbench.core.registry import schemes

    try:
        return bool(schemes.get(scheme).protects)
    except IpbenchError:
        return True


def _headline(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The stage's headline row: the lowest positive headline rank its metrics declare."""
    ranked = [
        (int(r["spec"]["headline"]), i) for i, r in enumerate(rows)
        if isinstance(r.get("spec"), dict) and r["spec"].get("headline") and r["value"] is not None
    ]  # fmt: skip
    return rows[min(ranked)[1]] if ranked else None


def run_row(store: Store, run_id: str) -> dict[str, Any]:
    """One run's headline numbers (``None`` where an attack did not run or was skipped)."""
    rec = store.require_run(run_id)
    row: dict[str, Any] = {
        "run_id": rec.run_id, "scheme": rec.scheme, "dataset": rec.dataset,
        "preset": rec.preset, "model": rec.model, "seed": rec.seed,
    }  # fmt: skip
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for m in store.metrics(run_id):
        by_stage.setdefault(m["stage"], []).append(m)
    evaluate = {m["name"]: m["value"] for m in by_stage.get("evaluate", [])}
    for name in TABLE_I:
        row[name] = evaluate.get(name)
    row["id_rate"] = evaluate.get("id_rate")
    forged, thief = [], []
    for stage, rows in by_stage.items():
        if not stage.startswith("attack:"):
            continue
        attack, head = stage.removeprefix("attack:"), _headline(rows)
        if head is None:
            continue
        if attack in FORGED:
            forged.append(head["value"])
        if attack in ROBUSTNESS:
            row[ROBUSTNESS[attack]] = head["value"]
        if head["spec"].get("better") == "lower" and head["spec"].get("unit") == "%":
            thief.append(head["value"])
    row["forged"] = max(forged) if forged else None
    row["thief_best"] = max(thief) if thief else None
    for col in ROBUSTNESS.values():
        row.setdefault(col, None)
    # the scheme's own stages: the baseline is shared by every scheme of the same task
    walls = [
        s["wall_s"] for s in store.stages(run_id)
        if s["wall_s"] is not None and s["name"] != "baseline"
    ]  # fmt: skip
    row["wall_s"] = float(sum(walls))
    return row


def per_run(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """One row per run: its identity, the headline columns and its compute time."""
    return pd.DataFrame([run_row(store, r) for r in run_ids])


def _flag(scheme: str, means: dict[str, float | None]) -> str:
    """``ipbench.metrics.health``'s warnings on the means, cut to what a table cell needs
    (``protection did not take: A_pd = -2.00``)."""
    if not protects(scheme):
        return ""
    found = run_warnings({k: v for k, v in means.items() if v is not None})
    return "; ".join(re.sub(r"(= -?[\d.]+%?).*", r"\1", w) for w in found)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, preset, model and scheme: each column's mean and ``_std`` (sample std, 0
    for one seed), the seeds, the mean compute time per seed and the flag; ordered as
    documented."""
    cols = [*GROUP, "scheme", "seeds", "n"]
    cols += [c for name in COLUMNS for c in (name, f"{name}_std")]
    cols += ["wall_s", "flag"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, g in runs.groupby([*GROUP, "scheme"], sort=False):
        row: dict[str, Any] = dict(zip([*GROUP, "scheme"], key, strict=True))
        row["seeds"] = ",".join(str(s) for s in sorted(g["seed"]))
        row["n"] = len(g)
        for name in [*COLUMNS, "id_rate"]:
            vals = pd.to_numeric(g[name], errors="coerce").dropna().astype(float)
            row[name] = float(vals.mean()) if len(vals) else math.nan
            row[f"{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        row["wall_s"] = float(g["wall_s"].mean())
        means = {m: None if math.isnan(row[m]) else row[m] for m in ("A_pd", "id_rate")}
        row["flag"] = _flag(row["scheme"], means)
        out.append(row)
    df = pd.DataFrame(out)
    rank = ~df["scheme"].map(protects) * 2 + df["flag"].ne("").astype(int)
    df = df.assign(_rank=rank, _pd=df["A_pd"].fillna(-math.inf))
    df = df.sort_values(
        [*GROUP, "_rank", "_pd", "scheme"], ascending=[True] * 3 + [True, False, True]
    )
    return df[cols].reset_index(drop=True)


def comparison(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """The comparison table of ``run_ids``."""
    return summarize(per_run(store, run_ids))
