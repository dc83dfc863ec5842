"""The Ray executor on a local two-CPU Ray cluster: a smoke grid gives the local executor's
numbers bit for bit, trains each shared baseline once, and survives a killed worker.

Ray is an optional extra; without it these tests skip (``pip install -e ".[dev,ray]"``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.engine.executors import ProgressEvent, execute
from ipbench.engine.sweep import plan
from ipbench.store.results import Store

pytestmark = pytest.mark.slow

# 2 values x 2 seeds = 4 runs on 2 baselines (one per seed); the runs with 5 protection epochs
# last long enough for the driver to see them running
SETTINGS = {"protect_epochs": "1,5", "train.epochs": "1", "max_train": "400", "max_test": "100"}
LONG = "5"
GRID = ["--scheme", "mlock", "--preset", "smoke", "--seeds", "0,1", "--device", "cpu",
        *(a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}"))]  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    """A local two-CPU Ray cluster (imported here, so collecting this file needs no Ray)."""
    ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory) -> Path:
    """The grid through ``--executor local``, at the thread count of a one-CPU Ray task (a
    float sum's order, hence its last bits, depends on how many threads share it)."""
    workdir = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["sweep", *GRID, "--workdir", str(workdir)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return workdir


def stored(workdir: Path) -> dict[str, dict[tuple[str, str], float | None]]:
    """Every run's numbers, but the wall-clock timings (latencies), which no rerun repeats."""
    store = Store(workdir)
    out = {}
    for run in store.list_runs():
        rows = store.metrics(run.run_id)
        timed = ("_ms", "_ms_base")
        out[run.run_id] = {(m["stage"], m["name"]): m["value"] for m in rows
                           if not m["name"].endswith(timed)}  # fmt: skip
    return out


def computed(workdir: Path, stage: str) -> list[str]:
    """The cache keys of ``stage`` that the store says were computed (not reused), per run."""
    store = Store(workdir)
    rows = [store.stage(r.run_id, stage) for r in store.list_runs()]
    return [s["cache_key"] for s in rows if s and not s["cached"]]


def test_ray_grid_matches_the_local_grid_bit_for_bit(cluster, local_grid, tmp_path):
    result = CliRunner().invoke(
        app, ["sweep", *GRID, "--workdir", str(tmp_path), "--executor", "ray"]
    )
    assert result.exit_code == 0, result.output
    want = stored(local_grid)
    assert len(want) == 4 and all(len(v) > 10 for v in want.values())
    assert stored(tmp_path) == want  # same run ids, same numbers to the last bit
    assert all(r.status == "done" for r in Store(tmp_path).list_runs())
    # one baseline per seed, each trained once (by the first run of its group) and reused
    base = computed(tmp_path, "baseline")
    assert len(base) == 2 and len(set(base)) == 2
    assert sorted(computed(tmp_path, "baseline")) == sorted(computed(local_grid, "baseline"))
    assert len(set(computed(tmp_path, "protect"))) == 4
    # the driver started again with the same command: everything is found, nothing recomputed
    again = CliRunner().invoke(
        app, ["sweep", *GRID, "--workdir", str(tmp_path), "--executor", "ray"]
    )
    assert again.exit_code == 0, again.output
    store = Store(tmp_path)
    runs = store.list_runs()
    assert all(r.attempts == 2 and r.status == "done" for r in runs)
    assert all(s["cached"] for r in runs for s in store.stages(r.run_id))
    assert stored(tmp_path) == want


def finished_markers(workdir: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (workdir / "artifacts").glob("*/*/stage.json")
    }


def test_a_killed_worker_is_retried_and_nothing_finished_is_lost(cluster, local_grid, tmp_path):
    requests = plan("mlock", None, "smoke", SETTINGS, "0,1", str(tmp_path), device="cpu")
    at_kill: dict[str, object] = {}
    pids_seen: dict[str, list[int]] = {}

    def kill_a_running_run(ev: ProgressEvent) -> None:
        for step, pids in ev.running_steps.items():
            pids_seen[step] = pids
            # a long run's main step (its baseline is finished): killed once, at once
            kind, _, index = step.partition(":")
            long = kind == "run" and requests[int(index)].overrides["protect_epochs"] == LONG
            if not at_kill and long:
                at_kill.update(step=step, markers=finished_markers(tmp_path),
                               rows=stored(tmp_path))  # fmt: skip
                os.kill(pids[0], signal.SIGKILL)

    outcomes = execute(requests, executor="ray", on_progress=kill_a_running_run)
    assert at_kill, "no long run was seen running"
    assert len(pids_seen[str(at_kill["step"])]) == 2  # the killed step ran again, elsewhere
    assert [o.status for o in outcomes] == ["done"] * 4
    # nothing lost: every number is the local grid's
    assert stored(tmp_path) == stored(local_grid)
    # nothing finished recomputed: its artefacts are the same files, its rows the same rows
    markers, rows = at_kill["markers"], at_kill["rows"]
    assert isinstance(markers, dict) and isinstance(rows, dict) and rows
    after = finished_markers(tmp_path)
    assert all(after[path] == stat for path, stat in markers.items())
    now = stored(tmp_path)
    assert all(now[run][k] == v for run, values in rows.items() for k, v in values.items())
    for stage in ("baseline", "protect", "evaluate"):
        keys = computed(tmp_path, stage)
        assert len(keys) == len(set(keys))  # each computed once, whoever computed it


def test_attacks_on_several_runs_fan_out_and_a_failed_run_does_not_stop_the_grid(
    cluster, local_grid, tmp_path
):
    import shutil

    shutil.copytree(local_grid, tmp_path, dirs_exist_ok=True)
    store = Store(tmp_path)
    broken, intact = (r.run_id for r in store.list_runs()[:2])
    key = store.stage(broken, "protect")["cache_key"]
    shutil.rmtree(tmp_path / "artifacts" / "protect" / key)
    result = CliRunner().invoke(
        app, ["attack", broken, intact, "--attack", "prune,fine-pruning", "--set",
              "attack.prune.rates=0,0.5", "--workdir", str(tmp_path), "--device", "cpu",
              "--executor", "ray"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output  # bad input: a cached model is gone
    assert f"run {broken}: the cached protect artefact" in result.output
    store = Store(tmp_path)
    # a finished run keeps its status when a later attempt fails (issue 21): the error says so
    assert store.require_run(broken).status == store.require_run(intact).status == "done"
    stages = {s["name"]: s for s in store.stages(intact)}
    # prune with other rates than the preset's is a variant stage of its own (issue 21)
    (prune,) = [n for n in stages if n.startswith("attack:prune(")]
    assert stages[prune]["status"] == stages["attack:fine-pruning"]["status"] == "done"
    assert not stages[prune]["cached"] and stages["protect"]["cached"]
