"""The state one leaderboard page is built from (``Page``): its aggregated numbers, the
published ones that are comparable (same network), footnotes, sources, CSV rows; and how its
rows are ordered and flagged."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ipbench.metrics.health import FLAGGED_METRICS, run_warnings
from ipbench.report.compare import protects
from ipbench.report.leaderboard.aggregate import cell, fmt, meaning
from ipbench.report.leaderboard.collect import Collected
from ipbench.report.leaderboard.reference import ANY_MODEL, published
from ipbench.report.leaderboard.table import Cell, Column, Table

HEADLINE = "A_pd"  # the metric rows are ordered by (highest first)


def headline(attack: str, rows: pd.DataFrame) -> str | None:
    """The attack stage's headline metric: the lowest headline rank the store records for its
    metrics, then A_ud, then the first plain one. (Rows stored before metrics carried a rank
    fall back to the attack class's declaration.)"""
    plain = rows[~rows.name.str.contains("@") & (rows.name != "skipped")]
    ranked = [
        (int(sp.get("headline", 0)), n) for n, sp in zip(plain.name, plain.spec, strict=True)
        if isinstance(sp, dict) and sp.get("headline")
    ]  # fmt: skip
    if ranked:
        return min(ranked)[1]
    names = list(plain.name.drop_duplicates())
    for cand in (*_declared_headlines(attack), "A_ud"):
        if cand in names:
            return cand
    return names[0] if names else None


def _declared_headlines(attack: str) -> tuple[str, ...]:
    from ipbench.core.registry import attacks
    from ipbench.engine.request import attack_of_stage

    attack = attack_of_stage(attack)  # a variant's stage, attack:NAME(settings)

    if attack not in attacks:
        return ()
    return attacks.get(attack).headline_names()


def column(agg: pd.DataFrame, name: str, metric: str, paper: bool = False) -> Column:
    """A header for ``metric`` with its better direction, as the store describes it."""
    specs = [sp for sp in agg[agg.name == metric].spec if isinstance(sp, dict)]
    return Column(name, meaning(metric, specs[0] if specs else None).better, paper)


@dataclass
class Page:
    """What one page is built from, and the rows of its CSV.

    ``models`` is the network each scheme's runs used: a published value sits beside a
    measured one only when the paper's model (``reference.csv``'s ``model``) is the same, or
    is ``any`` (a figure that does not depend on the network, e.g. a capacity); the others are
    listed apart (``other``), never in a ``(paper)`` column.
    """

    dataset: str
    preset: str
    agg: pd.DataFrame  # aggregate() over the default-configuration runs
    ref: pd.DataFrame
    models: dict[str, str] = field(default_factory=dict)
    flags: dict[str, list[str]] = field(default_factory=dict)
    footnotes: list[str] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    csv_rows: list[dict[str, object]] = field(default_factory=list)
    other: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def foot(self, text: str) -> int:
        if text not in self.footnotes:
            self.footnotes.append(text)
        return self.footnotes.index(text) + 1

    def value(self, scheme: str, stage: str, metric: str) -> pd.Series | None:
        a = self.agg
        hit = a[(a.scheme == scheme) & (a.stage == stage) & (a.name == metric)]
        return hit.iloc[0] if len(hit) else None

    def comparable(self, scheme: str, metric: str) -> pd.Series | None:
        """The published row for ``metric`` if the paper measured it on this page's model for
        ``scheme`` (else it is recorded in ``other`` and None is returned)."""
        row = published(self.ref, scheme, self.dataset, metric)
        if row is None:
            return None
        ours = self.models.get(scheme, "")
        if row["model"] == ANY_MODEL or (ours and row["model"] == ours):
            self.sources.add(row["source"])
            return row
        self.other[(scheme, metric)] = {
            "scheme": scheme, "metric": metric, "value": float(row["value"]),
            "paper_model": row["model"] or "not stated", "model": ours or "several",
            "source": row["source"],
        }  # fmt: skip
        return None

    def paper(self, scheme: str, metric: str) -> Cell:
        row = self.comparable(scheme, metric)
        if row is None:
            return Cell()
        text = fmt(metric, float(row["value"]), self.spec(scheme, metric))
        return Cell(text, float(row["value"]), source=str(row["source"]))

    def spec(self, scheme: str, metric: str) -> dict | None:
        """How the store describes ``metric`` (of any stage) for ``scheme``, for printing a
        published value the same way as the measured one."""
        a = self.agg
        hit = a[(a.scheme == scheme) & (a.name == metric.split(":")[-1])]
        specs = [sp for sp in hit.spec if isinstance(sp, dict)]
        return specs[0] if specs else None

    def column(self, name: str, metric: str, paper: bool = False) -> Column:
        return column(self.agg, name, metric, paper)

    def measured(self, block: str, scheme: str, stage: str, metric: str, ref_key: str) -> Cell:
        """The cell, recording the CSV row on the way."""
        row = self.value(scheme, stage, metric)
        pub = self.comparable(scheme, ref_key)
        if row is None and pub is None:
            return Cell()
        self.csv_rows.append({
            "dataset": self.dataset, "preset": self.preset, "block": block, "scheme": scheme,
            "variant": "default", "metric": ref_key,
            "mean": None if row is None or row["n"] == 0 else row["mean"],
            "std": None if row is None or row["n"] < 2 else row["std"],
            "n": 0 if row is None else int(row["n"]), "note": "" if row is None else row["note"],
            "published": None if pub is None else pub["value"],
            "source": "" if pub is None else pub["source"],
        })  # fmt: skip
        if row is None:
            return Cell()
        runs = tuple(row["runs"]) if isinstance(row["runs"], tuple) else ()
        if row["n"] == 0 and row["note"]:
            return Cell(f"missing: {row['note']}", None, runs, stage)
        text = cell(metric, row["mean"], row["std"], int(row["n"]), row["spec"])
        return Cell(text, None if row["n"] == 0 else float(row["mean"]), runs, stage)

    def table(self, columns: list[Column], schemes: list[str], rows: list[list[Cell]]) -> Table:
        """A table with one row per scheme, its flagged rows marked."""
        flags = {i: self.flags[s] for i, s in enumerate(schemes) if s in self.flags}
        return Table(columns, rows, flags)


def page_data(
    col: Collected, agg_all: pd.DataFrame, ref: pd.DataFrame, dataset: str, preset: str
) -> Page:
    """What a (dataset, preset) page reads: the default-configuration aggregate and the network
    each scheme's default runs used (``""`` where they differ)."""
    default_runs = col.runs[col.runs["default"]]
    models = {
        s: (g.iloc[0] if len(set(g)) == 1 else "")
        for s, g in default_runs.groupby("scheme")["model"]
    }
    return Page(dataset, preset, agg_all[agg_all.variant == "{}"], ref, models)


def ranked(page: Page, schemes: list[str]) -> list[str]:
    """Schemes by the headline metric (mean ``A_pd``, highest first), then those without it,
    by name."""

    def key(s: str) -> tuple[int, float, str]:
        row = page.value(s, "evaluate", HEADLINE)
        if row is None or row["n"] == 0 or math.isnan(row["mean"]):
            return (1, 0.0, s)
        return (0, -float(row["mean"]), s)

    return sorted(schemes, key=key)


def seed_ties(page: Page, schemes: list[str], metric: str = "A_pd") -> list[tuple[str, str]]:
    """Adjacent schemes of ``schemes`` (in table order) whose mean ``metric`` differ by no more
    than the larger of their standard deviations over seeds: the seeds do not resolve their
    order. Only schemes with two seeds or more can tie."""
    rows = [(s, page.value(s, "evaluate", metric)) for s in schemes]
    ties = []
    for (a, ra), (b, rb) in itertools.pairwise(rows):
        if ra is None or rb is None or min(int(ra["n"]), int(rb["n"])) < 2:
            continue
        if abs(float(ra["mean"]) - float(rb["mean"])) <= max(float(ra["std"]), float(rb["std"])):
            ties.append((a, b))
    return ties


def flagged(page: Page, schemes: list[str]) -> dict[str, list[str]]:
    """Schemes whose mean results fail ``ipbench.metrics.health``'s rule (no lock, no tracing, or a
    protected model that did not learn the task); the
    unprotected control (``Scheme.protects`` false) protects nothing by design and is never
    flagged."""
    out = {}
    for s in schemes:
        if not protects(s):
            continue
        means = {}
        for m in FLAGGED_METRICS:
            row = page.value(s, "evaluate", m)
            if row is not None and row["n"] > 0:
                means[m] = float(row["mean"])
        if found := run_warnings(means):
            out[s] = found
    return out
