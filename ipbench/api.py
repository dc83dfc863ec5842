"""The Python API, for notebooks and scripts: ``import ipbench``.

```python
import ipbench
ipbench.registered("schemes")                 # DataFrame: name, description
res = ipbench.run(["mlock", "adip"], seeds=[0, 1], presets="smoke", datasets="synthetic")
res.table                                     # the comparison, as the CLI prints it
res.metrics                                   # every recorded number, one row each
res.curve("prune", "A_ud", "rate")            # a curve: x vs value (mean over seeds) per scheme
print(res.summary())
ipbench.load("ipbench-runs").table            # stored runs, without running anything
ipbench.build_leaderboard("ipbench-runs", "leaderboard")
```

Everything goes through the same grid, runner, store and comparison code as the CLI, so the
numbers are the same ones ``ipbench run`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ipbench.core.errors import IpbenchError
from ipbench.metrics.display import json_row
from ipbench.report.compare import per_run, summarize
from ipbench.store.connect import workdir_path
from ipbench.store.results import Store

KINDS = ("schemes", "attacks", "datasets", "models", "presets")
DEFAULT_WORKDIR = "ipbench-runs"
METRIC_COLUMNS = [
    "run_id", "scheme", "dataset", "preset", "model", "seed", "stage", "name", "metric", "param",
    "x", "label", "value", "note", "spec",
]  # fmt: skip


def open_store(workdir: str | Path) -> Store:
    """An existing result store; reading never creates one (a typo is an error, not an empty
    store)."""
    path = workdir_path(workdir) / "ipbench.sqlite"
    if not path.exists():
        raise IpbenchError(
            f"no result store at {path} (--workdir {workdir}); run `ipbench run` first or "
            "pass the --workdir a run used"
        )
    return Store(workdir, create=False)  # read-only where the store cannot be written


def registered(kind: str | None = None) -> pd.DataFrame:
    """What is registered: one row per plugin (kind, name, description); ``kind`` one of
    schemes, attacks, datasets, models, presets (default: all)."""
    from ipbench.core import registry

    if kind is not None and kind not in KINDS:
        raise IpbenchError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    rows = []
    for k in [kind] if kind else KINDS:
        reg = getattr(registry, k)
        for name, obj in reg.items():
            rows.append({"kind": k, "name": name, "description": describe(obj)})
    return pd.DataFrame(rows, columns=["kind", "name", "description"])


def describe(obj: object) -> str:
    """A plugin's description: its summary, description or the first paragraph of its
    docstring, whole (a docstring's first line may stop mid-sentence)."""
    import inspect

    text = (
        getattr(obj, "summary", "") or getattr(obj, "description", "") or inspect.getdoc(obj) or ""
    )
    return " ".join(text.strip().split("\n\n")[0].split())


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values for JSON: floats at their metric's declared precision
    (``ipbench.metrics.display.json_row``), NaN as None."""
    return [json_row(row) for row in df.to_dict(orient="records")]


@dataclass
class Results:
    """Runs from one grid (or loaded from a store): the comparison and every number.

    ``runs``: one row per run (identity, headline columns, compute time); ``table``: the
    comparison (a row per scheme, ``X`` the mean and ``X_std`` the std over seeds, ``flag``);
    ``metrics``: every recorded number (run, scheme, dataset, preset, model, seed, stage, name;
    for a curve point its ``metric``, parameter ``param``, ``x`` and series ``label``; value,
    note and ``spec``, what it means), so curves are data, not names to parse (``curve``);
    ``failed``: requests that did not finish, with the error.
    """

    workdir: Path
    run_ids: list[str]
    runs: pd.DataFrame
    table: pd.DataFrame
    metrics: pd.DataFrame
    failed: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_store(
        cls, workdir: str | Path, run_ids: list[str], failed: list[dict[str, str]] | None = None
    ) -> Results:
        store = open_store(workdir)
        try:
            runs = per_run(store, run_ids)
            rows = []
            for rid in run_ids:
                rec = store.require_run(rid)
                ident = {"run_id": rid, "scheme": rec.scheme, "dataset": rec.dataset,
                         "preset": rec.preset, "model": rec.model, "seed": rec.seed}  # fmt: skip
                rows += [ident | {c: m[c] for c in METRIC_COLUMNS[6:]} for m in store.metrics(rid)]
        finally:
            store.close()
        metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
        return cls(Path(workdir), list(run_ids), runs, summarize(runs), metrics, failed or [])

    def curve(self, stage: str, metric: str, param: str, label: str | None = None) -> pd.DataFrame:
        """A recorded curve as a table to plot or compute with: ``curve("prune", "A_ud",
        "rate")`` has the rates as index and one column per scheme (also per dataset, preset,
        model or curve ``label`` where the runs hold several), the mean over seeds. ``stage``:
        ``attack:prune``, or an attack's name (``prune``, a variant ``finetune(epochs=1)``)."""
        m = self.metrics
        name = stage if stage in set(m.stage) else f"attack:{stage}"
        rows = m[(m.stage == name) & (m.metric == metric) & (m.param == param)]
        if label is not None:
            rows = rows[rows.label == label]
        if rows.empty:
            mine = m[(m.stage == name) & m.param.notna()]
            have = sorted({f"{r.metric} along {r.param}" for r in mine.itertuples()})
            where = f"its curves: {', '.join(have)}" if have else "it records no curve"
            stages = ", ".join(sorted(set(m.stage)))
            raise IpbenchError(
                f"no curve {metric} along {param!r}{'' if label is None else f' ({label})'} "
                f"in stage {name!r}; {where} (stages: {stages or 'none'})"
            )
        xs = pd.to_numeric(rows.x, errors="coerce")
        rows = rows.assign(x=xs if xs.notna().all() else rows.x, label=rows.label.fillna(""))
        keys = ["scheme"]
        keys += [k for k in ("dataset", "preset", "model", "label") if rows[k].nunique() > 1]
        table = rows.pivot_table(index="x", columns=keys, values="value", aggfunc="mean")
        table.index.name = param
        return table.sort_index()

    def summary(self) -> str:
        """A few lines: how many runs, the best scheme by A_pd, the flagged ones, failures."""
        lines = [f"{len(self.run_ids)} run(s) in {self.workdir}, {len(self.table)} row(s)"]
        for r in self.table.itertuples(index=False):
            flag = f"  [{r.flag}]" if r.flag else ""
            lines.append(
                f"  {r.scheme:<14} {r.dataset}/{r.preset}  A_ad {r.A_ad:6.2f}  A_ud {r.A_ud:6.2f}"
                f"  A_pd {r.A_pd:6.2f}  (n={r.n}){flag}"
            )
        lines += [f"  failed: {f['scheme']} seed {f['seed']}: {f['error']}" for f in self.failed]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Results(\n{self.summary()}\n)"

    def to_json(self) -> dict[str, object]:
        """What ``--json`` prints: the comparison rows, the runs and the failures."""
        return {
            "workdir": str(self.workdir),
            "comparison": records(self.table),
            "runs": records(self.runs),
            "failed": self.failed,
        }


def _list(value: str | int | Iterable | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int):
        return str(value)
    return ",".join(str(v) for v in value)


def run(
    schemes: str | Iterable[str] = "all",
    datasets: str | Iterable[str] | None = None,
    seeds: int | Iterable[int] = 0,
    presets: str | Iterable[str] | None = None,
    models: str | Iterable[str] | None = None,
    attacks: str | Iterable[str] = "all",
    overrides: dict[str, object] | None = None,
    workdir: str | Path = DEFAULT_WORKDIR,
    device: str | None = None,
    data_root: str | None = None,
    config: str | Path | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
) -> Results:
    """Run one or many (every combination of the lists; each cached and resumable) and return
    their ``Results``. ``config``: an experiment file instead of the lists. ``executor``: ``local``,
    ``processes`` (``workers`` as ``--workers``) or ``ray`` (``ray_address`` as ``--ray-address``), the same road as the command line: a run
    that fails is recorded in ``Results.failed`` and the others go on."""
    from ipbench.engine.executors import execute, failures
    from ipbench.engine.expfile import load_grid
    from ipbench.engine.grid import expand, grid_from_options

    if config is not None:
        grid = load_grid(config)
    else:
        grid = grid_from_options(
            _list(schemes) or "all", _list(datasets), _list(presets), _list(models),
            _list(seeds) or "0", _list(attacks) or "none",
            {k: str(v) for k, v in (overrides or {}).items()},
        )  # fmt: skip
    requests = expand(grid, str(workdir), data_root, device)
    outcomes = execute(requests, executor=executor, ray_address=ray_address, workers=workers)
    ids = list(dict.fromkeys(o.run_id for o in outcomes if o.run_id and o.status == "done"))
    return Results.from_store(workdir, ids, failures(outcomes))


def load(
    workdir: str | Path = DEFAULT_WORKDIR, runs: str | Iterable[str] | None = None,
    scheme: str | None = None, dataset: str | None = None, preset: str | None = None,
) -> Results:  # fmt: skip
    """Stored runs as ``Results``: the ones named (ids, unique prefixes or ``last``), else the
    latest finished run per scheme, dataset, preset, model and seed matching the filters."""
    store = open_store(workdir)
    try:
        if runs is not None:
            refs = [runs] if isinstance(runs, str) else list(runs)
            ids = [store.require_run(r).run_id for r in refs]
        else:
            latest: dict[tuple[str, str, str, str, int], str] = {}
            for r in store.list_runs():  # newest first
                wanted = scheme in (None, r.scheme) and dataset in (None, r.dataset)
                if r.status == "done" and wanted and preset in (None, r.preset):
                    latest.setdefault((r.scheme, r.dataset, r.preset, r.model, r.seed), r.run_id)
            ids = list(latest.values())
    finally:
        store.close()
    return Results.from_store(workdir, ids)


def build_leaderboard(
    workdir: str | Path = DEFAULT_WORKDIR, out: str | Path = "leaderboard",
    dataset: str | None = None, preset: str | None = None, tokens: bool = True,
) -> list[Path]:  # fmt: skip
    """Write the leaderboard pages (markdown + CSV + figures) from the store; returns the
    markdown paths."""
    from ipbench.report.leaderboard.build import build

    return build(workdir, out, dataset, preset, None, None, tokens)
