"""Processes (issue 21, slow): kill -9 at chosen points and resume with bitwise-identical
metrics; four processes on one store with no lost rows and no stage computed twice."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import RUN, TINY, set_args, timing

from ipbench.store.results import Store


# --- kills and concurrency (subprocesses) -----------------------------------------------------
def _cli(workdir: Path, *extra: str, env: dict[str, str] | None = None, **kw):
    args = [sys.executable, "-m", "ipbench", *RUN, "-s", "mlock", "--workdir", str(workdir)]
    args += set_args({**TINY, "epochs": "3"})
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [*args, *extra],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _metrics(workdir: Path) -> dict[tuple[str, str], float]:
    db = sqlite3.connect(workdir / "ipbench.sqlite")
    rows = db.execute("SELECT stage, name, value FROM metrics")
    return {(s, n): v for s, n, v in rows if not timing(n)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict[tuple[str, str], float]]:
    """The same command run without a kill: its work directory and metrics."""
    ref = tmp_path_factory.mktemp("uninterrupted")
    assert _cli(ref).wait() == 0
    return ref, _metrics(ref)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [  # an epoch checkpoint of the baseline resumes through the same Trainer.fit as M-LOCK's
        "recorded:baseline",
        "checkpoint:mlock protection:2",
        "marker:protect",
    ],
)
def test_kill_and_resume_gives_bitwise_identical_metrics(tmp_path, uninterrupted, point):
    ref, reference = uninterrupted
    wd = tmp_path / "wd"
    if (ref / "owner").is_dir():  # the same owner (key seed) as the reference: same secrets
        shutil.copytree(ref / "owner", wd / "owner")
    killed = _cli(wd, env={"IPBENCH_KILL_AT": point})
    assert killed.wait() == -9, killed.stdout.read() if killed.stdout else ""
    resumed = _cli(wd)
    out = resumed.communicate()[0]
    assert resumed.returncode == 0, out
    assert _metrics(wd) == reference
    db = sqlite3.connect(wd / "ipbench.sqlite")
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "done"


@pytest.mark.slow
def test_four_processes_on_one_store_lose_no_row_and_compute_each_stage_once(tmp_path):
    wd = tmp_path / "wd"
    procs = [_cli(wd, "--seed", str(i % 2)) for i in range(4)]
    outs = [p.communicate()[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    store = Store(wd)
    runs = store.list_runs()
    assert len(runs) == 2 and all(r.status == "done" for r in runs)
    assert sorted(r.attempts for r in runs) == [2, 2]
    for r in runs:
        assert {s["name"]: s["status"] for s in store.stages(r.run_id)} == {
            "baseline": "done",
            "protect": "done",
            "evaluate": "done",
        }
    computed = [ln for out in outs for ln in out.splitlines() if ln.startswith("computing ")]
    # two seeds x (baseline, protect, evaluate), each computed by exactly one process
    assert len(computed) == 6, computed
    for marker in (wd / "artifacts").glob("*/*/stage.json"):
        assert json.loads(marker.read_text())["compute"]["attempts"] == 1
    assert not list((wd / "artifacts").glob("*/*.partial*"))
