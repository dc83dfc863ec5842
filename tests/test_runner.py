from __future__ import annotations

import pytest

import ipbench.engine.runner as runner_mod
from ipbench.core.errors import IpbenchError, UnknownNameError
from ipbench.engine.runner import Runner, RunRequest
from ipbench.ml.training import Trainer
from ipbench.store.results import Store

FAST = {"epochs": "2", "max_train": "600", "max_test": "200"}


def _request(workdir, **kw) -> RunRequest:
    return RunRequest(
        scheme="none",
        preset="smoke",
        workdir=str(workdir),
        overrides=dict(FAST),
        device="cpu",
        **{"attacks": "none", **kw},  # attacks are tested in test_attacks_model.py
    )


def _values(outcome) -> dict[tuple[str, str], float]:
    return {(m["stage"], m["name"]): m["value"] for m in outcome.metrics}


@pytest.mark.slow
def test_run_records_stages_metrics_and_provenance(tmp_path):
    outcome = Runner(_request(tmp_path)).run()
    values = _values(outcome)
    assert values[("baseline", "A_or")] > 50  # the smoke task is learnt, not guessed
    assert (
        values[("evaluate", "A_ad")] == values[("evaluate", "A_ud")] == values[("baseline", "A_or")]
    )
    assert values[("evaluate", "A_pd")] == 0.0
    store = Store(tmp_path)
    run = store.require_run(outcome.run_id)
    assert run.status == "done" and run.preset == "smoke" and run.reduced
    assert run.config["train"]["epochs"] == 2
    prov = run.provenance
    assert {"git_commit", "versions", "hardware", "python"} <= set(prov)
    assert prov["versions"]["torch"] != "missing" and prov["hardware"]["device"] == "cpu"
    stages = {s["name"]: s for s in store.stages(run.run_id) if not s["name"].startswith("attack:")}
    assert set(stages) == {"baseline", "protect", "evaluate"}  # attack stages: test_attacks_*
    assert all(s["status"] == "done" and s["wall_s"] is not None for s in stages.values())


@pytest.mark.slow
def test_same_seed_gives_same_metrics_in_a_fresh_workdir(tmp_path):
    def measured(path):  # wall-clock timings (latency, credential issue) differ run to run
        values = _values(Runner(_request(path)).run())
        return {k: v for k, v in values.items() if not k[1].endswith(("_ms", "_ms_base"))}

    assert measured(tmp_path / "a") == measured(tmp_path / "b")


def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("power cut during evaluation")

    monkeypatch.setattr(runner_mod, "evaluate", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        Runner(_request(tmp_path)).run()
    store = Store(tmp_path)
    run = store.list_runs()[0]
    assert run.status == "failed"
    assert store.stage(run.run_id, "baseline")["status"] == "done"
    a_or = next(m for m in store.metrics(run.run_id) if m["name"] == "A_or")["value"]

    monkeypatch.undo()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(Trainer, "fit", no_training)
    outcome = Runner(_request(tmp_path)).run()
    assert outcome.resumed and outcome.run_id == run.run_id
    stages = {s["name"]: s for s in outcome.stages}
    assert stages["baseline"]["cached"] == 1 and stages["protect"]["cached"] == 1
    assert stages["evaluate"]["cached"] == 0
    assert _values(outcome)[("evaluate", "A_or")] == a_or
    assert Store(tmp_path).require_run(run.run_id).attempts == 2


@pytest.mark.slow
def test_baseline_is_shared_between_runs_that_differ_elsewhere(tmp_path, monkeypatch):
    first = Runner(_request(tmp_path)).run()
    monkeypatch.setattr(
        Trainer, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained"))
    )
    second = Runner(
        RunRequest(**{**_request(tmp_path).__dict__, "overrides": {**FAST, "users": "2"}})
    ).run()
    assert second.run_id != first.run_id and not second.resumed
    stages = {s["name"]: s for s in second.stages}
    assert stages["baseline"]["cached"] == 1 and stages["evaluate"]["cached"] == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"scheme": "nope"}, UnknownNameError, "unknown scheme 'nope'; valid schemes: .*none"),
        ({"dataset": "imagenet42"}, UnknownNameError, "unknown dataset 'imagenet42'"),
        ({"model": "vgg99"}, UnknownNameError, "valid models: fastnet"),
        ({"preset": "fast"}, UnknownNameError, "valid presets: paper, quick, smoke"),
        ({"overrides": {"lr_typo": "1"}}, IpbenchError, "unknown setting 'lr_typo'"),
        ({"overrides": {"train.epochs": "x"}}, IpbenchError, "epochs='x' is not a valid int"),
        ({"device": "tpu"}, IpbenchError, "unknown device 'tpu'"),
        ({"attacks": "copycat9"}, UnknownNameError, "unknown attack 'copycat9'"),
        (
            {"overrides": {"batch_size": "64"}},
            IpbenchError,
            "setting 'batch_size' is ambiguous: it is train.batch_size and eval.batch_size; add "
            "the prefix",
        ),
        (
            {"scheme": "mlock", "overrides": {"gamma": "1.5"}},
            IpbenchError,
            "gamma=1.5 is invalid; valid: a finite number > 0 and < 1",
        ),
    ],
)
def test_bad_requests_fail_before_any_work(tmp_path, kwargs, error, message):
    base = {"scheme": "none", "preset": "smoke", "workdir": str(tmp_path), "device": "cpu"}
    with pytest.raises(error, match=message.replace("(", r"\(")):
        Runner(RunRequest(**{**base, **kwargs}))
    assert not (tmp_path / "ipbench.sqlite").exists()


@pytest.mark.slow
def test_scheme_metrics_are_recorded_with_notes(tmp_path, monkeypatch):
    from ipbench.core.registry import schemes

    none_cls = schemes.get("none")
    monkeypatch.setattr(
        none_cls,
        "scheme_metrics",
        lambda self, protected, ctx: {"capacity": 1.0, "LPIPS": "backbone weights unavailable"},
    )
    outcome = Runner(_request(tmp_path)).run()
    rows = {(m["stage"], m["name"]): m for m in outcome.metrics}
    assert rows[("evaluate", "capacity")]["value"] == 1.0
    assert rows[("evaluate", "LPIPS")]["value"] is None
    assert rows[("evaluate", "LPIPS")]["note"] == "backbone weights unavailable"


@pytest.mark.parametrize(
    ("scheme", "settings", "message"),
    [
        ("mlock", {"target_class": "12"}, "target_class 12 outside 0..9"),
        ("mlock", {"sticker_size": "40"}, "sticker_size must be in 1..32, got 40"),
        ("activeguard", {"wm_layer": "9"}, r"wm_layer=9 is out of range; valid: -4..3"),
        ("chaow", {"layers": "fc9"}, "ChaoW layers 'fc9' are not conv/linear modules; valid"),
        ("activedaemon", {}, "token U-Net needs an image size divisible by 16, got 28"),
        ("passport", {"train.epochs": "1"}, None),  # tiny is a passport network: passes
    ],
)
def test_settings_are_checked_against_the_task_before_any_training(
    tmp_path, monkeypatch, scheme, settings, message
):
    """Values only the task can judge (its classes, image size, network) fail before the
    baseline trains, with the valid range named."""
    import ipbench.engine.runner as runner_module

    trained = []
    monkeypatch.setattr(runner_module.Trainer, "fit", lambda *a, **k: trained.append(1) or 1 / 0)
    dataset = None
    if scheme == "activedaemon":  # a 28 px task
        import numpy as np

        rng = np.random.default_rng(0)
        arrays = {
            "x_train": rng.integers(0, 256, (60, 28, 28, 3), dtype=np.uint8),
            "y_train": np.arange(60) % 10, "x_test": rng.integers(0, 256, (20, 28, 28, 3), dtype=np.uint8),
            "y_test": np.arange(20) % 10,
        }  # fmt: skip
        np.savez(tmp_path / "small.npz", **arrays)
        dataset = f"npz:{tmp_path / 'small.npz'}"
    req = RunRequest(scheme=scheme, dataset=dataset, preset="smoke", workdir=str(tmp_path / "w"),
                     device="cpu", overrides=settings, attacks="none")  # fmt: skip
    if message is None:
        with pytest.raises(ZeroDivisionError):  # reached training: the settings passed
            Runner(req).run()
        assert trained == [1]
        return
    with pytest.raises(IpbenchError, match=message):
        Runner(req).run()
    assert trained == [] and not (tmp_path / "w" / "artifacts").exists()


@pytest.mark.slow
def test_attacks_all_on_a_stored_run_leaves_out_attacks_it_has_not_met(tmp_path):
    """An attack installed after a run was made never silently joins ``--attacks all`` on it:
    it is named and left out, and runs with ``new_attacks`` (issue 33)."""
    from tiny_runs import run_tiny, tiny_request

    run_tiny(tmp_path, attacks="prune")  # the run as stored: one attack known to it
    logged: list[str] = []
    out = Runner(tiny_request(tmp_path, attacks="all"), log=logged.append).run()
    said = " ".join(logged)
    assert "not run on stored run" in said and "fake-token" in said and "--new-attacks" in said
    assert {s["name"] for s in out.stages if s["name"].startswith("attack")} == {"attack:prune"}
    out = Runner(tiny_request(tmp_path, attacks="all", new_attacks=True), log=logged.append).run()
    assert "attack:fake-token" in {s["name"] for s in out.stages}


def test_lpips_becoming_available_recomputes_the_evaluations_that_lacked_it(tmp_path, monkeypatch):
    """Installing LPIPS's weights after a run re-keys its evaluate stage (issue 33): a cached
    evaluation that recorded LPIPS as missing is not served once it can be computed."""
    from tiny_runs import run_tiny

    first = run_tiny(tmp_path)
    ready = runner_mod.lpips_ready()
    again = run_tiny(tmp_path)
    assert all(s["cached"] for s in again.stages)
    monkeypatch.setattr(runner_mod, "lpips_ready", lambda: not ready)
    changed = run_tiny(tmp_path)
    cached = {s["name"]: s["cached"] for s in changed.stages}
    assert cached["protect"] and not cached["evaluate"]
    assert first.run_id == changed.run_id
