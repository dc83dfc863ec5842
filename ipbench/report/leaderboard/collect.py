"""The store as pandas DataFrames: the latest successful run per (scheme, dataset, preset, seed,
configuration), with its metrics, and which runs were ignored and why.

A run's configuration is compared with the defaults the store records (each run stores the
configuration the same request has without ``--set``; the latest such record is the reference),
so the same store gives the same tables whatever the code or the presets say today. Stores
written before runs recorded their defaults fall back to resolving the defaults with today's
code (``default_config``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ipbench.engine.request import default_config
from ipbench.store.results import RunRecord, Store

__all__ = [
    "Collected", "attack_of", "attack_stage", "collect", "default_config", "settings_text",
    "variant",
]  # fmt: skip

# The sections of a stored run configuration that a user can change with ``--set``.
VARIANT_SECTIONS = ("scheme_config", "train", "data", "eval")


STAGE_COLUMNS = ["run_id", "stage", "status", "cached", "wall_s", "artifact"]


@dataclass
class Collected:
    """Kept runs (one row each), their metrics (one row each), the runs left out, and the
    kept runs' stages (status, wall time; for the run pages)."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    ignored: pd.DataFrame
    stages: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STAGE_COLUMNS))


# Attack stages are read through these two functions only, so a change to how attack stages
# are named (e.g. one stage per attack setting) is a change here.
ATTACK_PREFIX = "attack:"


def attack_of(stage: str) -> str | None:
    """The attack a stage name records (``attack:prune`` -> ``prune``); None for other stages."""
    return stage.removeprefix(ATTACK_PREFIX) if stage.startswith(ATTACK_PREFIX) else None


def attack_stage(attack: str) -> str:
    """The stage name an attack's results are stored under."""
    return f"{ATTACK_PREFIX}{attack}"


def _flatten(section: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(f"{section}.{k}", v))
        return out
    return {section: json.dumps(value, sort_keys=True)}


def stored_defaults(config: dict[str, Any]) -> dict[str, Any] | None:
    """The default configuration a run recorded (None for runs stored before that)."""
    found = config.get("defaults")
    return found if isinstance(found, dict) else None


def variant(config: dict[str, Any], default: dict[str, Any] | None) -> dict[str, str]:
    """Fields (``section.name`` -> JSON value) in which a run differs from the default config.

    A field the stored config lacks (it predates the field) takes the class default, so a run
    made before the preset changed that field is not mistaken for the current default.
    """
    if default is None:
        return {}
    mine: dict[str, Any] = {}
    base: dict[str, Any] = {}
    for section in VARIANT_SECTIONS:
        if section in config:
            legacy = (config.get("defaults") or default).get("legacy", {}).get(section, {})
            mine.update(_flatten(section, {**legacy, **config[section]}))
            base.update(_flatten(section, default.get(section, {})))
    return {k: v for k, v in sorted(mine.items()) if k in base and base[k] != v}


def settings_text(fields: dict[str, str]) -> str:
    """``{"scheme_config.gamma": "0.1"}`` -> ``gamma=0.1``: a variant as the tables name it."""
    return ", ".join(f"{k.split('.', 1)[1]}={json.loads(v)}" for k, v in sorted(fields.items()))


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")


def _run_row(
    run: RunRecord, var: dict[str, str], reference: dict[str, Any] | None = None
) -> dict[str, Any]:
    prov = run.provenance
    hw = prov.get("hardware", {})
    return {
        "run_id": run.run_id, "scheme": run.scheme, "dataset": run.dataset, "model": run.model,
        "preset": run.preset, "seed": run.seed, "reduced": run.reduced, "updated": run.updated,
        "date": _date(run.created), "commit": prov.get("git_commit", "unknown"),
        "version": prov.get("versions", {}).get("ipbench", "unknown"),
        "hardware": f"{hw.get('device', '?')} ({hw.get('gpu') or hw.get('cpu') or '?'})",
        "variant": json.dumps(var, sort_keys=True), "default": not var,
        "preset_settings": json.dumps(run.config.get("preset_settings"), sort_keys=True),
        # the scheme settings the variant is measured against (the stored reference defaults)
        "reference": json.dumps((reference or {}).get("scheme_config"), sort_keys=True),
        "import_label": _import_label(prov.get("imported") or {}),
    }  # fmt: skip


def _import_label(imported: dict[str, Any]) -> str:
    """What a board must say about a run imported from a bundle: another owner's secrets, or
    rows imported although they differ from the store's own (``ipbench import --allow-mixed``);
    empty for a plain import, which reads exactly as the run did in the store that made it."""
    said = []
    if imported.get("foreign_owner"):
        said.append(f"made under another owner key ({imported.get('owner_fingerprint')})")
    said += [str(m) for m in imported.get("mixed") or []]
    return f"from {imported.get('bundle')}: " + "; ".join(said) if said else ""


RUN_COLUMNS = list(_run_row(RunRecord("", "", "", "", "", "", 0, False, {}, {}, 0, 0, 1), {}))
METRIC_COLUMNS = [
    "run_id", "stage", "status", "name", "value", "note", "artifact", "metric", "param", "x",
    "label", "spec",
]  # fmt: skip


def collect(store: Store, dataset: str | None = None, preset: str | None = None) -> Collected:
    """Read every run; keep the latest successful one per (scheme, dataset, preset, seed, config).

    Runs that failed, were interrupted or are still running are ignored (and listed), so a
    crashed attempt never mixes into a table.
    """
    kept: list[dict[str, Any]] = []
    ignored: list[dict[str, Any]] = []
    defaults: dict[tuple[str, str, str], dict[str, Any] | None] = {}
    done = []
    for run in store.list_runs():  # newest first: the first recorded defaults are the latest
        if (dataset and run.dataset != dataset) or (preset and run.preset != preset):
            continue
        if run.status != "done":
            ignored.append({"run_id": run.run_id, "scheme": run.scheme, "status": run.status})
            continue
        key = (run.scheme, run.dataset, run.preset)
        if defaults.get(key) is None and (recorded := stored_defaults(run.config)):
            defaults[key] = recorded
        done.append((run, key))
    for run, key in done:
        if key not in defaults:  # a store from before runs recorded their defaults
            defaults[key] = default_config(*key)
        kept.append(_run_row(run, variant(run.config, defaults[key]), defaults[key]))
    runs = pd.DataFrame(kept, columns=RUN_COLUMNS)
    # The latest run wins; older runs of the same configuration are superseded.
    group = ["scheme", "dataset", "preset", "seed", "variant"]
    runs = runs.sort_values(["updated", "run_id"]).drop_duplicates(group, keep="last")
    runs = runs.sort_values(["dataset", "preset", "scheme", "variant", "seed"], ignore_index=True)
    rows: list[dict[str, Any]] = []
    stage_rows: list[dict[str, Any]] = []
    for run_id in runs["run_id"]:
        stages = {s["name"]: s for s in store.stages(run_id)}
        stage_rows += [{"run_id": run_id, "stage": n, **{c: st.get(c) for c in STAGE_COLUMNS[2:]}}
                       for n, st in stages.items()]  # fmt: skip
        for m in store.metrics(run_id):
            st = stages.get(m["stage"], {})
            rows.append({**m, "run_id": run_id, "status": st.get("status"),
                         "artifact": st.get("artifact")})  # fmt: skip
        for name, st in stages.items():  # a skipped stage may have no metric rows
            if st["status"] == "skipped" and not any(
                r["run_id"] == run_id and r["stage"] == name for r in rows
            ):
                note = (st.get("info") or {}).get("notes", {}).get("skipped", "")
                rows.append({"run_id": run_id, "stage": name, "status": "skipped",
                             "name": "skipped", "value": None, "note": note, "artifact": None,
                             "metric": "skipped", "param": None, "x": None, "label": None,
                             "spec": None})  # fmt: skip
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    ign = pd.DataFrame(ignored, columns=["run_id", "scheme", "status"]).sort_values("run_id")
    return Collected(
        runs, metrics, ign.reset_index(drop=True), pd.DataFrame(stage_rows, columns=STAGE_COLUMNS)
    )
