"""Nothing wrong gets in, nothing finished gets lost (issue 21).

- a table of bad inputs: each is exit code 2, one line, naming the value, and nothing recorded;
- corrupted artefacts (truncated, flipped, edited, swapped, deleted): each detected with one
  error naming the file and the way out, which then works;
- the store: an old layout upgraded in place, a 0-byte or damaged file refused, a copied work
  directory reading its own artefacts;
- attacks stored by their settings; a failing attack recorded on the attack, not the run;
- (slow) kill -9 at chosen points and resume with bitwise-identical metrics; four processes
  on one store with no lost rows and no stage computed twice.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ipbench.cache import StageCache
from ipbench.cli import app
from ipbench.errors import CorruptArtifactError, IpbenchError
from ipbench.runner import Runner, RunRequest
from ipbench.store import Store

# A run small enough for the fast tier: a protected model (mlock trains), a few seconds.
TINY = {"epochs": "1", "max_train": "256", "max_test": "100", "quality_images": "50"}
DATA = "synthetic:600"  # generated in a fifth of a second (the default 5000 take seconds)
RUN = ["run", "--preset", "smoke", "--device", "cpu", "--attacks", "none", "-d", DATA]


def tiny_request(workdir: Path, **kw) -> RunRequest:
    base = {
        "scheme": "mlock",
        "preset": "smoke",
        "device": "cpu",
        "attacks": "none",
        "dataset": DATA,
        "workdir": str(workdir),
        "overrides": dict(TINY),
    }
    return RunRequest(**{**base, **kw})


def _sets(settings: dict[str, str]) -> list[str]:
    return [arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]


def run_tiny(workdir: Path, **kw):
    return Runner(tiny_request(workdir, **kw), log=lambda _m: None).run()


def timing(name: str) -> bool:
    """Wall-clock measurements (latencies), the only numbers a rerun may change."""
    return name.endswith("_ms") or "_ms_" in name


def values(outcome) -> dict[tuple[str, str], float]:
    return {(m["stage"], m["name"]): m["value"] for m in outcome.metrics if not timing(m["name"])}


# --- bad inputs ---------------------------------------------------------------------------
def _npz(tmp: Path, **over) -> str:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
        "y_train": np.arange(40) % 4,
        "x_test": rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
        "y_test": np.arange(12) % 4,
    }
    arrays.update(over)
    path = tmp / "data.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def _folder(tmp: Path, classes=("a", "b"), bad: dict[str, bytes] | None = None) -> str:
    from PIL import Image

    root = tmp / "imgs"
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.new("RGB", (16, 16), (i * 40, 10, 200)).save(root / split / c / f"{i}.png")
    for rel, data in (bad or {}).items():
        (root / rel).write_bytes(data)
    return f"imagefolder:{root}:16"


def _empty_folder(tmp: Path) -> str:
    (tmp / "imgs" / "train").mkdir(parents=True)
    (tmp / "imgs" / "val").mkdir(parents=True)
    return f"imagefolder:{tmp / 'imgs'}:16"


def _file(tmp: Path, name: str = "afile", data: bytes = b"x") -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


rng0 = np.random.default_rng(1)
F32 = rng0.random((40, 32, 32, 3)).astype(np.float32)

# (id, args builder (tmp -> extra CLI args), text the one line must contain)
# fmt: off
BAD: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("epochs=0", lambda t: ["-s", "none", "--set", "epochs=0"], "epochs=0"),
    ("epochs=-3", lambda t: ["-s", "none", "--set", "epochs=-3"], "epochs=-3"),
    ("batch_size=-5", lambda t: ["-s", "none", "--set", "train.batch_size=-5"], "batch_size=-5"),
    ("batch_size=0", lambda t: ["-s", "none", "--set", "train.batch_size=0"], "batch_size=0"),
    ("max_train=-10", lambda t: ["-s", "none", "--set", "max_train=-10"], "max_train=-10"),
    ("users=0", lambda t: ["-s", "none", "--set", "users=0"], "users=0"),
    ("alpha=-2", lambda t: ["-s", "mlock", "--set", "alpha=-2"], "alpha=-2"),
    ("lr=-1", lambda t: ["-s", "none", "--set", "lr=-1"], "lr=-1"),
    ("lr=nan", lambda t: ["-s", "none", "--set", "lr=nan"], "lr=nan"),
    ("momentum<0", lambda t: ["-s", "none", "--set", "momentum=-0.5"], "momentum=-0.5"),
    ("crop_padding<0", lambda t: ["-s", "none", "--set", "crop_padding=-1"], "crop_padding=-1"),
    ("label_smoothing=2", lambda t: ["-s", "none", "--set", "label_smoothing=2"], "smoothing=2"),
    ("eval_batch_size=0", lambda t: ["-s", "none", "--set", "eval_batch_size=0"], "size=0"),
    ("quality_images=0", lambda t: ["-s", "none", "--set", "quality_images=0"], "images=0"),
    ("milestones", lambda t: ["-s", "none", "--set", "milestones=0.5,3"], "milestones="),
    ("schedule", lambda t: ["-s", "none", "--set", "schedule=weekly"], "weekly"),
    (
        "queries=0",
        lambda t: ["-s", "none", "--attacks", "extraction", "--set", "attack.extraction.queries=0"],
        "queries=0",
    ),
    ("gamma=1.5", lambda t: ["-s", "mlock", "--set", "gamma=1.5"], "gamma=1.5"),
    ("target_class=-1", lambda t: ["-s", "mlock", "--set", "target_class=-1"], "target_class=-1"),
    ("target_class=10", lambda t: ["-s", "mlock", "--set", "target_class=10"], "target_class 10"),
    ("sticker_size=0", lambda t: ["-s", "mlock", "--set", "sticker_size=0"], "sticker_size=0"),
    ("sticker_size=99", lambda t: ["-s", "mlock", "--set", "sticker_size=99"], "got 99"),
    ("seed=2^63", lambda t: ["-s", "none", "--seed", str(2**63)], str(2**63)),
    ("seed=-1", lambda t: ["-s", "none", "--seed", "-1"], "-1"),
    ("device cpu:99", lambda t: ["-s", "none", "--device", "cpu:99"], "cpu:99"),
    ("device meta", lambda t: ["-s", "none", "--device", "meta"], "'meta'"),
    ("device tpu", lambda t: ["-s", "none", "--device", "tpu"], "'tpu'"),
    ("attacks ,", lambda t: ["-s", "none", "--attacks", ","], "','"),
    ("attacks a,,b", lambda t: ["-s", "none", "--attacks", "prune,,finetune"], "prune,,finetune"),
    ("attacks twice", lambda t: ["-s", "none", "--attacks", "prune,prune"], "prune twice"),
    ("dataset ''", lambda t: ["-s", "none", "--dataset", ""], "--dataset ''"),
    ("model ''", lambda t: ["-s", "none", "--model", ""], "--model ''"),
    ("set twice", lambda t: ["-s", "none", "--set", "epochs=1", "--set", "epochs=2"], "twice"),
    ("set no value", lambda t: ["-s", "none", "--set", "epochs="], "epochs=''"),
    ("set no =", lambda t: ["-s", "none", "--set", "epochs"], "'epochs'"),
    ("recompute bogus", lambda t: ["-s", "none", "--recompute", "bogus"], "'bogus'"),
    ("synthetic:abc", lambda t: ["-s", "none", "--dataset", "synthetic:abc"], "'abc'"),
    (
        "npz NaN",
        lambda t: ["-s", "none", "-d", _npz(t, x_train=np.where(F32 > 0.5, np.nan, F32))],
        "NaN",
    ),
    (
        "npz inf",
        lambda t: ["-s", "none", "-d", _npz(t, x_train=np.where(F32 > 0.5, np.inf, F32))],
        "infinite",
    ),
    ("npz float >1", lambda t: ["-s", "none", "-d", _npz(t, x_train=F32 * 3)], "[0, 1]"),
    (
        "npz int >255",
        lambda t: ["-s", "none", "-d", _npz(t, x_test=np.full((12, 32, 32, 3), 300))],
        "0..255",
    ),
    (
        "npz unseen test label",
        lambda t: ["-s", "none", "-d", _npz(t, y_test=np.arange(12) % 4 + 5)],
        "never occur",
    ),
    (
        "npz huge label",
        lambda t: ["-s", "none", "-d", _npz(t, y_train=np.full(40, 10**9))],
        "1000000000",
    ),
    (
        "npz float labels",
        lambda t: ["-s", "none", "-d", _npz(t, y_train=np.arange(40) / 2)],
        "float64",
    ),
    (
        "npz string labels",
        lambda t: ["-s", "none", "-d", _npz(t, y_test=np.array(["a"] * 12))],
        "labels must be integers",
    ),
    (
        "npz negative labels",
        lambda t: ["-s", "none", "-d", _npz(t, y_train=np.arange(40) % 4 - 1)],
        "-1",
    ),
    (
        "npz 16px test",
        lambda t: ["-s", "none", "-d", _npz(t, x_test=np.zeros((12, 16, 16, 3), np.uint8))],
        "3x16x16",
    ),
    (
        "npz empty train",
        lambda t: [
            "-s",
            "none",
            "-d",
            _npz(t, x_train=np.zeros((0, 32, 32, 3), np.uint8), y_train=np.zeros(0, np.int64)),
        ],
        "training split is empty",
    ),
    (
        "npz empty test",
        lambda t: [
            "-s",
            "none",
            "-d",
            _npz(t, x_test=np.zeros((0, 32, 32, 3), np.uint8), y_test=np.zeros(0, np.int64)),
        ],
        "test split is empty",
    ),
    (
        "npz grey train, RGB test",
        lambda t: ["-s", "none", "-d", _npz(t, x_train=np.zeros((40, 32, 32), np.uint8))],
        "1x32x32",
    ),
    (
        "npz one class",
        lambda t: [
            "-s",
            "none",
            "-d",
            _npz(t, y_train=np.zeros(40, np.int64), y_test=np.zeros(12, np.int64)),
        ],
        "1 class",
    ),
    (
        "npz x/y lengths",
        lambda t: ["-s", "none", "-d", _npz(t, y_train=np.arange(39) % 4)],
        "39 labels",
    ),
    ("imagefolder one class", lambda t: ["-s", "none", "-d", _folder(t, ("a",))], "1 class"),
    ("imagefolder empty", lambda t: ["-s", "none", "-d", _empty_folder(t)], "imgs/train"),
    (
        "imagefolder zero-byte image",
        lambda t: ["-s", "none", "-d", _folder(t, bad={"train/a/0.png": b""})],
        "0.png",
    ),
    (
        "imagefolder corrupt image",
        lambda t: [
            "-s",
            "none",
            "-d",
            _folder(t, bad={"val/b/1.png": b"\x89PNG\r\n\x1a\nnot really"}),
        ],
        "1.png",
    ),
    ("workdir is a file", lambda t: ["-s", "none", "--workdir", _file(t)], "afile"),
    (
        "workdir uncreatable",
        lambda t: ["-s", "none", "--workdir", "/proc/ipbench/wd"],
        "/proc/ipbench/wd",
    ),
    (
        "store is 0 bytes",
        lambda t: ["-s", "none", "--workdir", str(Path(_file(t, "ipbench.sqlite", b"")).parent)],
        "0-byte",
    ),
    (
        "store is garbage",
        lambda t: [
            "-s",
            "none",
            "--workdir",
            str(Path(_file(t, "ipbench.sqlite", b"not a database" * 100)).parent),
        ],
        "ipbench.sqlite",
    ),
]


def _recorded_runs(workdir: Path) -> int:
    store = workdir / "ipbench.sqlite"
    if not store.exists() or store.stat().st_size == 0:
        return 0
    try:
        return sqlite3.connect(store).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


@pytest.mark.parametrize(("build", "named"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_and_records_nothing(tmp_path, build, named):
    workdir = tmp_path / "wd"
    args = build(tmp_path)
    if "--workdir" not in args:
        args += ["--workdir", str(workdir)]
    res = CliRunner().invoke(app, [*RUN, *args])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert named in lines[0], lines[0]
    assert _recorded_runs(workdir) == 0


def test_the_bad_input_table_is_large_enough():
    assert len(BAD) >= 40


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (lambda t: ["--out", _file(t, "out.md")], "out.md is a file"),
        (lambda t: ["--reference", _file(t, "ref.csv", b"\x00\xffgarbage")], "ref.csv"),
        (lambda t: ["--reference", _file(t, "ref.csv", b"a,b\n1,2\n")], "header a,b"),
    ],
    ids=["out is a file", "binary reference", "wrong reference header"],
)
def test_leaderboard_bad_paths_are_one_line(tmp_path, finished, args, named):
    shutil.copytree(finished[0], tmp_path / "wd")
    res = CliRunner().invoke(
        app, ["leaderboard", "--workdir", str(tmp_path / "wd"), *args(tmp_path)]
    )
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and named in lines[0], res.output


def test_a_real_bug_shows_its_traceback_and_how_to_report_it(monkeypatch):
    import ipbench.cli as cli

    def boom() -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1


def test_main_reports_a_bug_with_traceback_in_a_subprocess(tmp_path):
    code = (
        "import ipbench.cli as c\n"
        "def boom():\n    raise ZeroDivisionError('a bug')\n"
        "c.app = boom\nc.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr
    assert "please report it" in done.stderr.replace("\n", " ")


# --- corrupt artefacts --------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny finished run (baseline, protect, evaluate), copied by each corruption test."""
    wd = tmp_path_factory.mktemp("finished") / "wd"
    return wd, values(run_tiny(wd))


def _folders(wd: Path) -> dict[str, Path]:
    return {s: next(p for p in (wd / "artifacts" / s).iterdir() if p.is_dir())
            for s in ("baseline", "protect", "evaluate")}


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
    res = CliRunner().invoke(app, [*RUN, "-s", "mlock", "--workdir", str(wd), *_sets(TINY)])
    assert res.exit_code == 2 and "--recompute" in res.output
    # the way out: recompute what failed (stages are deterministic: the same numbers)
    assert values(run_tiny(wd, recompute=redo)) == reference


def test_a_checkpoint_of_another_training_is_refused(tmp_path):
    from ipbench.checkpoint import load_checkpoint, save_checkpoint
    from ipbench.models import ModelSpec, build_model

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
        data.pop("files"), data.pop("compute")
        marker.write_text(json.dumps(data, indent=2))


def test_an_old_store_is_upgraded_in_place_and_its_stages_reused(tmp_path, finished):
    src, reference = finished
    wd = tmp_path / "wd"
    shutil.copytree(src, wd)
    _age(wd, Path("/somewhere/else/wd"))
    logged: list[str] = []
    out = Runner(tiny_request(wd), log=logged.append).run()
    assert values(out) == reference
    assert all(s["cached"] for s in out.stages)
    notices = [m for m in logged if "predates integrity records; digests recorded now" in m]
    assert len(notices) == 3  # baseline, protect, evaluate: one line each, once
    db = sqlite3.connect(wd / "ipbench.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
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
    fields = {"scheme": "none", "dataset": "synthetic", "model": "tiny", "preset": "smoke",
              "seed": 0, "reduced": True, "config": {}, "provenance": {}}
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
    from ipbench.leaderboard.page import _declared_headlines

    assert _declared_headlines("prune(rates=0.5)") == _declared_headlines("prune") != ()

    from ipbench.registry import attacks

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


# --- kills and concurrency (subprocesses) -----------------------------------------------------
def _cli(workdir: Path, *extra: str, env: dict[str, str] | None = None, **kw):
    args = [sys.executable, "-m", "ipbench", *RUN, "-s", "mlock", "--workdir", str(workdir)]
    args += _sets({**TINY, "epochs": "3"})
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([*args, *extra], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


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
    ["checkpoint:baseline:1", "recorded:baseline", "checkpoint:mlock protection:2",
     "marker:protect"],
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


# --- declared ranges ------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_every_plugin_default_config_is_within_its_declared_ranges(preset):
    from ipbench.registry import attacks, schemes
    from ipbench.request import preset_config

    for registry in (schemes, attacks):
        for name in registry.names():
            preset_config(registry.get(name), preset, name)  # checks every field


def test_declared_ranges_do_not_change_a_plugins_code_identity():
    from ipbench.plugins import _parsed

    plain = "from typing import Literal\nx: int = 1\ny: Literal['a'] = 'a'\n"
    declared = (
        "from typing import Annotated, Literal\nfrom annotated_types import Ge\n"
        "x: Annotated[int, Ge(1)] = 1\ny: Literal['a'] = 'a'\n"
    )
    changed = "from typing import Literal\nx: int = 2\ny: Literal['a'] = 'a'\n"
    assert _parsed(plain)[0] == _parsed(declared)[0] != _parsed(changed)[0]


def test_a_plain_dataclass_config_is_checked_by_its_types():
    from dataclasses import dataclass

    from ipbench.config import override

    @dataclass(frozen=True)
    class PluginConfig:  # a third-party plugin's config, no declarations
        steps: int = 10
        rate: float = 0.5
        mode: str = "a"

    assert override(PluginConfig(), {"steps": "3"}).steps == 3
    with pytest.raises(IpbenchError, match="rate=inf is invalid; valid: a finite number"):
        override(PluginConfig(), {"rate": "inf"}, "attack x")
