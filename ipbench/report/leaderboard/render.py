"""One (dataset, preset) as tables: Table I, Table III, robustness, capacity and overhead
blocks, each measured column beside the published one where the paper used the same model,
with provenance. ``render`` returns the page as data (``Rendered``); its markdown and CSV are
written by ``build``, its HTML by ``ipbench.report.leaderboard.site``.

Rows are ordered by the page's headline metric, ``A_pd`` (what an authorized user keeps over
an unauthorized one), highest first; schemes without it follow by name. A scheme whose
protection or identity tracing did not take (``ipbench.metrics.health``) is flagged on its rows."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pandas as pd

from ipbench.report.leaderboard.aggregate import cell, fmt
from ipbench.report.leaderboard.collect import Collected, attack_stage, settings_text
from ipbench.report.leaderboard.notes import attack_names, control_notes, row_notes
from ipbench.report.leaderboard.page import (
    Page,
    column,
    flagged,
    headline,
    page_data,
    ranked,
    seed_ties,
)
from ipbench.report.leaderboard.runs import provenance, runs_table
from ipbench.report.leaderboard.table import Cell, Column, Table, label

__all__ = ["Rendered", "Section", "headline", "provenance", "render"]

ACCURACY = ("A_or", "A_ad", "A_ud", "A_od", "A_pd")
STEALTH = ("PSNR", "SSIM", "ERGAS", "LPIPS")
# the views a scheme's StealthViews add (ipbench.plugin.capabilities); plain names are the
# classifier's view
VIEWS = {
    "token": "at the token's own size, against the image the token was added to (up(x) for "
    "a token made at 224 px: the paper's view)",
    "reference": "both images of the token view through Resize(36) + CenterCrop(32), as the "
    "reference code's tests/stealthiness_test.py (the convention of the paper's Table III)",
}
STEALTH_VIEWS = STEALTH + tuple(f"{m}@{v}" for v in VIEWS for m in STEALTH)
TRACING = ("A_dec_raw", "A_dec", "id_rate", "bch_failures")
CAPACITY = ("capacity", "capacity_published", "capacity_used", "users_evaluated")
OVERHEAD = (
    "params", "params_base", "flops", "flops_base", "peak_act_bytes", "peak_act_bytes_base",
    "latency_ms", "latency_ms_base", "credential_ms", "credential_flops", "decrypt_ms",
)  # fmt: skip
CSV_COLUMNS = [
    "dataset", "preset", "block", "scheme", "variant", "metric", "mean", "std", "n", "note",
    "published", "source",
]  # fmt: skip


def _block(page: Page, name: str, schemes: list[str], metrics: tuple[str, ...]) -> Table | None:
    """Rows per scheme, each metric followed by its published value (columns without any
    measured or published value are left out)."""
    cols = []
    for metric in metrics:
        vals = {s: page.measured(name, s, "evaluate", metric, metric) for s in schemes}
        pubs = {s: page.paper(s, metric) for s in schemes}
        if any(c.text for c in vals.values()) or any(c.text for c in pubs.values()):
            cols.append((metric, vals, pubs))
    if not cols:
        return None
    # A "(paper)" column only where some scheme has a comparable published value.
    header, rows = [Column("scheme")], [[label(s)] for s in schemes]
    for metric, vals, pubs in cols:
        with_paper = any(c.text for c in pubs.values())
        header.append(page.column(metric, metric))
        if with_paper:
            header.append(page.column(f"{metric} (paper)", metric, paper=True))
        for s, row in zip(schemes, rows, strict=True):
            row += [vals[s], pubs[s]] if with_paper else [vals[s]]
    return page.table(header, schemes, rows)


def robustness(page: Page, schemes: list[str]) -> Table | None:
    a = page.agg
    names = attack_names(a)
    if not names:
        return None
    header, rows = [Column("scheme")], [[label(s)] for s in schemes]
    for attack in names:
        stage = attack_stage(attack)
        head = headline(attack, a[a.stage == stage])
        pubs = [page.paper(s, f"{attack}:{head}") if head else Cell() for s in schemes]
        header.append(page.column(f"{attack}: {head or '-'}", head or ""))
        if any(c.text for c in pubs):
            header.append(page.column("(paper)", head or "", paper=True))
        for s, row, pub in zip(schemes, rows, pubs, strict=True):
            sub = a[(a.scheme == s) & (a.stage == stage)]
            if len(sub) and (sub.status == "skipped").all():
                reason = sub.note.iloc[0].removeprefix("skipped: ") or "skipped"
                runs = sub.runs.iloc[0] if isinstance(sub.runs.iloc[0], tuple) else ()
                row.append(
                    Cell("n/a", None, runs, stage, foot=page.foot(f"{attack} on {s}: {reason}"))
                )
            elif not len(sub):  # never a silent blank: the runs behind this row lack it
                row.append(Cell("not run"))
            elif head:
                row.append(page.measured("robustness", s, stage, head, f"{attack}:{head}"))
            else:
                row.append(Cell())
            if any(c.text for c in pubs):
                row.append(pub)
    return page.table(header, schemes, rows)


def attack_points(page: Page, schemes: list[str]) -> Table | None:
    """Every comparable published attack number (curve points, variants) beside the measured
    one."""
    ref = page.ref[page.ref.dataset.isin([page.dataset]) & page.ref.metric.str.contains(":")]
    rows = []
    for _, r in ref.sort_values(["scheme", "metric"]).iterrows():
        if r.scheme not in schemes or page.comparable(r.scheme, r.metric) is None:
            continue
        attack, metric = r.metric.split(":", 1)
        got = page.measured("attack-points", r.scheme, attack_stage(attack), metric, r.metric)
        spec = page.spec(r.scheme, metric)
        if not got.text:
            got = Cell("not run")
        paper = Cell(fmt(metric, r.value, spec), float(r.value), source=str(r.source))
        rows.append([label(r.scheme), label(r.metric), got, paper, label(str(r.source))])
    if not rows:
        return None
    columns = [Column("scheme"), Column("attack:metric"), Column("measured"),
               Column("paper", paper=True), Column("source")]  # fmt: skip
    return Table(columns, rows)


def capacity(page: Page, schemes: list[str]) -> Table:
    rows = []
    for s in schemes:
        vals = [page.measured("capacity", s, "evaluate", m, m) for m in CAPACITY]
        pubs = [page.paper(s, m) for m in ("capacity", "capacity_published")]
        note = page.value(s, "evaluate", "capacity_note")
        theo = vals[0] if vals[0].text else vals[1]
        demo = vals[2] if vals[2].text else vals[3]
        pub = pubs[0] if pubs[0].text else pubs[1]
        rows.append([label(s), theo, pub, demo, label("" if note is None else note["note"])])
    header = [
        Column("scheme"),
        page.column("capacity (theoretical)", "capacity"),
        page.column("(paper)", "capacity", paper=True),
        Column("demonstrated (users evaluated)"),
        Column("note"),
    ]
    return page.table(header, schemes, rows)


def other_models(page: Page) -> Table | None:
    """Published numbers the paper measured on another network than this page's runs."""
    if not page.other:
        return None
    rows = []
    for (scheme, metric), o in sorted(page.other.items()):
        spec = page.spec(scheme, metric)
        value = Cell(fmt(metric.split(":")[-1], float(o["value"]), spec), o["value"],
                     source=str(o["source"]))  # fmt: skip
        rows.append([label(scheme), label(metric), value, label(str(o["paper_model"])),
                     label(str(o["model"])), label(str(o["source"]))])  # fmt: skip
    columns = [Column("scheme"), Column("metric"), Column("paper", paper=True),
               Column("paper's model"), Column("model here"), Column("source")]  # fmt: skip
    return Table(columns, rows)


def sweeps(col: Collected, agg_all: pd.DataFrame) -> Table | None:
    """Runs that differ from the default configuration, grouped by the fields they change:
    accuracy and, where any variant has it, PSNR in each stealthiness view."""
    var = col.runs[~col.runs["default"]]
    if var.empty:
        return None
    wanted = ("A_ad", "A_ud", "A_od", "A_pd", *(f"PSNR@{v}" if v else "PSNR" for v in ("", *VIEWS)))
    groups = list(var.groupby(["scheme", "variant"], sort=True))
    ev = agg_all[agg_all.stage == "evaluate"]
    keys = {k for k, _ in groups}
    found: dict[tuple[str, str, str], pd.Series] = {}
    for _, r in ev[ev["name"].isin(wanted)].iterrows():  # r.name would be the row's index
        if (r["scheme"], r["variant"]) in keys:
            found.setdefault((r["scheme"], r["variant"], r["name"]), r)
    metrics = [m for m in wanted if m.startswith("A_") or any(k[2] == m for k in found)]
    rows = []
    for (scheme, v), _ in groups:
        cells = [label(scheme), label(settings_text(json.loads(v)))]
        for m in metrics:
            r = found.get((scheme, v, m))
            if r is None:
                cells.append(Cell("–"))
                continue
            value = float(r["mean"]) if r["n"] else None
            text = cell(m, r["mean"], r["std"], int(r["n"]), r["spec"])
            cells.append(Cell(text, value, tuple(r["runs"]), "evaluate"))
        rows.append(cells)
    columns = [Column("scheme"), Column("setting"), *(column(agg_all, m, m) for m in metrics)]
    return Table(columns, rows)


@dataclass
class Section:
    """A heading, paragraphs (inline markdown), a table, paragraphs after it."""

    title: str
    before: list[str] = field(default_factory=list)
    table: Table | None = None
    after: list[str] = field(default_factory=list)
    level: int = 2

    def markdown(self) -> str:
        parts = [f"{'#' * self.level} {self.title}", *self.before]
        parts += [self.table.markdown()] if self.table else []
        return "\n\n".join(parts + self.after)


@dataclass
class Rendered:
    """One (dataset, preset) page as data: the markdown and HTML views read the same."""

    dataset: str
    preset: str
    provenance: list[str]
    intro: list[str]
    sections: list[Section]
    figures: list[tuple[str, str]]
    sources: list[str]
    footnotes: list[str]
    table: pd.DataFrame  # the CSV
    flags: dict[str, list[str]]

    @property
    def title(self) -> str:
        return f"ipbench leaderboard: {self.dataset}, preset {self.preset}"

    def markdown(self) -> str:
        parts = [f"# {self.title}", "\n".join(f"- {line}" for line in self.provenance)]
        parts += self.intro + [s.markdown() for s in self.sections]
        if self.figures:
            parts += ["## Figures", "\n".join(f"![{t}]({p})" for t, p in self.figures)]
        if self.sources:
            parts += ["## Sources", "\n".join(f"- {s}" for s in self.sources)]
        if self.footnotes:
            parts += ["\n".join(f"[^{i}]: {t}" for i, t in enumerate(self.footnotes, 1))]
        return "\n\n".join(p for p in parts if p) + "\n"


ORDER_NOTE = (
    "Rows are ordered by mean `A_pd` (accuracy an authorized user keeps over an unauthorized "
    "one), highest first; ↑/↓ mark the direction that is better for the protection (→ 0: closest "
    "to zero is best). A "
    "⚠ marks a scheme whose protection or identity tracing did not take, or whose protected "
    "model did not learn the task (A_ad under half of A_or)."
)


def render(
    col: Collected, agg_all: pd.DataFrame, ref: pd.DataFrame, dataset: str, preset: str,
    figures: list[tuple[str, str]],
) -> Rendered:  # fmt: skip
    """The page for one (dataset, preset)."""
    page = page_data(col, agg_all, ref, dataset, preset)
    default_runs = col.runs[col.runs["default"]]
    page.flags = flagged(page, sorted(set(default_runs["scheme"])))
    schemes = ranked(page, sorted(set(default_runs["scheme"])))
    input_space = [
        s for s in schemes if any(page.value(s, "evaluate", m) is not None for m in STEALTH)
    ]
    intro = [
        "Cells are mean ± std over seeds (one seed: the value). `(paper)` columns are the "
        "published numbers from `ipbench/report/leaderboard/reference.csv`, shown only where the paper "
        "used the same network as these runs (published numbers on other networks are listed "
        "apart); the paper's recipes differ from a reduced preset's.",
        ORDER_NOTE,
    ]
    labels = sorted(set(col.runs.get("import_label", [])) - {""})
    intro += [f"**Imported rows, labelled:** {label}." for label in labels]
    accuracy = _block(page, "accuracy", schemes, ACCURACY)
    sections = [Section("Accuracy (Table I)", table=accuracy)]
    ties = seed_ties(page, schemes)
    if accuracy is not None and ties:
        at = next(i for i, c in enumerate(accuracy.columns) if c.title.startswith("A_pd"))
        for tied in {s for pair in ties for s in pair}:
            row = accuracy.rows[schemes.index(tied)]
            row[at] = dataclasses.replace(row[at], text=f"{row[at].text} ≈")
        sections[0].after.append(
            "≈: `A_pd` within one standard deviation (over seeds) of an adjacent row's ("
            + "; ".join(f"`{a}` and `{b}`" for a, b in ties)
            + "): these seeds do not resolve the order of those rows."
        )
    sections[0].after += [f"**Note on {n}" for n in row_notes(dataset, schemes)]
    if page.flags:
        sections[0].after.append(
            "**Warning:** "
            + "; ".join(f"`{s}`: {', '.join(w)}" for s, w in page.flags.items())
            + ". Their rows are not results about the scheme until this is explained."
        )
    stealth = _block(page, "stealthiness", input_space, STEALTH_VIEWS)
    titles = [c.title for c in stealth.columns] if stealth else []
    shown = {t.split("@")[1].split(" ")[0] for t in titles if "@" in t}
    views = [
        "Plain columns are the classifier's view: what the network reads for an authorized "
        "query against the user's own image. "
        + " ".join(f"`@{v}`: {VIEWS[v]}." for v in VIEWS if v in shown)
        + " `(paper)` columns stand beside the classifier's view whatever view the paper "
        "measured in; a paper whose tokens are made at 224 px measured in the reference view."
    ] if shown else []  # fmt: skip
    sections.append(Section("Stealthiness (Table III)", table=stealth,
                            before=views if stealth else ["No input-space scheme ran."]))  # fmt: skip
    tracing = [s for s in schemes if page.value(s, "evaluate", "id_rate") is not None]
    if tracing:
        sections.append(Section(
            "Identity tracing",
            ["Bits read back from authorized test images of users never seen in training: "
             "`A_dec_raw` before and `A_dec` after BCH correction (message bits), `id_rate` the "
             "share of identities decoded exactly, `bch_failures` the share BCH could not "
             "correct."],
            _block(page, "tracing", tracing, TRACING),
        ))  # fmt: skip
    rob = robustness(page, schemes)
    control = control_notes(page, schemes)
    sections.append(Section("Robustness", [] if rob else ["No attack stages in the store yet."],
                            rob, [f"**Control:** {n}" for n in control]))  # fmt: skip
    points = attack_points(page, schemes)
    if points:
        sections.append(Section("Published attack numbers", table=points, level=3))
    sections.append(Section("User capacity", table=capacity(page, schemes)))
    sections.append(Section(
        "Overhead (Table X)",
        ["Per 1-image query of the authorized path; `_base` is the unprotected model; FLOPs "
         "count 2 per multiply-add (the paper's FLOPs are multiply-adds)."],
        _block(page, "overhead", schemes, OVERHEAD),
    ))  # fmt: skip
    others = other_models(page)
    if others:
        sections.append(Section(
            "Published numbers on other networks",
            ["Not comparable with the measured rows above: the paper measured them on another "
             "network (or did not say which) than these runs used."],
            others,
        ))  # fmt: skip
    sweep = sweeps(col, agg_all)
    if sweep:
        sections.append(Section(
            "Sweeps",
            ["Runs that differ from the current default in the settings named (a run stored "
             "before a setting existed counts with its class default, e.g. "
             "`protect_epochs=None`: the preset's epochs); they feed the plots, not the tables "
             "above. PSNR columns are the views of the stealthiness section (plain: the "
             "classifier's)."],
            sweep,
        ))  # fmt: skip
    sections.append(Section("Runs", table=runs_table(col)))
    table = pd.DataFrame(page.csv_rows, columns=CSV_COLUMNS)
    for o in page.other.values():
        table.loc[len(table)] = {
            "dataset": dataset, "preset": preset, "block": "other-models", "scheme": o["scheme"],
            "variant": "default", "metric": o["metric"], "mean": None, "std": None, "n": 0,
            "note": f"paper's model {o['paper_model']}; model here {o['model']}",
            "published": o["value"], "source": o["source"],
        }  # fmt: skip
    table = table.drop_duplicates()
    table = table.sort_values(["block", "scheme", "metric"], kind="stable", ignore_index=True)
    return Rendered(
        dataset, preset, provenance(col, preset), intro, sections, figures,
        sorted(page.sources), page.footnotes, table, page.flags,
    )  # fmt: skip
