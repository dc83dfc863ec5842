"""The process executor: the grid's plan on local worker processes gives the runs, stages and
results the one-process executor gives (up to the float order of another thread count), and
its options are checked before any run."""

from __future__ import annotations

import pytest

from ipbench.core.errors import IpbenchError
from ipbench.engine.executors import execute
from ipbench.engine.request import RunRequest
from ipbench.store.results import Store

FAST: dict[str, str] = {}  # the smoke budget as a user runs it: models that learned the task


def _grid(workdir, schemes=("none", "chaow")) -> list[RunRequest]:
    return [RunRequest(scheme=s, preset="smoke", device="cpu", attacks="prune",
                       workdir=str(workdir), overrides=dict(FAST)) for s in schemes]  # fmt: skip


def _headline(store: Store, run_id: str) -> dict[str, float]:
    rows = store.metrics(run_id)
    # the protection's numbers: an attack's headline picks its best point, a choice that another
    # float order may flip (prune at one rate or the next)
    return {f"{r['stage']}:{r['name']}": r["value"] for r in rows
            if r["stage"] in ("baseline", "evaluate") and r["name"] in ("A_or", "A_ad", "A_ud")}  # fmt: skip


@pytest.mark.slow
def test_processes_give_the_local_executors_runs_and_results(tmp_path):
    local = execute(_grid(tmp_path / "local"))
    pooled = execute(_grid(tmp_path / "pool"), executor="processes", workers=2)
    assert [o.status for o in pooled] == ["done"] * 2
    assert [o.run_id for o in pooled] == [o.run_id for o in local]  # the same stage keys
    a, b = Store(tmp_path / "local"), Store(tmp_path / "pool")
    for o in local:
        want, got = _headline(a, o.run_id), _headline(b, o.run_id)
        assert set(got) == set(want) and len(want) == 4
        for name, value in want.items():  # one thread per worker against the default
            assert abs(got[name] - value) <= 5, (o.run_id, name, got[name], value)
        assert b.get_run(o.run_id).status == "done"
        assert {s["name"] for s in b.stages(o.run_id)} >= {"baseline", "protect", "attack:prune"}
    # the shared baseline was trained once, in its own step, and every run reused it
    baselines = {r["key"] for r in b.export_artifacts() if r["stage"] == "baseline"}
    assert len(baselines) == 1


def test_worker_options_are_checked_before_any_run(tmp_path):
    with pytest.raises(IpbenchError, match="--workers 2 needs --executor processes"):
        execute(_grid(tmp_path), workers=2)
    with pytest.raises(IpbenchError, match=r"--workers 0: valid 1\.\.256"):
        execute(_grid(tmp_path), executor="processes", workers=0)
    assert Store(tmp_path).list_runs() == []


@pytest.mark.slow
def test_stages_a_worker_wrote_verify_in_the_grid_store_under_its_own_random_key(
    tmp_path, monkeypatch
):
    """A worker's private store signs with the grid store's owner key, not one of its own:
    with a random key per store (no ``$IPBENCH_OWNER_KEY``, as a user runs), a later command
    on the same store reads the stages the workers wrote."""
    from ipbench.core.owner import KEY_ENV

    monkeypatch.delenv(KEY_ENV, raising=False)
    grid = [RunRequest(scheme="none", preset="smoke", device="cpu", attacks="none",
                       workdir=str(tmp_path), overrides={"train.epochs": "1"})]  # fmt: skip
    (first,) = execute(grid, executor="processes", workers=1)
    assert first.status == "done", first.error
    again = [RunRequest(scheme="none", preset="smoke", device="cpu", attacks="prune",
                        workdir=str(tmp_path), overrides={"train.epochs": "1"})]  # fmt: skip
    (second,) = execute(again)  # this process, the grid store's key: reads the baseline
    assert second.status == "done", second.error
    assert second.run_id == first.run_id
    stages = {s["name"]: s for s in Store(tmp_path).stages(first.run_id)}
    assert stages["baseline"]["cached"] and stages["attack:prune"]["status"] == "done"
