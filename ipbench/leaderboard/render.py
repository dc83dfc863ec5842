"""Markdown and CSV for one (dataset, preset): Table I, Table III, robustness, capacity and
overhead blocks, each measured column beside the published one, with provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from ipbench.health import run_warnings
from ipbench.leaderboard.aggregate import cell, fmt
from ipbench.leaderboard.collect import Collected, settings_text
from ipbench.leaderboard.reference import published
from ipbench.registry import schemes

ACCURACY = ("A_or", "A_ad", "A_ud", "A_od", "A_pd")
STEALTH = ("PSNR", "SSIM", "ERGAS", "LPIPS")
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
    from ipbench.registry import attacks
    from ipbench.request import attack_of_stage

    attack = attack_of_stage(attack)  # a variant's stage, attack:NAME(settings)
    if attack not in attacks:
        return ()
    return attacks.get(attack).headline_names()


@dataclass
class Page:
    """What one markdown file is built from, and the rows of its CSV."""

    dataset: str
    preset: str
    agg: pd.DataFrame  # aggregate() over the default-configuration runs
    ref: pd.DataFrame
    footnotes: list[str] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    csv_rows: list[dict[str, object]] = field(default_factory=list)

    def foot(self, text: str) -> str:
        if text not in self.footnotes:
            self.footnotes.append(text)
        return f"[^{self.footnotes.index(text) + 1}]"

    def value(self, scheme: str, stage: str, metric: str) -> pd.Series | None:
        a = self.agg
        hit = a[(a.scheme == scheme) & (a.stage == stage) & (a.name == metric)]
        return hit.iloc[0] if len(hit) else None

    def paper(self, scheme: str, metric: str) -> str:
        row = published(self.ref, scheme, self.dataset, metric)
        if row is None:
            return ""
        self.sources.add(row["source"])
        return fmt(metric, float(row["value"]), self.spec(scheme, metric))

    def spec(self, scheme: str, metric: str) -> dict | None:
        """How the store describes ``metric`` (of any stage) for ``scheme``, for printing a
        published value the same way as the measured one."""
        a = self.agg
        hit = a[(a.scheme == scheme) & (a.name == metric.split(":")[-1])]
        specs = [sp for sp in hit.spec if isinstance(sp, dict)]
        return specs[0] if specs else None

    def measured(self, block: str, scheme: str, stage: str, metric: str, ref_key: str) -> str:
        """The cell text, recording the CSV row on the way."""
        row = self.value(scheme, stage, metric)
        pub = published(self.ref, scheme, self.dataset, ref_key)
        if row is None and pub is None:
            return ""
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
            return ""
        if row["n"] == 0 and row["note"]:
            return f"missing: {row['note']}"
        return cell(metric, row["mean"], row["std"], int(row["n"]), row["spec"])


def _table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


def _block(page: Page, name: str, schemes: list[str], metrics: tuple[str, ...]) -> str:
    """Rows per scheme, each metric followed by its published value (columns without any
    measured or published value are left out)."""
    cols = []
    for metric in metrics:
        vals = {s: page.measured(name, s, "evaluate", metric, metric) for s in schemes}
        pubs = {s: page.paper(s, metric) for s in schemes}
        if any(vals.values()) or any(pubs.values()):
            cols.append((metric, vals, pubs))
    if not cols:
        return ""
    # A "(paper)" column only where some scheme has a published value for the metric.
    header, rows = ["scheme"], [[s] for s in schemes]
    for metric, vals, pubs in cols:
        with_paper = any(pubs.values())
        header += [metric, f"{metric} (paper)"] if with_paper else [metric]
        for s, row in zip(schemes, rows, strict=True):
            row += [vals[s], pubs[s]] if with_paper else [vals[s]]
    return _table(header, rows)


def robustness(page: Page, schemes: list[str]) -> str:
    a = page.agg
    names = sorted({s.split(":", 1)[1] for s in a.stage if s.startswith("attack:")})
    if not names:
        return "No attack stages in the store yet."
    header, rows = ["scheme"], [[s] for s in schemes]
    for attack in names:
        stage = f"attack:{attack}"
        head = headline(attack, a[a.stage == stage])
        pubs = [page.paper(s, f"{attack}:{head}") if head else "" for s in schemes]
        header += [f"{attack}: {head or '-'}"] + (["(paper)"] if any(pubs) else [])
        for s, row, pub in zip(schemes, rows, pubs, strict=True):
            sub = a[(a.scheme == s) & (a.stage == stage)]
            if len(sub) and (sub.status == "skipped").all():
                reason = sub.note.iloc[0].removeprefix("skipped: ") or "skipped"
                row.append("n/a" + page.foot(f"{attack} on {s}: {reason}"))
            elif head:
                row.append(page.measured("robustness", s, stage, head, f"{attack}:{head}"))
            else:
                row.append("")
            if any(pubs):
                row.append(pub)
    return _table(header, rows)


def attack_points(page: Page, schemes: list[str]) -> str:
    """Every published attack number (curve points, variants) beside the measured one."""
    ref = page.ref[page.ref.dataset.isin([page.dataset]) & page.ref.metric.str.contains(":")]
    rows = []
    for _, r in ref.sort_values(["scheme", "metric"]).iterrows():
        if r.scheme not in schemes:
            continue
        attack, metric = r.metric.split(":", 1)
        got = page.measured("attack-points", r.scheme, f"attack:{attack}", metric, r.metric)
        page.sources.add(r.source)
        spec = page.spec(r.scheme, metric)
        rows.append([r.scheme, r.metric, got or "not run", fmt(metric, r.value, spec), r.source])
    if not rows:
        return ""
    return _table(["scheme", "attack:metric", "measured", "paper", "source"], rows)


def capacity(page: Page, schemes: list[str]) -> str:
    rows = []
    for s in schemes:
        vals = [page.measured("capacity", s, "evaluate", m, m) for m in CAPACITY]
        pubs = [page.paper(s, m) for m in ("capacity", "capacity_published")]
        note = page.value(s, "evaluate", "capacity_note")
        theo = vals[0] or vals[1]
        demo = vals[2] or vals[3]
        rows.append([s, theo, pubs[0] or pubs[1], demo, "" if note is None else note["note"]])
    header = [
        "scheme",
        "capacity (theoretical)",
        "(paper)",
        "demonstrated (users evaluated)",
        "note",
    ]
    return _table(header, rows)


def flagged(page: Page, schemes: list[str]) -> dict[str, list[str]]:
    """Schemes whose mean protection or tracing did not take (``ipbench.health``'s rule)."""
    out = {}
    for s in schemes:
        means = {}
        for m in ("A_pd", "id_rate"):
            row = page.value(s, "evaluate", m)
            if row is not None and row["n"] > 0:
                means[m] = float(row["mean"])
        if found := run_warnings(means):
            out[s] = found
    return out


def sweeps(col: Collected, agg_all: pd.DataFrame) -> str:
    """Runs that differ from the default configuration, grouped by the fields they change."""
    var = col.runs[~col.runs["default"]]
    if var.empty:
        return ""
    rows = []
    for (scheme, v), _ in var.groupby(["scheme", "variant"], sort=True):
        fields = settings_text(json.loads(v))
        cells = []
        for m in ("A_ad", "A_ud", "A_od", "A_pd"):
            hit = agg_all[(agg_all.scheme == scheme) & (agg_all.variant == v)
                          & (agg_all.stage == "evaluate") & (agg_all.name == m)]  # fmt: skip
            cells.append(cell(m, *hit[["mean", "std", "n", "spec"]].iloc[0]) if len(hit) else "–")
        rows.append([scheme, fields, *cells])
    return _table(["scheme", "setting", "A_ad", "A_ud", "A_od", "A_pd"], rows)


def provenance(col: Collected, preset: str) -> str:
    r = col.runs
    label = "reduced CPU setting" if r["reduced"].any() else "paper recipe"
    dates = sorted(r["date"])
    lines = [
        f"- preset: **{preset}** ({label})" if len(r) else f"- preset: **{preset}**",
        f"- seeds: {', '.join(str(s) for s in sorted(set(r['seed'])))}",
        f"- git commit(s): {', '.join(sorted(set(r['commit'])))}",
        f"- hardware: {'; '.join(sorted(set(r['hardware'])))}",
        f"- run dates: {dates[0]} to {dates[-1]}" if dates else "- run dates: -",
        f"- ipbench version(s): {', '.join(sorted(set(r['version'])))}",
        f"- runs: {len(r)} (the latest successful run per scheme, seed and configuration)",
    ]
    tuned = _preset_settings(r, preset)
    sets = [
        f"{s}: " + ", ".join(f"{k}={v}" for k, v in sorted(tuned[s].items()))
        for s in sorted(tuned) if tuned[s]
    ]  # fmt: skip
    if sets:
        lines.append(f"- scheme settings the preset sets: {'; '.join(sets)}")
    if len(col.ignored):
        gone = ", ".join(f"{x.run_id} ({x.scheme}, {x.status})" for x in col.ignored.itertuples())
        lines.append(f"- ignored (failed, interrupted or unfinished): {gone}")
    return "\n".join(lines)


def _preset_settings(runs: pd.DataFrame, preset: str) -> dict[str, dict]:
    """Per scheme, the values its own defaults for this preset set, as the latest run recorded
    them (runs stored before runs recorded them: the scheme class's declaration today)."""
    out: dict[str, dict] = {}
    for r in runs.sort_values(["updated", "run_id"]).itertuples():
        recorded = json.loads(r.preset_settings) if isinstance(r.preset_settings, str) else None
        if isinstance(recorded, dict):
            out[r.scheme] = recorded
        elif r.scheme not in out and r.scheme in schemes:
            out[r.scheme] = dict(schemes.get(r.scheme).preset_defaults.get(preset, {}))
    return out


def render(
    col: Collected, agg_all: pd.DataFrame, ref: pd.DataFrame, dataset: str, preset: str,
    figures: list[tuple[str, str]],
) -> tuple[str, pd.DataFrame]:  # fmt: skip
    """The markdown page and the CSV table for one (dataset, preset)."""
    agg = agg_all[agg_all.variant == "{}"]
    page = Page(dataset, preset, agg, ref)
    schemes = sorted(set(col.runs[col.runs["default"]]["scheme"]))
    input_space = [
        s for s in schemes if any(page.value(s, "evaluate", m) is not None for m in STEALTH)
    ]
    parts = [
        f"# ipbench leaderboard: {dataset}, preset {preset}",
        provenance(col, preset),
        "Cells are mean ± std over seeds (one seed: the value). `(paper)` columns are the "
        "published numbers from `ipbench/leaderboard/reference.csv`; their models and recipes differ "
        "from a reduced preset's.",
        "## Accuracy (Table I)", _block(page, "accuracy", schemes, ACCURACY),
    ]  # fmt: skip
    warnings = flagged(page, schemes)
    if warnings:
        parts += [
            "**Warning:** "
            + "; ".join(f"`{s}`: {', '.join(w)}" for s, w in warnings.items())
            + ". Their rows are not results about the scheme until this is explained."
        ]
    tracing = [s for s in schemes if page.value(s, "evaluate", "id_rate") is not None]
    parts += [
        "## Stealthiness (Table III)",
        _block(page, "stealthiness", input_space, STEALTH) or "No input-space scheme ran.",
    ]
    if tracing:
        parts += [
            "## Identity tracing",
            "Bits read back from authorized test images of users never seen in training: "
            "`A_dec_raw` before and `A_dec` after BCH correction (message bits), `id_rate` the "
            "share of identities decoded exactly, `bch_failures` the share BCH could not correct.",
            _block(page, "tracing", tracing, TRACING),
        ]
    parts += ["## Robustness", robustness(page, schemes)]
    points = attack_points(page, schemes)
    if points:
        parts += ["### Published attack numbers", points]
    parts += ["## User capacity", capacity(page, schemes)]
    parts += [
        "## Overhead (Table X)",
        "Per 1-image query of the authorized path; `_base` is the unprotected model; FLOPs "
        "count 2 per multiply-add (the paper's FLOPs are multiply-adds).",
        _block(page, "overhead", schemes, OVERHEAD),
    ]
    sweep = sweeps(col, agg_all)
    if sweep:
        parts += [
            "## Sweeps",
            (
                "Runs that differ from the current default in the settings named (a run stored "
                "before a setting existed counts with its class default, e.g. `protect_epochs=None`: "
                "the preset's epochs); they feed the plots, not the tables above."
            ),
            sweep,
        ]
    if figures:
        parts += ["## Figures", "\n".join(f"![{t}]({p})" for t, p in figures)]
    if page.sources:
        parts += ["## Sources", "\n".join(f"- {s}" for s in sorted(page.sources))]
    if page.footnotes:
        parts += ["\n".join(f"[^{i}]: {t}" for i, t in enumerate(page.footnotes, 1))]
    md = "\n\n".join(p for p in parts if p) + "\n"
    table = pd.DataFrame(page.csv_rows, columns=CSV_COLUMNS).drop_duplicates()
    table = table.sort_values(["block", "scheme", "metric"], kind="stable", ignore_index=True)
    return md, table
