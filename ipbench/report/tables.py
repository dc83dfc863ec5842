"""Terminal tables (rich) for the CLI: a run's metrics, the comparison, the stored runs.

Kept out of ``cli.py`` so the command module only parses options and prints.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
from rich.table import Table

from ipbench.metrics.display import duration, value_text
from ipbench.report.compare import TABLE_I, value_columns
from ipbench.store.results import RunRecord

HEADERS = {"forged": "forged cred.", "thief_best": "thief best"}
ALWAYS = (*TABLE_I, "forged", "thief_best")  # shown even where no run has them


def run_title(run: RunRecord) -> str:
    label = "reduced CPU setting" if run.reduced else "paper recipe"
    return (
        f"run {run.run_id}: {run.scheme} on {run.dataset}, {run.model}, preset {run.preset} "
        f"({label}), seed {run.seed}"
    )


def metrics_table(title: str, metrics: list[dict[str, Any]]) -> Table:
    """Every recorded number of a run: stage, metric, value with its unit, note."""
    table = Table(title=title, title_justify="left")
    for col, just in (("stage", "left"), ("metric", "left"), ("value", "right"), ("note", "left")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for m in metrics:
        table.add_row(
            m["stage"], m["name"], value_text(m["name"], m["value"], m.get("spec")),
            m.get("note") or "",
        )  # fmt: skip
    return table


def _cell(mean: float, std: float, n: int, why: str | None = None) -> str:
    """``mean ± std`` over seeds; no number: why (``skipped``, ``failed``), else "–" (the
    attack did not run)."""
    if mean is None or math.isnan(mean):
        return why or "–"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "")


def comparison_table(df: pd.DataFrame) -> list[Table]:
    """One table per dataset, preset and model: a row per scheme, ``mean ± std`` cells (%),
    one column per attack stage its runs hold (``ipbench.report.compare``)."""
    tables = []
    values = value_columns(df.columns)
    for (dataset, preset, model), g in df.groupby(["dataset", "preset", "model"], sort=False):
        rows = g.to_dict(orient="records")
        notes = [r.get("unscored") or {} for r in rows]
        shown = [
            c for c in values
            if c in ALWAYS or g[c].notna().any() or any(c in why for why in notes)
        ]  # fmt: skip
        seeds = sorted({s for text in g["seeds"] for s in str(text).split(",")}, key=int)
        table = Table(
            title=f"comparison: {dataset}, preset {preset}, model {model}, seeds "
            f"{','.join(seeds)} (accuracies in %, mean ± std over seeds)",
            title_justify="left",
        )
        table.add_column("scheme")
        for col in shown:
            table.add_column(HEADERS.get(col, col), justify="right")
        table.add_column("time/seed", justify="right")
        table.add_column("flag")
        for row, why in zip(rows, notes, strict=True):
            cells = [_cell(row[c], row[f"{c}_std"], row["n"], why.get(c)) for c in shown]
            flag = f"[bold yellow]{row['flag']}[/]" if row["flag"] else ""
            table.add_row(row["scheme"], *cells, duration(row["wall_s"]), flag)
        tables.append(table)
    return tables


def runs_table(title: str, runs: list[tuple[RunRecord, dict[str, float | None]]]) -> Table:
    """Stored runs, newest first, with their headline accuracies."""
    table = Table(title=title, title_justify="left")
    for col in ("run", "status", "scheme", "dataset", "model", "preset", "seed"):
        table.add_column(col)
    for col in ("A_ad", "A_ud", "A_pd"):
        table.add_column(f"{col} %", justify="right")
    table.add_column("updated")
    for rec, head in runs:
        table.add_row(
            rec.run_id, rec.status, rec.scheme, rec.dataset, rec.model, rec.preset,
            str(rec.seed),
            *(_cell(v if v is not None else math.nan, 0.0, 1) for v in (
                head.get("A_ad"), head.get("A_ud"), head.get("A_pd"))),
            f"{dt.datetime.fromtimestamp(rec.updated):%Y-%m-%d %H:%M}",
        )  # fmt: skip
    return table
