"""The grid machinery without Ray: the plan of shared steps, rows moved between stores, the
executor option's errors, and progress counts. The Ray executor itself: test_ray_executor.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ipbench.core.errors import IpbenchError
from ipbench.engine.executors import execute
from ipbench.engine.executors.plan import Step, plan
from ipbench.engine.executors.progress import GridProgress
from ipbench.engine.request import RunRequest
from ipbench.store.results import Store


def _req(scheme="mlock", seed=0, attacks="none", **overrides) -> RunRequest:
    return RunRequest(scheme=scheme, preset="smoke", seed=seed, device="cpu", attacks=attacks,
                      overrides={k: str(v) for k, v in overrides.items()})  # fmt: skip


def test_runs_that_share_a_baseline_wait_for_one_step_that_trains_it():
    grid = [_req(seed=s, gamma=g) for g in (0.1, 0.3) for s in (0, 1)] + [_req(seed=2)]
    steps = {s.id: s for s in plan(grid)}
    # seeds 0 and 1 each have two runs: their first run trains the baseline as its own step
    assert steps["baseline:0"].run == 0 and steps["baseline:1"].run == 1
    assert steps["baseline:0"].request.attacks == "none"
    assert steps["run:0"].deps == steps["run:2"].deps == ("baseline:0",)
    assert steps["run:1"].deps == steps["run:3"].deps == ("baseline:1",)
    assert steps["run:4"].deps == () and "baseline:4" not in steps  # alone: no extra step
    # a changed training recipe or data size is another baseline
    other = plan([_req(gamma=0.1), _req(**{"train.epochs": 3})])
    assert [s.kind for s in other] == ["run", "run"]
    assert plan([_req(gamma=0.1), _req(max_train=100)])[0].kind == "run"


def test_activedaemon_runs_share_one_token_generator_step():
    sweep = [_req("activedaemon", gamma=g) for g in (0.1, 0.3, 0.5)]
    steps = plan(sweep)
    (prep,) = [s for s in steps if s.kind == "prepare"]
    assert prep.run is None
    runs = [s for s in steps if s.kind == "run"]
    assert all(set(s.deps) == {"baseline:0", prep.id} for s in runs)
    # another token setting is another token (each trains beside the shared baseline)
    apart = {s.id: s for s in plan([_req("activedaemon", token_steps=5),
                                    _req("activedaemon", token_steps=6)])}  # fmt: skip
    assert {apart["run:0"].deps, apart["run:1"].deps} == {
        ("baseline:0", "prepare:0"),
        ("baseline:0", "prepare:1"),
    }
    # a token loaded from a folder is nobody's step
    given = plan([_req("activedaemon", token_from="/x", gamma=g) for g in (0.1, 0.3)])
    assert not [s for s in given if s.kind == "prepare"]
    # one ActiveDaemon run beside an M-LOCK run: its token trains while their baseline does
    pair = {s.id: s for s in plan([_req("activedaemon"), _req(gamma=0.1)])}
    assert set(pair) == {"baseline:0", "prepare:0", "run:0", "run:1"}
    assert set(pair["run:0"].deps) == {"baseline:0", "prepare:0"}
    assert pair["run:1"].deps == ("baseline:0",)
    assert [s.kind for s in plan([_req("activedaemon")])] == ["run"]  # alone: one step
    # M-LOCK's token is drawn in milliseconds: nothing to share
    assert not [s for s in plan([_req(gamma=0.1), _req(gamma=0.3)]) if s.kind == "prepare"]


def test_attacks_become_steps_after_their_run_and_attack_grids_train_nothing():
    steps = plan([_req(attacks="prune,finetune")])
    assert [(s.id, s.request.attacks, s.deps) for s in steps] == [
        ("run:0", "none", ()),
        ("attack:0:prune", "prune", ("run:0",)),
        ("attack:0:finetune", "finetune", ("run:0",)),
    ]
    single = plan([_req(attacks="prune")])  # one attack: no extra step
    assert [(s.id, s.request.attacks) for s in single] == [("run:0", "prune")]
    cached = [RunRequest(**{**_req(gamma=g).__dict__, "require_cached": True}) for g in (0.1, 0.3)]
    assert [s.kind for s in plan(cached)] == ["run", "run"]  # `ipbench attack`: all cached


def _rows(store: Store, run_id: str, cached: bool, value: float) -> dict:
    store.start_run(run_id, {"scheme": "none", "dataset": "synthetic", "model": "tiny",
                             "preset": "smoke", "seed": 0, "reduced": True, "config": {},
                             "provenance": {"plugin_code": {}}})  # fmt: skip
    store.begin_stage(run_id, "baseline", "k1")
    store.put_metrics(run_id, "baseline", {"A_or": value})
    store.finish_stage(run_id, "baseline", cached=cached, wall_s=1.5)
    return store.export_run(run_id)


def test_rows_moved_to_the_driver_keep_who_computed_a_stage(tmp_path):
    driver = Store(tmp_path / "driver")
    first = _rows(Store(tmp_path / "a"), "r1", cached=False, value=51.25)
    assert driver.import_run(first, new_attempt=True) == ["baseline"]
    # a later part of the same attempt found the baseline cached: it was still computed here
    later = _rows(Store(tmp_path / "b"), "r1", cached=True, value=51.25)
    assert driver.import_run(later, new_attempt=False, keep={"baseline"}) == []
    assert driver.stage("r1", "baseline")["cached"] == 0
    assert driver.metrics("r1")[0]["value"] == 51.25 and driver.metrics("r1")[0]["spec"]
    assert driver.require_run("r1").attempts == 1
    # a new attempt (the same grid started again) is counted, and its cache hit recorded
    again = _rows(Store(tmp_path / "c"), "r1", cached=True, value=51.25)
    driver.import_run(again, new_attempt=True)
    assert driver.stage("r1", "baseline")["cached"] == 1
    assert driver.require_run("r1").attempts == 2


def test_executor_option_errors_name_the_choices(tmp_path, monkeypatch):
    req = _req()
    req.workdir = str(tmp_path)
    with pytest.raises(IpbenchError, match="unknown executor 'dask'; valid: local, processes, ray"):
        execute([req], executor="dask")
    with pytest.raises(IpbenchError, match="--ray-address 'auto' needs --executor ray"):
        execute([req], ray_address="auto")
    other = RunRequest(**{**req.__dict__, "workdir": str(tmp_path / "elsewhere")})
    with pytest.raises(IpbenchError, match="a grid writes one store"):
        execute([req, other])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(IpbenchError, match=r'pip install "ipbench\[ray\]"'):
        execute([req], executor="ray")


def test_progress_counts_runs_by_their_steps():
    steps = [Step("baseline:0", "baseline", _req(), 0), Step("prepare:0", "prepare", _req(), None),
             Step("run:0", "run", _req(), 0, ("baseline:0",)), Step("run:1", "run", _req(), 1),
             Step("attack:1:prune", "attack", _req(), 1, ("run:1",))]  # fmt: skip
    seen = []
    progress = GridProgress(steps, runs=2, on_progress=seen.append)
    progress.update({"baseline:0": [11], "prepare:0": [12]})
    ev = seen[-1]
    assert (ev.done, ev.running, ev.failed, ev.waiting, ev.left_s) == (0, 1, 0, 1, None)
    progress.finish("baseline:0", ok=True)
    progress.update({"baseline:0": [11], "prepare:0": [12], "run:1": [11, 13]})
    ev = seen[-1]
    assert (ev.done, ev.running, ev.waiting) == (0, 2, 0) and ev.left_s is not None
    assert ev.running_steps == {"prepare:0": [12], "run:1": [11, 13]}
    for step in ("prepare:0", "run:0", "run:1"):
        progress.finish(step, ok=step != "run:1")
    assert (seen[-1].done, seen[-1].failed, seen[-1].running) == (1, 0, 1)  # the attack runs on
    progress.finish("attack:1:prune", ok=True)
    assert (seen[-1].done, seen[-1].failed, seen[-1].waiting) == (1, 1, 0)


def test_ray_stays_optional_nothing_imports_it_before_a_ray_grid_runs():
    code = (
        "import sys, ipbench.cli.main, ipbench.engine.executors.ray, ipbench.engine.executors.worker; "
        "from typer.testing import CliRunner; "
        "assert CliRunner().invoke(ipbench.cli.main.app, ['sweep', '--help']).exit_code == 0; "
        "sys.exit('ray imported' if 'ray' in sys.modules else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_ray_tasks_ask_for_a_gpu_where_the_cluster_has_one(tmp_path):
    from ipbench.engine.executors.ray import placed

    auto = RunRequest(scheme="mlock", workdir="runs", data_root="~/data")
    on_gpu = placed(auto, cluster_gpus=2)
    # the driver may lack CUDA: the worker's device and the preset CUDA defaults to are fixed
    assert (on_gpu.device, on_gpu.preset) == ("cuda", "paper")
    assert on_gpu.workdir.startswith("/") and not on_gpu.data_root.startswith("~")
    assert placed(RunRequest(scheme="mlock", preset="smoke"), 2).preset == "smoke"
    assert placed(RunRequest(scheme="mlock", device="cuda:1"), 1).device == "cuda"
    on_cpu = placed(auto, cluster_gpus=0)
    assert (on_cpu.device, on_cpu.preset) == ("cpu", None)
    assert placed(RunRequest(scheme="mlock", device="cpu"), 4).device == "cpu"
    with pytest.raises(IpbenchError, match="--device cuda: the Ray cluster has no GPU"):
        placed(RunRequest(scheme="mlock", device="cuda"), cluster_gpus=0)


def test_sweep_names_a_bad_executor_before_any_run(tmp_path):
    from typer.testing import CliRunner

    from ipbench.cli.main import app

    args = ["sweep", "-s", "mlock", "-p", "smoke", "--set", "gamma=0.1,0.3", "--workdir",
            str(tmp_path), "--executor", "dask"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert (
        result.exit_code == 2
        and "unknown executor 'dask'; valid: local, processes, ray" in result.output
    )
    assert Store(tmp_path).list_runs() == []


@pytest.mark.slow
def test_the_shared_token_step_computes_the_stage_the_runs_then_reuse(tmp_path, monkeypatch):
    import ipbench.schemes.activedaemon as activedaemon
    from ipbench.engine.runner import Runner

    fast = {"train.epochs": "1", "protect_epochs": "1", "max_train": "300", "max_test": "100",
            "token_steps": "20", "secret_only_steps": "20"}  # fmt: skip

    def request(gamma: str) -> RunRequest:
        return RunRequest(scheme="activedaemon", preset="smoke", device="cpu", attacks="none",
                          workdir=str(tmp_path), overrides={**fast, "gamma": gamma})  # fmt: skip

    first, second = request("0.1"), request("0.3")
    assert Runner(first).prepare_shared()
    # one stage folder (the stage's lock file sits beside it)
    (token,) = [p for p in (tmp_path / "artifacts" / "tokens").iterdir() if p.is_dir()]
    assert (token / "stage.json").exists()
    assert Store(tmp_path).list_runs() == []  # a shared step records no run

    def retrain(*args, **kwargs):
        raise AssertionError("the token generator was trained again")

    monkeypatch.setattr(activedaemon, "train_token_generator", retrain)
    outcome = Runner(second).run()  # another gamma: the same token stage, from the cache
    assert {s["name"] for s in outcome.stages} == {"baseline", "protect", "evaluate"}
    assert not Runner(
        RunRequest(scheme="mlock", preset="smoke", workdir=str(tmp_path))
    ).prepare_shared()
