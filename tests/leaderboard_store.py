"""A result store written by hand for the leaderboard tests: runs and stages with chosen
metrics, a reference table, the build."""

from __future__ import annotations

from pathlib import Path

from ipbench.report.leaderboard.build import build
from ipbench.store.results import Store

REFERENCE = """scheme,dataset,model,metric,value,source,note
mlock,synthetic,tiny,A_ad,90.5,Test paper Table I,
mlock,synthetic,tiny,PSNR,25.036,Test paper Table III,
passport,*,tiny,params,9000000,Test paper Table X,model C
"""


def add_run(store: Store, run_id: str, scheme: str, seed: int, config: dict, status: str = "done"):
    prov = {"git_commit": "abc123", "versions": {"ipbench": "0.1.0"},
            "hardware": {"device": "cpu", "cpu": "Test CPU"}}  # fmt: skip
    fields = {"scheme": scheme, "dataset": "synthetic", "model": "tiny", "preset": "smoke",
              "seed": seed, "reduced": True, "config": config, "provenance": prov}  # fmt: skip
    store.start_run(run_id, fields)
    store.set_run_status(run_id, status)


def add_stage(store: Store, run_id: str, name: str, metrics: dict, notes=None, status="done"):
    store.begin_stage(run_id, name, "key")
    store.put_metrics(run_id, name, metrics, notes)
    store.finish_stage(run_id, name, status=status, artifact=None)


def build_board(workdir: Path, ref: Path, out: Path) -> Path:
    (md,) = build(workdir, out, reference=ref, tokens=False)
    return md
