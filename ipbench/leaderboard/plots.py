"""Curves from stored metrics: pruning (Figs. 7-8), deteriorated token (Fig. 4) and the
poisoning-ratio sweep (Fig. 2). PNGs via matplotlib's Agg backend, without a timestamp."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from ipbench.leaderboard.collect import attack_stage, default_config, settings_text


def curve_points(agg: pd.DataFrame, stage: str, param: str) -> pd.DataFrame:
    """Rows ``scheme, metric, x, mean, std`` of the curve points the store records along
    ``param`` (numeric x, no series label)."""
    rows = []
    sub = agg[(agg.stage == stage) & (agg.variant == "{}") & (agg.param == param)]
    for r in sub.itertuples():
        numeric = isinstance(r.x, int | float) and not isinstance(r.x, bool)
        if numeric and r.n > 0 and not isinstance(r.label, str):  # one series per metric
            rows.append((r.scheme, r.metric, float(r.x), r.mean, r.std))
    return pd.DataFrame(rows, columns=["scheme", "metric", "x", "mean", "std"]).sort_values(
        ["scheme", "metric", "x"], ignore_index=True
    )


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def _lines(
    points: pd.DataFrame, metrics: list[str], xlabel: str, title: str, path: Path, where: str
) -> None:
    """One panel per metric; the figure's title names ``where`` (dataset and preset), so a
    PNG seen on its own still says what it shows."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.9), squeeze=False)
    fig.suptitle(f"{title}: {where}", fontsize=10)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for scheme, g in points[points.metric == metric].groupby("scheme", sort=True):
            ax.errorbar(g.x, g["mean"], yerr=g["std"], marker="o", capsize=2, label=scheme)
        ax.set(xlabel=xlabel, ylabel=f"{metric} (%)", title=f"{title}: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _label(scheme: str, fields: dict[str, str]) -> str:
    """A series name: the scheme and any other setting its runs changed."""
    return f"{scheme} ({settings_text(fields)})" if fields else scheme


def sweep_points(col_runs: pd.DataFrame, agg: pd.DataFrame, field: str) -> pd.DataFrame:
    """A_ad/A_ud per value of a swept scheme field (e.g. the poisoning ratio ``gamma``).

    One series per scheme and per combination of the other changed settings, so runs made
    under another setting (e.g. an older protection schedule) form their own curve. A run at
    the default value of ``field`` is that series' point at the default value.
    """
    key = f"scheme_config.{field}"
    defaults = {}
    for r in col_runs.drop_duplicates(["scheme", "dataset", "preset"]).itertuples():
        stored = json.loads(r.reference) if isinstance(getattr(r, "reference", None), str) else None
        if stored is None:  # a store from before runs recorded their defaults
            stored = (default_config(r.scheme, r.dataset, r.preset) or {}).get("scheme_config")
        value = (stored or {}).get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            defaults[r.scheme] = float(value)
    swept, at_default = [], []
    for r in agg[(agg.stage == "evaluate") & agg.name.isin(["A_ad", "A_ud"])].itertuples():
        if r.n == 0:
            continue
        var = json.loads(r.variant)
        changed = key in var
        value = json.loads(var.pop(key, "null"))
        if isinstance(value, int | float) and not isinstance(value, bool):
            swept.append((_label(r.scheme, var), r.name, float(value), r.mean, r.std))
        elif not changed and r.scheme in defaults:
            at_default.append((_label(r.scheme, var), r.name, defaults[r.scheme], r.mean, r.std))
    series = {row[0] for row in swept}
    rows = swept + [row for row in at_default if row[0] in series]
    return pd.DataFrame(rows, columns=["scheme", "metric", "x", "mean", "std"]).sort_values(
        ["scheme", "metric", "x"], ignore_index=True
    )


def make_plots(
    col_runs: pd.DataFrame, agg: pd.DataFrame, folder: Path, dataset: str, preset: str
) -> list[tuple[str, Path]]:
    """Every plot the data allows; returns (title, path) of the files written."""
    made = []
    where = f"{dataset}, preset {preset}"
    prune = curve_points(agg, attack_stage("prune"), "rate")
    if len(prune):
        path = folder / "prune.png"
        _lines(prune, sorted(set(prune.metric)), "pruning rate", "pruning", path, where)
        made.append(("pruning: accuracy vs rate (paper Figs. 7-8)", path))
    fake = curve_points(agg, attack_stage("fake-token"), "gamma_f")
    if len(fake):
        path = folder / "deteriorated-token.png"
        _lines(fake, sorted(set(fake.metric)), "gamma_f (share of token pixels kept)",
               "deteriorated token", path, where)  # fmt: skip
        made.append(("deteriorated token: accuracy vs gamma_f (paper Fig. 4)", path))
    gamma = sweep_points(col_runs, agg, "gamma")
    if len(gamma):
        path = folder / "poisoning-ratio.png"
        _lines(gamma, sorted(set(gamma.metric)), "poisoning ratio gamma", "poisoning", path, where)
        made.append(("poisoning ratio: A_ad and A_ud vs gamma (paper Fig. 2)", path))
    return made
