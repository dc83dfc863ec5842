"""Curves from stored metrics: pruning (Figs. 7-8), deteriorated token (Fig. 4), the
poisoning-ratio sweep (Fig. 2), the fine-tuning budget and benign-processing curves, and
one figure per other swept scheme field (e.g. a token generator's steps). PNGs via matplotlib's Agg backend,
without a timestamp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from ipbench.attacks.processing import PARAM as PROCESSING_PARAM
from ipbench.report.leaderboard.collect import attack_stage, default_config, settings_text


def curve_points(
    agg: pd.DataFrame, stage: str, param: str, label: str | None = None
) -> pd.DataFrame:
    """Rows ``scheme, metric, x, mean, std`` of the curve points the store records along
    ``param`` (numeric x): the unlabelled series, or with ``label`` the series of that name
    (e.g. ``jpeg`` of the benign-processing attack, whose curves share one stage), its metric
    named ``"METRIC LABEL"``."""
    rows = []
    sub = agg[(agg.stage == stage) & (agg.variant == "{}") & (agg.param == param)]
    for r in sub.itertuples():
        numeric = isinstance(r.x, int | float) and not isinstance(r.x, bool)
        in_series = r.label == label if label is not None else not isinstance(r.label, str)
        if numeric and r.n > 0 and in_series:
            metric = r.metric if label is None else f"{r.metric} {label}"
            rows.append((r.scheme, metric, float(r.x), r.mean, r.std))
    return pd.DataFrame(rows, columns=["scheme", "metric", "x", "mean", "std"]).sort_values(
        ["scheme", "metric", "x"], ignore_index=True
    )


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


# units of the metrics that are not percentages (the rest are)
UNITS = {"PSNR": "dB", "SSIM": "", "LPIPS": "distance", "ERGAS": "", "images": "images"}


def _lines(
    points: pd.DataFrame,
    metrics: list[str],
    xlabel: str,
    title: str,
    path: Path,
    where: str,
    logx: bool = False,
    per_row: int = 4,
) -> None:
    """One panel per metric (``per_row`` to a row); the figure's title names ``where``
    (dataset and preset), so a PNG seen on its own still says what it shows."""
    rows = -(-len(metrics) // per_row)
    cols = min(len(metrics), per_row)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5 * cols + 2, 3.9 * rows), squeeze=False, layout="constrained"
    )
    fig.suptitle(f"{title}: {where}", fontsize=10)
    flat = list(axes.flat)
    for ax in flat[len(metrics) :]:
        ax.set_visible(False)
    style = series_style(sorted(set(points.scheme)))
    for ax, metric in zip(flat, metrics, strict=False):
        for scheme, g in points[points.metric == metric].groupby("scheme", sort=True):
            color, marker = style[scheme]
            ax.errorbar(g.x, g["mean"], yerr=g["std"], marker=marker, color=color, capsize=2,
                        label=scheme)  # fmt: skip
        unit = UNITS.get(metric.split("@")[0], "%")
        ylabel = f"{metric} ({unit})" if unit else metric
        ax.set(xlabel=xlabel, ylabel=ylabel, title=metric)
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in flat:  # one legend for the figure, outside every panel, each series once
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    _save(fig, path)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def series_style(names: list[str]) -> dict[str, tuple[Any, str]]:
    """A colour and marker per series: tab20's 20 colours, each pair of colour and marker
    distinct for up to 20 series (a 10-colour cycle once gave two schemes the same blue)."""
    cmap = plt.get_cmap("tab20")
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the 10 strong colours first, then the pale
    return {n: (cmap(order[i % 20]), MARKERS[i % len(MARKERS)]) for i, n in enumerate(names)}


def _label(scheme: str, fields: dict[str, str]) -> str:
    """A series name: the scheme and any other setting its runs changed."""
    return f"{scheme} ({settings_text(fields)})" if fields else scheme


SWEEP_METRICS = (("evaluate", "A_ad"), ("evaluate", "A_ud"))


def sweep_points(
    col_runs: pd.DataFrame,
    agg: pd.DataFrame,
    field: str,
    metrics: tuple[tuple[str, str], ...] = SWEEP_METRICS,
) -> pd.DataFrame:
    """Metrics (stage, name; A_ad/A_ud unless given) per value of a swept scheme field (e.g.
    the poisoning ratio ``gamma``).

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
    wanted = pd.MultiIndex.from_arrays([agg.stage, agg["name"]]).isin(metrics)
    for r in agg[wanted].itertuples():
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
    ft = attack_stage("finetune-budget")
    for param, xlabel, logx in (
        ("fraction", "thief's labelled data (share of the training set)", True),
        ("shots", "thief's labelled images per class", True),
    ):
        pts = curve_points(agg, ft, param)
        pts = pts[pts.metric.isin(["A_ud", "A_ad"])]
        if len(pts):
            path = folder / f"finetune-budget-{param}.png"
            _lines(pts, ["A_ud", "A_ad"], xlabel, "fine-tuning budget", path, where, logx=logx)
            made.append((f"fine-tuning budget: A_ud and A_ad vs labelled data ({param})", path))
    proc = [
        curve_points(agg, attack_stage("processing"), param, label)
        for label, param in PROCESSING_PARAM.items()
    ]
    proc = [p for p in proc if len(p)]
    if proc:
        pts = pd.concat(proc, ignore_index=True)
        path = folder / "processing.png"
        _lines(pts, sorted(set(pts.metric)), "level (quality, scale, sigma)",
               "benign processing of authorized queries", path, where)  # fmt: skip
        made.append(("benign processing: A_ad after JPEG, resizing, blur, noise", path))
    for field in swept_fields(agg):
        if field == "gamma":  # its own figure above
            continue
        pts = sweep_points(col_runs, agg, field, SWEEP_PLOT_METRICS)
        longest = pts.groupby(["scheme", "metric"]).size().max() if len(pts) else 0
        if longest >= 2:  # a curve, not lone points of runs that changed something else
            path = folder / f"sweep-{field.replace('_', '-')}.png"
            order = [m for _, m in SWEEP_PLOT_METRICS if m in set(pts.metric)]
            _lines(pts, order, field, f"sweep of {field}", path, where)
            made.append((f"sweep of {field}: the metrics each swept run recorded", path))
    return made


# what a sweep's figure shows at each point, where the runs recorded it: accuracy, identity
# tracing, the credential's visibility, forged input-space tokens
SWEEP_PLOT_METRICS = (
    ("evaluate", "A_ad"), ("evaluate", "A_ud"), ("evaluate", "A_pd"), ("evaluate", "A_dec"),
    ("evaluate", "id_rate"), ("evaluate", "PSNR"), ("evaluate", "SSIM"), ("evaluate", "LPIPS"),
    (attack_stage("fake-token"), "A_fake@gaussian"),
    (attack_stage("fake-token"), "A_fake@mismatched"),
)  # fmt: skip


def swept_fields(agg: pd.DataFrame) -> list[str]:
    """Scheme fields that stored runs set to a number other than the default, sorted."""
    fields = set()
    for variant in agg.variant.unique() if len(agg) else []:
        for key, value in json.loads(variant).items():
            if key.startswith("scheme_config."):
                number = json.loads(value)
                if isinstance(number, int | float) and not isinstance(number, bool):
                    fields.add(key.removeprefix("scheme_config."))
    return sorted(fields)
