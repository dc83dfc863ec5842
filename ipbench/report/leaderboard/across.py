"""Table I across datasets: one preset's accuracy block for every dataset side by side, as the
papers print it (ActiveDaemon Table I: a column group per dataset), with the published numbers
beside the measured ones.

The per-dataset pages show a published value in a ``(paper)`` column only where the paper used
the same network; this page is the one place where the papers' Table I sits beside ipbench's
rows whatever the network, so every published column names the network and recipe it came from,
and the page says that a reduced preset's rows are not the papers' setting. The cells are the
same numbers as the per-dataset pages (mean ± std over seeds), read from the same aggregate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ipbench.metrics.spec import Better
from ipbench.report.leaderboard.aggregate import cell, fmt
from ipbench.report.leaderboard.page import Page
from ipbench.report.leaderboard.reference import published
from ipbench.report.leaderboard.render import Rendered, Section
from ipbench.report.leaderboard.table import Cell, Column, Table, label

TABLE_I = ("A_or", "A_od", "A_pd")
BETTER: dict[str, Better] = {"A_or": "neither", "A_od": "zero", "A_pd": "higher"}
CSV_COLUMNS = ["preset", "dataset", "scheme", "metric", "mean", "std", "n", "published",
               "published_model", "source"]  # fmt: skip


@dataclass
class DatasetPart:
    """One dataset's page data: its stem (for links) and its Page (aggregate and models)."""

    stem: str
    page: Page


def stem(preset: str) -> str:
    """The summary's file stem: ``quick-across-datasets``."""
    return f"{preset}-across-datasets"


def _order(parts: list[DatasetPart]) -> list[str]:
    """Schemes by their mean A_pd over the datasets that measured it, highest first."""
    schemes = sorted({s for p in parts for s in p.page.agg.scheme.unique()})

    def key(s: str) -> tuple[int, float, str]:
        vals = []
        for p in parts:
            row = p.page.value(s, "evaluate", "A_pd")
            if row is not None and row["n"] > 0 and not math.isnan(row["mean"]):
                vals.append(float(row["mean"]))
        return (1, 0.0, s) if not vals else (0, -sum(vals) / len(vals), s)

    return sorted(schemes, key=key)


def across(parts: list[DatasetPart], preset: str) -> tuple[Rendered, pd.DataFrame]:
    """The summary page (as data) and its CSV rows for ``parts`` of one preset."""
    schemes = _order(parts)
    header = [Column("scheme")]
    rows: list[list[Cell]] = [[label(s)] for s in schemes]
    csv: list[dict[str, object]] = []
    sources: set[str] = set()
    paper_models: set[str] = set()
    for part in parts:
        page, ds = part.page, part.page.dataset
        for metric in TABLE_I:
            pubs = {s: published(page.ref, s, ds, metric) for s in schemes}
            header.append(Column(f"{ds} {metric}", BETTER[metric]))
            with_paper = any(r is not None for r in pubs.values())
            if with_paper:
                header.append(Column(f"{ds} {metric} (paper)", BETTER[metric], paper=True))
            for s, row_cells in zip(schemes, rows, strict=True):
                got = page.value(s, "evaluate", metric)
                pub = pubs[s]
                measured = Cell()
                if got is not None and got["n"] > 0:
                    text = cell(metric, got["mean"], got["std"], int(got["n"]), got["spec"])
                    measured = Cell(text, float(got["mean"]))
                row_cells.append(measured)
                if with_paper:
                    row_cells.append(
                        Cell()
                        if pub is None
                        else Cell(
                            f"{fmt(metric, float(pub['value']))} ({pub['model'] or 'net not stated'})",
                            float(pub["value"]),
                            source=str(pub["source"]),
                        )
                    )
                if pub is not None:
                    sources.add(str(pub["source"]))
                    paper_models.add(str(pub["model"] or "not stated"))
                if got is None and pub is None:
                    continue
                csv.append({
                    "preset": preset, "dataset": ds, "scheme": s, "metric": metric,
                    "mean": None if got is None or got["n"] == 0 else float(got["mean"]),
                    "std": None if got is None or got["n"] < 2 else float(got["std"]),
                    "n": 0 if got is None else int(got["n"]),
                    "published": None if pub is None else float(pub["value"]),
                    "published_model": "" if pub is None else str(pub["model"]),
                    "source": "" if pub is None else str(pub["source"]),
                })  # fmt: skip
    models = sorted({m for p in parts for m in p.page.models.values() if m})
    names = ", ".join(f"[{p.page.dataset}]({p.stem}.md)" for p in parts)
    intro = [
        f"Table I (accuracy) of preset `{preset}` for every dataset with a page ({names}), as "
        "the papers print it: a column group per dataset. Measured cells are mean ± std over "
        "seeds (one seed: the value), the same numbers as each dataset's page.",
        f"Measured on {', '.join(models) or 'the preset networks'}; the `(paper)` columns are "
        "the published numbers from `ipbench/report/leaderboard/reference.csv` on the network "
        f"named in each cell ({', '.join(sorted(paper_models)) or 'none'}), with the papers' "
        "recipes. They sit beside the measured cells for orientation: where the networks or "
        "recipes differ, a gap between the two is not a result about the scheme.",
        "Rows are ordered by mean `A_pd` over the datasets, highest first; ↑ marks the better "
        "direction for the protection, → 0 closest to zero is best.",
    ]
    table = Table(header, rows)
    rendered = Rendered(
        dataset="every dataset", preset=preset, provenance=[], intro=intro,
        sections=[Section("Accuracy (Table I) across datasets", table=table)], figures=[],
        sources=sorted(sources), footnotes=[], table=pd.DataFrame(csv, columns=CSV_COLUMNS),
        flags={},
    )  # fmt: skip
    return rendered, rendered.table
