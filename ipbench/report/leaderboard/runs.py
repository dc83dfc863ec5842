"""The runs behind a page: provenance lines, the Runs table, each run's wall time."""

from __future__ import annotations

import json
import math

import pandas as pd

from ipbench.core.registry import schemes
from ipbench.report.leaderboard.collect import Collected, settings_text
from ipbench.report.leaderboard.table import Cell, Column, Table, label


def wall_seconds(col: Collected) -> dict[str, float]:
    """Each kept run's wall time: the sum of its stages' (cached stages count what they took
    when they ran)."""
    st = col.stages
    if st.empty:
        return {}
    secs = pd.to_numeric(st["wall_s"], errors="coerce")
    sums = secs.groupby(st["run_id"]).sum(min_count=1)
    return {str(k): float(v) for k, v in sums.items() if not math.isnan(v)}


def runs_table(col: Collected) -> Table:
    """One row per kept run: what it is, where it came from, how long it took."""
    wall = wall_seconds(col)
    rows = []
    order = col.runs.sort_values(
        ["scheme", "default", "variant", "seed"], ascending=[True, False, True, True]
    )
    for r in order.itertuples():
        secs = wall.get(r.run_id)
        var = settings_text(json.loads(r.variant)) or "default"
        rows.append([
            Cell(r.run_id, r.run_id, (r.run_id,)), label(r.scheme), label(var),
            Cell(str(r.seed), int(r.seed)), label(r.model), label(r.commit), label(r.date),
            Cell("–" if secs is None else f"{secs:.1f}", secs),
        ])  # fmt: skip
    columns = [Column(c) for c in ("run", "scheme", "setting", "seed", "model", "commit", "date",
                                   "wall time (s)")]  # fmt: skip
    return Table(columns, rows)


def provenance(col: Collected, preset: str) -> list[str]:
    r = col.runs
    label_ = "reduced CPU setting" if r["reduced"].any() else "paper recipe"
    dates = sorted(r["date"])
    wall = wall_seconds(col)
    lines = [
        f"preset: **{preset}** ({label_})" if len(r) else f"preset: **{preset}**",
        f"seeds: {', '.join(str(s) for s in sorted(set(r['seed'])))}",
        f"models: {', '.join(sorted(set(r['model'])))}",
        f"git commit(s): {', '.join(sorted(set(r['commit'])))}",
        f"hardware: {'; '.join(sorted(set(r['hardware'])))}",
        f"run dates: {dates[0]} to {dates[-1]}" if dates else "run dates: -",
        f"ipbench version(s): {', '.join(sorted(set(r['version'])))}",
        f"runs: {len(r)} (the latest successful run per scheme, seed and configuration)",
    ]
    if wall:
        lines.append(f"wall time: {sum(wall.values()):.1f} s over {len(wall)} runs (sum of "
                     "stage times; per run in the Runs table)")  # fmt: skip
    tuned = _preset_settings(r, preset)
    sets = [
        f"{s}: " + ", ".join(f"{k}={v}" for k, v in sorted(tuned[s].items()))
        for s in sorted(tuned) if tuned[s]
    ]  # fmt: skip
    if sets:
        lines.append(f"scheme settings the preset sets: {'; '.join(sets)}")
    if len(col.ignored):
        gone = ", ".join(f"{x.run_id} ({x.scheme}, {x.status})" for x in col.ignored.itertuples())
        lines.append(f"ignored (failed, interrupted or unfinished): {gone}")
    return lines


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
