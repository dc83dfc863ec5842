"""Store -> ``leaderboard/<dataset>-<preset>.md`` + ``.csv`` + ``.html`` + figures, for every
(dataset, preset) in the store (or the one asked for), an ``index.html`` over them and one HTML
page per run."""

from __future__ import annotations

from pathlib import Path

from ipbench.core.errors import IpbenchError
from ipbench.report.leaderboard.across import DatasetPart, across
from ipbench.report.leaderboard.across import stem as across_stem
from ipbench.report.leaderboard.aggregate import aggregate
from ipbench.report.leaderboard.collect import Collected, collect
from ipbench.report.leaderboard.page import page_data
from ipbench.report.leaderboard.plots import make_plots
from ipbench.report.leaderboard.reference import load_reference
from ipbench.report.leaderboard.render import render
from ipbench.report.leaderboard.site import Summary, write_index, write_page, write_summary
from ipbench.store.cache import require_folder
from ipbench.store.results import Store


def build(
    workdir: str | Path, out: str | Path = "leaderboard", dataset: str | None = None,
    preset: str | None = None, reference: str | Path | None = None, data_root: str | None = None,
    tokens: bool = True, problems: list[str] | None = None,
) -> list[Path]:  # fmt: skip
    """Write one markdown, CSV and HTML page per (dataset, preset) and the site's index;
    returns the markdown paths (each with its ``.csv`` and ``.html`` beside it). Rows that do
    not verify under the store's owner key are left out, named on each page and appended to
    ``problems``."""
    from ipbench.report.leaderboard.gallery import gallery

    store_file = Path(workdir) / "ipbench.sqlite"
    if not store_file.exists():
        raise IpbenchError(f"no result store at {store_file}; run `ipbench run` first")
    ref = load_reference(reference)
    require_folder(Path(out), "leaderboard --out folder")
    store = Store(workdir, create=False)
    everything = collect(store, dataset, preset)
    if everything.runs.empty:
        what = " ".join(x for x in (dataset, preset) if x) or "any dataset"
        raise IpbenchError(f"no finished run for {what} in {store_file}")
    out = Path(out)
    written = []
    summaries: list[Summary] = []
    parts: dict[str, list[DatasetPart]] = {}  # preset -> its datasets' pages
    pairs = (
        everything.runs[["dataset", "preset"]].drop_duplicates().sort_values(["dataset", "preset"])
    )
    for ds, pr in pairs.itertuples(index=False):
        keep = (everything.runs.dataset == ds) & (everything.runs.preset == pr)
        runs = everything.runs[keep].reset_index(drop=True)
        col = Collected(
            runs,
            everything.metrics[everything.metrics.run_id.isin(runs.run_id)],
            everything.ignored[everything.ignored.run_id.isin(_ids(store, ds, pr))],
            everything.stages[everything.stages.run_id.isin(runs.run_id)],
        )
        agg = aggregate(col)
        stem = f"{ds}-{pr}"
        figures = make_plots(runs, agg, out / stem, ds, pr)
        notes: list[str] = []
        if tokens:
            path, notes = gallery(runs, store, ds, out / stem, data_root, pr)
            if path:
                figures.append(
                    ("token gallery: clean, authorized, |x_a - x| x10 (paper Figs. 3, 9)", path)
                )
        parts.setdefault(pr, []).append(DatasetPart(stem, page_data(col, agg, ref, ds, pr)))
        rel = [(t, p.relative_to(out).as_posix()) for t, p in figures]
        page = render(col, agg, ref, ds, pr, rel)
        notes += [
            f"**{'Left out' if p in store.refused else 'Not verified'}:** {p}"
            for p in store.problems
        ]
        md = page.markdown()
        if notes:
            md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
            page.intro.extend(notes)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.md").write_text(md)
        page.table.to_csv(
            out / f"{stem}.csv", index=False, float_format="%.6g", lineterminator="\n"
        )
        configs = {r: _config(store, r) for r in runs["run_id"]}
        summaries.append(write_page(out, stem, page, col, configs))
        written.append(out / f"{stem}.md")
    # Table I side by side, for every preset with pages on two datasets or more
    across_pages = []
    for pr, of_preset in sorted(parts.items()):
        if len(of_preset) < 2:
            continue
        summary, table = across(of_preset, pr)
        name = across_stem(pr)
        (out / f"{name}.md").write_text(summary.markdown())
        table.to_csv(out / f"{name}.csv", index=False, float_format="%.6g", lineterminator="\n")
        across_pages.append(write_summary(out, name, summary))
        written.append(out / f"{name}.md")
    write_index(out, summaries, across_pages)
    store.close()
    if problems is not None:
        problems.extend(store.problems)
    return written


def _config(store: Store, run_id: str) -> dict:
    rec = store.get_run(run_id, exact=True)
    return rec.config if rec else {}


def _ids(store: Store, dataset: str, preset: str) -> list[str]:
    return [r.run_id for r in store.list_runs() if r.dataset == dataset and r.preset == preset]
