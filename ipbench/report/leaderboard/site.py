"""The leaderboard as a static HTML site: an index, one page per (dataset, preset) and one page
per run (every stage and metric), each number on a page linked to the runs it comes from.

Jinja2 with autoescape writes the pages (every string from the store is escaped); the small
inline markdown of the page text (code spans, bold) goes through markdown-it with raw HTML
off. Sorting is a short script shipped beside the pages (``static/sortable.js``), so the site
works from ``file://`` with no network.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ipbench.metrics.health import run_warnings
from ipbench.report.leaderboard.aggregate import meaning
from ipbench.report.leaderboard.collect import Collected, settings_text
from ipbench.report.leaderboard.render import Rendered
from ipbench.report.leaderboard.runs import wall_seconds

STATIC = ("ipbench.css", "sortable.js")


def anchor(text: str) -> str:
    """An id for a heading or a stage: ``attack:fake-token`` -> ``attack-fake-token``."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "section"


@cache
def _env() -> Environment:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False})
    env = Environment(
        loader=PackageLoader("ipbench.report.leaderboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = lambda text: Markup(md.renderInline(str(text)))
    env.filters["anchor"] = anchor
    return env


def _write(path: Path, template: str, **context: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_env().get_template(template).render(**context), encoding="utf-8")
    return path


def write_static(out: Path) -> None:
    """The stylesheet and the sorting script, beside the pages."""
    folder = out / "static"
    folder.mkdir(parents=True, exist_ok=True)
    for name in STATIC:
        text = (
            files("ipbench.report.leaderboard")
            .joinpath("static")
            .joinpath(name)
            .read_text(encoding="utf-8")
        )
        (folder / name).write_text(text, encoding="utf-8")


@dataclass
class Summary:
    """One row of the index."""

    stem: str
    dataset: str
    preset: str
    setting: str
    schemes: str
    runs: int
    models: str
    commits: str
    dates: str


def write_page(
    out: Path, stem: str, page: Rendered, col: Collected, configs: dict[str, dict]
) -> Summary:
    """``<stem>.html`` and ``<stem>/runs/<run_id>.html`` for every kept run."""
    seeds = {str(r.run_id): int(r.seed) for r in col.runs.itertuples()}
    _write(out / f"{stem}.html", "page.html", title=page.title, root="", page=page, stem=stem,
           seeds=seeds)  # fmt: skip
    wall = wall_seconds(col)
    for r in col.runs.itertuples():
        write_run(out / stem / "runs" / f"{r.run_id}.html", stem, r, col, configs, wall)
    runs = col.runs
    dates = sorted(runs["date"])
    return Summary(
        stem, page.dataset, page.preset,
        "reduced CPU setting" if runs["reduced"].any() else "paper recipe",
        ", ".join(sorted(set(runs["scheme"]))), len(runs), ", ".join(sorted(set(runs["model"]))),
        ", ".join(sorted(set(runs["commit"]))), f"{dates[0]} to {dates[-1]}" if dates else "-",
    )  # fmt: skip


def _in_store(artifact: object) -> object:
    """``/any/machine/wd/artifacts/evaluate/KEY`` -> ``artifacts/evaluate/KEY``: where the stage
    lies in its store, not on the machine that drew the page (a committed board must not name
    one machine's folders, and regenerates the same from a bundle anywhere)."""
    if not isinstance(artifact, str) or "artifacts/" not in artifact:
        return artifact
    return "artifacts/" + artifact.rsplit("artifacts/", 1)[1]


def _metric_rows(metrics: pd.DataFrame) -> list[tuple[str, list[dict[str, Any]]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in metrics.itertuples():
        desc = meaning(str(m.name), m.spec if isinstance(m.spec, dict) else None)
        value = None if m.value is None or pd.isna(m.value) else float(m.value)
        out.setdefault(str(m.stage), []).append({
            "name": m.name, "value": value, "text": desc.format(value), "unit": desc.unit,
            "better": "" if desc.better == "neither" else desc.better,
            "note": m.note if isinstance(m.note, str) else "",
        })  # fmt: skip
    return list(out.items())


def write_run(
    path: Path, stem: str, run: Any, col: Collected, configs: dict[str, dict],
    wall: dict[str, float],
) -> Path:  # fmt: skip
    """A run's page: what it is, where it came from, each stage with its wall time and every
    metric it recorded, and its configuration."""
    metrics = col.metrics[col.metrics.run_id == run.run_id]
    evaluate = metrics[(metrics.stage == "evaluate") & metrics.value.notna()]
    warnings = run_warnings(dict(zip(evaluate.name, evaluate.value.astype(float), strict=True)))
    secs = wall.get(run.run_id)
    facts = [
        ("scheme", run.scheme), ("dataset", run.dataset), ("model", run.model),
        ("preset", f"{run.preset} ({'reduced CPU setting' if run.reduced else 'paper recipe'})"),
        ("seed", run.seed), ("setting", settings_text(json.loads(run.variant)) or "default"),
        ("git commit", run.commit), ("ipbench version", run.version),
        ("hardware", run.hardware), ("date", run.date),
        ("wall time", "–" if secs is None else f"{secs:.1f} s (sum of stage times)"),
    ]  # fmt: skip
    st = col.stages[col.stages.run_id == run.run_id]
    stages = [
        {"stage": s.stage, "status": s.status, "cached": bool(s.cached),
         "wall": None if pd.isna(s.wall_s) else float(s.wall_s),
         "artifact": _in_store(s.artifact)}
        for s in st.itertuples()
    ]  # fmt: skip
    config = json.dumps(configs.get(run.run_id, {}), indent=2, sort_keys=True, default=str)
    return _write(path, "run.html", title=f"ipbench run {run.run_id}", root="../../", run=run,
                  stem=stem, facts=facts, stages=stages, metrics=_metric_rows(metrics),
                  warnings=warnings, config=config)  # fmt: skip


def write_summary(out: Path, stem: str, page: Rendered) -> tuple[str, str]:
    """``<stem>.html`` for a page across datasets (its cells link to no run: each dataset's
    page does); (stem, title) for the index."""
    _write(out / f"{stem}.html", "page.html", title=page.title, root="", page=page, stem=stem,
           seeds={})  # fmt: skip
    return stem, page.title


def write_index(
    out: Path, pages: list[Summary], summaries: list[tuple[str, str]] | None = None
) -> Path:
    """``index.html``: every page of the site (and the pages across datasets)."""
    write_static(out)
    return _write(out / "index.html", "index.html", title="ipbench leaderboard", root="",
                  pages=sorted(pages, key=lambda p: (p.dataset, p.preset)),
                  summaries=summaries or [])  # fmt: skip
