"""Nothing wrong gets in (issue 21): a table of bad inputs, each exit code 2, one line naming
the value, and nothing recorded; every plugin's defaults within its declared ranges."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import RUN
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.core.errors import IpbenchError


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
    import ipbench.cli.main as cli

    def boom() -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1


def test_main_reports_a_bug_with_traceback_in_a_subprocess(tmp_path):
    code = (
        "import ipbench.cli.main as c\n"
        "def boom():\n    raise ZeroDivisionError('a bug')\n"
        "c.app = boom\nc.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr
    assert "please report it" in done.stderr.replace("\n", " ")



# --- declared ranges ------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_every_plugin_default_config_is_within_its_declared_ranges(preset):
    from ipbench.core.registry import attacks, schemes
    from ipbench.engine.request import preset_config

    for registry in (schemes, attacks):
        for name in registry.names():
            preset_config(registry.get(name), preset, name)  # checks every field


def test_declared_ranges_do_not_change_a_plugins_code_identity():
    from ipbench.core.identity import _parsed

    plain = "from typing import Literal\nx: int = 1\ny: Literal['a'] = 'a'\n"
    declared = (
        "from typing import Annotated, Literal\nfrom annotated_types import Ge\n"
        "x: Annotated[int, Ge(1)] = 1\ny: Literal['a'] = 'a'\n"
    )
    changed = "from typing import Literal\nx: int = 2\ny: Literal['a'] = 'a'\n"
    assert _parsed(plain)[0] == _parsed(declared)[0] != _parsed(changed)[0]


def test_a_plain_dataclass_config_is_checked_by_its_types():
    from dataclasses import dataclass

    from ipbench.core.config import override

    @dataclass(frozen=True)
    class PluginConfig:  # a third-party plugin's config, no declarations
        steps: int = 10
        rate: float = 0.5
        mode: str = "a"

    assert override(PluginConfig(), {"steps": "3"}).steps == 3
    with pytest.raises(IpbenchError, match="rate=inf is invalid; valid: a finite number"):
        override(PluginConfig(), {"rate": "inf"}, "attack x")
