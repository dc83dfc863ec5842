"""Nothing finished gets lost, nothing corrupt gets used (issue 21):

- corrupted artefacts (truncated, flipped, edited, swapped, deleted): each detected with one
  error naming the file and the way out, which then works;
- the store: an old layout upgraded in place, a 0-byte or damaged file refused, a copied work
  directory reading its own artefacts;
- attacks stored by their settings; a failing attack recorded on the attack, not the run."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from tiny_runs import RUN, TINY, run_tiny, set_args, tiny_request, values
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.core.errors import CorruptArtifactError, IpbenchError
from ipbench.engine.migrate import migrate_store
from ipbench.engine.runner import Runner
from ipbench.store.cache import StageCache
from ipbench.store.results import Store

# --- corrupt artefacts --------------------------------------------------------------------


def _folders(wd: Path) -> dict[str, Path]:
    return {
        s: next(p for p in (wd / "artifacts" / s).iterdir() if p.is_dir())
        for s in ("baseline", "protect", "evaluate")
    }


def _truncate(f: dict[str, Path]) -> Path:
    path = f["protect"] / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _flip(f: dict[str, Path]) -> Path:
    path = f["baseline"] / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x10
    path.write_bytes(bytes(data))
    return path


def _edit_marker(f: dict[str, Path]) -> Path:
    path = f["evaluate"] / "stage.json"
    marker = json.loads(path.read_text())
    marker["info"]["metrics"]["A_ad"] = 99.0
    path.write_text(json.dumps(marker, indent=2))
    return path


def _swap_markers(f: dict[str, Path]) -> Path:
    a, b = f["protect"] / "stage.json", f["evaluate"] / "stage.json"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    return a


def _swap_models(f: dict[str, Path]) -> Path:
    a, b = f["baseline"] / "model.safetensors", f["protect"] / "model.safetensors"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    return a


def _swap_folders(f: dict[str, Path]) -> Path:
    a, b = f["baseline"], f["protect"]
    tmp = a.with_name("swapping")
    a.rename(tmp)
    b.rename(a)  # protect's folder filed as the baseline
    tmp.rename(b)
    return a / "stage.json"


def _delete_marker(f: dict[str, Path]) -> Path:
    path = f["baseline"] / "stage.json"
    path.unlink()
    return path


# case: (corrupt, the stage the error names, the stages to recompute)
CORRUPTIONS = {
    "truncate": (_truncate, "protect", ("protect",)),
    "flip": (_flip, "baseline", ("baseline",)),
    "edit stage.json": (_edit_marker, "evaluate", ("evaluate",)),
    "swap stage.json": (_swap_markers, "protect", ("protect", "evaluate")),
    "swap models": (_swap_models, "baseline", ("baseline", "protect")),
    "swap folders": (_swap_folders, "baseline", ("baseline", "protect")),
    "delete stage.json": (_delete_marker, "baseline", ("baseline",)),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corruption_is_detected_named_and_recomputed_on_request(tmp_path, finished, case):
    src, reference = finished
    wd = tmp_path / "wd"
    shutil.copytree(src, wd)
    corrupt, stage, redo = CORRUPTIONS[case]
    bad = corrupt(_folders(wd))
    for _ in range(2):  # the same clear error on every rerun, never a KeyError or a reuse
        with pytest.raises(CorruptArtifactError) as err:
            run_tiny(wd)
        message = str(err.value)
        assert str(bad) in message, message
        assert f"--recompute {stage}" in message and "\n" not in message
    res = CliRunner().invoke(app, [*RUN, "-s", "mlock", "--workdir", str(wd), *set_args(TINY)])
    assert res.exit_code == 2 and "--recompute" in res.output
    # the way out: recompute what failed (stages are deterministic: the same numbers)
    assert values(run_tiny(wd, recompute=redo)) == reference


def test_a_checkpoint_of_another_training_is_refused(tmp_path):
    from ipbench.ml.checkpoint import load_checkpoint, save_checkpoint
    from ipbench.ml.models import ModelSpec, build_model

    model = build_model(ModelSpec("tiny", 10, 3, 32, (0.5,) * 3, (0.25,) * 3))
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    save_checkpoint(tmp_path, model, opt, 2, epochs=4)
    assert load_checkpoint(tmp_path, model, opt, epochs=4) == 2
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**meta, "epoch": 99}))
    with pytest.raises(CorruptArtifactError, match="claims epoch 99 of 4"):
        load_checkpoint(tmp_path, model, opt, epochs=4)
    (tmp_path / "checkpoint.json").write_text(json.dumps({"epoch": 99}))  # an older layout
    with pytest.raises(CorruptArtifactError, match="claims epoch 99 of 4"):
        load_checkpoint(tmp_path, model, opt, epochs=4)
    (tmp_path / "checkpoint.json").write_text(json.dumps(meta))
    data = bytearray((tmp_path / "checkpoint.safetensors").read_bytes())
    data[-3] ^= 1
    (tmp_path / "checkpoint.safetensors").write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="sha256 differs"):
        load_checkpoint(tmp_path, model, opt, epochs=4)


# --- the store ----------------------------------------------------------------------------
def test_a_damaged_store_is_refused_and_left_as_it_is(tmp_path, finished):
    src, _ = finished
    wd = tmp_path / "wd"
    shutil.copytree(src, wd)
    db = wd / "ipbench.sqlite"
    sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = bytearray(db.read_bytes())
    page = 4096
    data[page : page + 100] = os.urandom(100)  # a b-tree page's header, overwritten
    db.write_bytes(bytes(data))
    before = db.read_bytes()
    with pytest.raises(IpbenchError, match="damaged or not an ipbench store"):
        Store(wd)
    assert db.read_bytes() == before


def test_a_copied_workdir_reads_its_own_artefacts(tmp_path, finished):
    src, _ = finished
    wd = tmp_path / "elsewhere"
    shutil.copytree(src, wd)
    store = Store(wd)
    run_id = store.list_runs()[0].run_id
    for st in store.stages(run_id):
        assert st["artifact"].startswith(str(wd)), st["artifact"]
    raw = sqlite3.connect(wd / "ipbench.sqlite").execute("SELECT artifact FROM stages").fetchall()
    assert all(r[0].startswith("artifacts/") for r in raw)


def _age(wd: Path, old_root: Path) -> None:
    """Make a store look written by the code before integrity records (schema version 0):
    absolute artefact paths under another directory, no digests anywhere."""
    db = sqlite3.connect(wd / "ipbench.sqlite")
    with db:
        db.execute("DROP TABLE artifacts")
        db.execute("UPDATE stages SET artifact=? || '/' || artifact", (str(old_root),))
        db.execute("PRAGMA user_version=0")
    db.close()
    for marker in (wd / "artifacts").glob("*/*/stage.json"):
        data = json.loads(marker.read_text())
        data.pop("files"), data.pop("compute"), data.pop("mac", None)
        marker.write_text(json.dumps(data, indent=2))


def test_an_old_store_is_upgraded_in_place_and_its_stages_reused(tmp_path, finished, capsys):
    src, reference = finished
    wd = tmp_path / "wd"
    shutil.copytree(src, wd)
    _age(wd, Path("/somewhere/else/wd"))
    with pytest.raises(IpbenchError, match="ipbench migrate"):  # never upgraded as a side effect
        Runner(tiny_request(wd)).run()
    assert migrate_store(wd) == (0, 3)
    # baseline, protect, evaluate: digested and authenticated once, by the migration
    assert (
        "3 stage marker(s) authenticated under the owner key, 3 of them given file digests"
        in capsys.readouterr().out
    )
    assert migrate_store(wd) == (3, 3)  # a current store is left as it is
    logged: list[str] = []
    out = Runner(tiny_request(wd), log=logged.append).run()
    assert values(out) == reference
    assert all(s["cached"] for s in out.stages)
    db = sqlite3.connect(wd / "ipbench.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert {r[0] for r in db.execute("SELECT artifact FROM stages")} <= {
        f"artifacts/{s}/{p.name}" for s, p in _folders(wd).items()
    }
    logged.clear()
    Runner(tiny_request(wd), log=logged.append).run()
    assert not [m for m in logged if "predates" in m]
    _flip(_folders(wd))  # digests recorded on upgrade are checked from then on
    with pytest.raises(CorruptArtifactError, match="sha256 differs"):
        run_tiny(wd)


def test_a_run_recorded_twice_at_once_is_one_row(tmp_path):
    store = Store(tmp_path)
    fields = {
        "scheme": "none",
        "dataset": "synthetic",
        "model": "tiny",
        "preset": "smoke",
        "seed": 0,
        "reduced": True,
        "config": {},
        "provenance": {},
    }
    other = Store(tmp_path)
    _, first = store.start_run("r1", fields)
    _, second = other.start_run("r1", fields)
    assert (first, second) == (False, True)
    assert store.require_run("r1").attempts == 2


# --- attacks by their settings ------------------------------------------------------------
def test_each_attack_setting_is_its_own_stage_and_failures_stay_on_the_attack(
    tmp_path, monkeypatch
):
    wd = tmp_path / "wd"
    first = run_tiny(wd, attacks="prune")
    default = {k: v for (s, k), v in values(first).items() if s == "attack:prune"}
    second = run_tiny(wd, attacks="prune", overrides={**TINY, "attack.prune.rates": "0.5"})
    got = values(second)
    assert {k: v for (s, k), v in got.items() if s == "attack:prune"} == default
    variant = "attack:prune(rates=0.5)"
    assert (variant, "A_ad@rate=0.5") in got and (variant, "A_ad@rate=0.3") not in got
    # the leaderboard reads the variant as its own attack column, headlined as the attack
    from ipbench.report.leaderboard.page import _declared_headlines

    assert _declared_headlines("prune(rates=0.5)") == _declared_headlines("prune") != ()

    from ipbench.core.registry import attacks

    def broken(self, target, ctx):
        raise RuntimeError("attack code crashed")

    monkeypatch.setattr(attacks.get("prune"), "run", broken)
    with pytest.raises(RuntimeError, match="attack code crashed"):
        run_tiny(wd, attacks="prune", overrides={**TINY, "attack.prune.rates": "0.2"})
    store = Store(wd)
    run = store.list_runs()[0]
    assert run.status == "done"
    failed = store.stage(run.run_id, "attack:prune(rates=0.2)")
    assert failed["status"] == "failed" and "attack code crashed" in failed["info"]["error"]
    assert store.stage(run.run_id, "attack:prune")["status"] == "done"


def test_a_resumed_stage_records_the_compute_of_every_attempt(tmp_path):
    cache = StageCache(tmp_path)
    partial = tmp_path / "s" / "k.partial"
    partial.mkdir(parents=True)
    (partial / "attempts.json").write_text(json.dumps({"seconds": [5.0, 2.5]}))
    (partial / "half.txt").write_text("from the killed attempt")
    folder, hit = cache.compute("s", "k", lambda work: {"metrics": {"m": 1.0}})
    assert not hit and (folder / "half.txt").exists()  # the killed attempt's work adopted
    spent = cache.compute_record("s", "k")
    assert spent["attempts"] == 3 and spent["total_s"] >= 7.5
    assert not list((tmp_path / "s").glob("k.partial*"))


def _slow_writer(root: str, started: str) -> None:
    import time

    from ipbench.store.cache import StageCache

    def compute(work: Path) -> dict:
        Path(started).touch()
        time.sleep(2)
        (work / "done.txt").write_text("x")
        return {}

    StageCache(root).compute("protect", "k1", compute)


def test_a_reader_waits_for_a_stage_another_process_is_computing(tmp_path):
    """``ipbench attack`` needs protect from the cache: while another process (re)computes it,
    the reader waits for the result instead of calling it missing (issue 34 item 5)."""
    import multiprocessing
    import time

    from ipbench.store.cache import StageCache

    started = tmp_path / "started"
    proc = multiprocessing.get_context("spawn").Process(
        target=_slow_writer, args=(str(tmp_path), str(started))
    )
    proc.start()
    while not started.exists():
        time.sleep(0.05)
    cache = StageCache(tmp_path)
    assert cache.lookup("protect", "k1") is None  # a plain look: not there yet
    found = cache.lookup("protect", "k1", wait=True)
    proc.join()
    assert found is not None and (found / "done.txt").read_text() == "x"
