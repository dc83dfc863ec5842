"""The comparison table: one row per scheme, Table I and the attacks' headlines, mean ± std
over seeds, a flag where the protection did not take.

Read from the store for exactly the runs asked for (those a grid just ran), so the CLI, the
Python API and ``--json`` print the same numbers.

Columns (all in percent): the Table I accuracies of the evaluate stage (A_or, A_ad, A_ud, A_od,
A_pd); ``forged``: the best accuracy any forged credential reached (the attacks whose headline
is a forged credential's accuracy, ``A_td`` or ``A_fake``); one column per attack stage the
runs hold, named by the stage and the metric the attack declares as its headline
(``finetune A_ud``; an attack run with other settings is its own column, ``finetune(epochs=1)
A_ud``); ``thief_best``: the highest thief accuracy over every attack that ran (each attack's
headline where lower is better for the owner). A stage with no number says why in
``unscored`` (``skipped``: the attack does not apply; ``failed``), never a bare "-".
``wall_s``: the compute time of the scheme's own stages (protect, evaluate, attacks; not the
shared baseline) per seed, as measured when each stage ran (a cached stage keeps its time).

Rows: per dataset, preset and model, the schemes whose protection took, by A_pd (the headline:
how much the protection takes from an unauthorized user) high to low; then the flagged ones, by
A_pd; then ``none`` (the unprotected reference, never flagged).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ipbench.engine.headline import attack_headlines, ordered, protects, run_flag
from ipbench.metrics.health import FLAGGED_METRICS
from ipbench.store.results import Store

__all__ = ["comparison", "per_run", "protects", "summarize", "value_columns"]

TABLE_I = ("A_or", "A_ad", "A_ud", "A_od", "A_pd")
FORGED = ("A_td", "A_fake")  # a forged credential's accuracy (ipbench.metrics.spec)
GROUP = ["dataset", "preset", "model"]
IDENTITY = ["run_id", "scheme", *GROUP, "seed"]


def value_columns(columns: Iterable[str]) -> list[str]:
    """The table's number columns, in order: Table I, ``forged``, the attack columns among
    ``columns`` (by attack, default settings first), ``thief_best``."""
    return [*TABLE_I, "forged", *ordered(columns), "thief_best"]


def run_row(store: Store, run_id: str) -> dict[str, Any]:
    """One run's headline numbers (``None`` where an attack did not run; ``unscored`` says
    why an attack that ran has no number)."""
    rec = store.require_run(run_id)
    row: dict[str, Any] = {
        "run_id": rec.run_id, "scheme": rec.scheme, "dataset": rec.dataset,
        "preset": rec.preset, "model": rec.model, "seed": rec.seed,
    }  # fmt: skip
    metrics, stages = store.metrics(run_id), store.stages(run_id)
    evaluate = {m["name"]: m["value"] for m in metrics if m["stage"] == "evaluate"}
    for name in TABLE_I:
        row[name] = evaluate.get(name)
    row["id_rate"] = evaluate.get("id_rate")
    forged, thief, unscored = [], [], {}
    for head in attack_headlines(metrics, stages):
        row[head.column] = head.value
        if head.value is None:
            unscored[head.column] = head.status
            continue
        if head.meaning.name in FORGED:
            forged.append(head.value)
        if head.meaning.better == "lower" and head.meaning.unit == "%":
            thief.append(head.value)
    row["forged"] = max(forged) if forged else None
    row["thief_best"] = max(thief) if thief else None
    # the scheme's own stages: the baseline is shared by every scheme of the same task
    walls = [s["wall_s"] for s in stages if s["wall_s"] is not None and s["name"] != "baseline"]
    row["wall_s"] = float(sum(walls))
    row["unscored"] = unscored
    return row


def per_run(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """One row per run: its identity, the headline columns and its compute time."""
    df = pd.DataFrame([run_row(store, r) for r in run_ids])
    if df.empty:
        return df
    return df[[*IDENTITY, *value_columns(df.columns), "id_rate", "wall_s", "unscored"]]


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, preset, model and scheme: each column's mean and ``_std`` (sample std, 0
    for one seed), the seeds, the mean compute time per seed, the flag and, per attack column
    with no number, why (``unscored``); ordered as documented."""
    values = value_columns(runs.columns)
    cols = [*GROUP, "scheme", "seeds", "n"]
    cols += [c for name in values for c in (name, f"{name}_std")]
    cols += ["wall_s", "flag", "unscored"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, g in runs.groupby([*GROUP, "scheme"], sort=False):
        row: dict[str, Any] = dict(zip([*GROUP, "scheme"], key, strict=True))
        row["seeds"] = ",".join(str(s) for s in sorted(g["seed"]))
        row["n"] = len(g)
        for name in [*values, "id_rate"]:
            vals = pd.to_numeric(g[name], errors="coerce").dropna().astype(float)
            row[name] = float(vals.mean()) if len(vals) else math.nan
            row[f"{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        row["wall_s"] = float(g["wall_s"].mean())
        means = {m: None if math.isnan(row[m]) else row[m] for m in FLAGGED_METRICS}
        row["flag"] = run_flag(row["scheme"], means)
        notes = [d for d in g.get("unscored", []) if isinstance(d, dict)]
        row["unscored"] = {c: w for d in notes for c, w in d.items() if math.isnan(row[c])}
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
