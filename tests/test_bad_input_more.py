"""More bad inputs (issue 34): each exit code 2, one line naming the value, nothing recorded;
user text never read as markup; reading commands work on a read-only store. The table of
tests/test_bad_input.py continued (that file is near the size limit)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import _file, _folder, _npz, _recorded_runs
from tiny_runs import RUN
from typer.testing import CliRunner

from ipbench.cli.main import app


def _run(*args: str) -> list[str]:
    return [*RUN, "-s", "none", *args]  # a later -s wins


def _config(tmp: Path, text: str | bytes) -> list[str]:
    path = tmp / "exp.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return ["run", "--device", "cpu", "--config", str(path)]


EXP = "schemes: [none]\npresets: [smoke]\ndatasets: ['synthetic:600']\nattacks: none\n"


def _png(width: int, height: int, pixels: bool = False) -> bytes:
    """A 1-bit PNG of ``width`` x ``height`` black pixels, a few kB however large (a
    decompression bomb); ``pixels=False`` leaves the pixel data out (Pillow refuses it at
    open anyway when it is over twice its limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(bytes(1 + (width + 7) // 8) * height)) if pixels else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _huge_npz(tmp: Path) -> str:
    """x_train's header claims 10**8 32x32 RGB images (286 GiB); the file holds none."""
    path = tmp / "huge.npz"
    small = {"y_train": np.arange(40) % 4, "x_test": np.zeros((12, 32, 32, 3), np.uint8)}
    small["y_test"] = np.arange(12) % 4
    with zipfile.ZipFile(path, "w") as z:
        head = io.BytesIO()
        header = {"descr": "|u1", "fortran_order": False, "shape": (10**8, 32, 32, 3)}
        np.lib.format.write_array_header_1_0(head, header)
        z.writestr("x_train.npy", head.getvalue())
        for key, arr in small.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            z.writestr(f"{key}.npy", buf.getvalue())
    return f"npz:{path}"


def _loop_folder(tmp: Path) -> str:
    spec = _folder(tmp)
    os.symlink("..", tmp / "imgs" / "train" / "a" / "loop")
    return spec


def _store(tmp: Path) -> Path:
    from ipbench.store.results import Store

    Store(tmp / "wd").close()
    return tmp / "wd"


def _make(tmp: Path, rel: str, folder: bool) -> Path:
    path = tmp / "wd" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir() if folder else path.write_bytes(b"x")
    return path


U64 = np.full(40, 2**64 - 1, dtype=np.uint64)

# (id, args builder (tmp -> whole command line but --workdir), text the one line must contain)
# fmt: off
BAD: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("config binary", lambda t: _config(t, b"\x00\x01\xff\xfe\x80garbage"), "exp.yaml"),
    ("config UTF-16", lambda t: _config(t, EXP.encode("utf-16")), "UTF-8"),
    ("config is a folder", lambda t: ["run", "--config", str(t)], "is a folder"),
    ("config duplicate key", lambda t: _config(t, EXP + "schemes: [mlock]\n"), "'schemes'"),
    ("config duplicate override",
     lambda t: _config(t, EXP + "overrides:\n  epochs: 1\n  epochs: 2\n"), "'epochs'"),
    ("config two spellings",
     lambda t: _config(t, EXP + "overrides:\n  epochs: 1\n  train.epochs: 2\n"), "twice"),
    ("config sexagesimal", lambda t: _config(t, EXP + "overrides:\n  epochs: 1:30\n"), "1:30"),
    ("npz not a zip", lambda t: _run("-d", "npz:" + _file(t, "d.npz", b"not a zip" * 9)), "d.npz"),
    ("npz broken zip", lambda t: _run("-d", "npz:" + _file(t, "d.npz", b"PK\x03\x04" + b"\0" * 40)),
     "d.npz"),
    ("npz is one .npy", lambda t: _run("-d", "npz:" + _file(t, "d.npz", _npy_bytes())), "d.npz"),
    ("npz header 286 GiB", lambda t: _run("-d", _huge_npz(t)), "286"),
    ("npz uint64 label", lambda t: _run("-d", _npz(t, y_train=U64)), str(2**64 - 1)),
    ("imagefolder size 0", lambda t: _run("-d", _folder(t)[: -len(":16")] + ":0"), "'0'"),
    ("imagefolder size ²", lambda t: _run("-d", _folder(t)[: -len(":16")] + ":²"), "'²'"),
    ("imagefolder bomb",
     lambda t: _run("-d", _folder(t, bad={"train/a/0.png": _png(30000, 30000)})), "0.png"),
    ("imagefolder bomb warning",
     lambda t: _run("-d", _folder(t, bad={"val/b/2.png": _png(10000, 10000, pixels=True)})), "2.png"),
    ("imagefolder symlink loop", lambda t: _run("-d", _loop_folder(t)), "loop"),
    ("synthetic:999999999999", lambda t: _run("-d", "synthetic:999999999999"), "999999999999"),
    ("lr=1e300", lambda t: _run("--set", "lr=1e300"), "lr=1e+300"),
    ("epochs=1e23", lambda t: _run("--set", "epochs=1e23"), "epochs="),
    ("epochs=10**30", lambda t: _run("--set", f"epochs={10**30}"), str(10**30)),
    ("set twice, two spellings",
     lambda t: _run("--set", "epochs=1", "--set", "train.epochs=2"), "twice"),
    ("workdir ''", lambda t: _run("--workdir", ""), "--workdir ''"),
    ("artifacts is a file",
     lambda t: _run("--workdir", str(_make(t, "artifacts", False).parent)),
     "artifacts"),
    ("owner.key is a folder",
     lambda t: _run("--workdir", str(_make(t, "owner/owner.key", True).parents[1])),
     "owner.key"),
    ("store is a folder",
     lambda t: _run("--workdir", str(_make(t, "ipbench.sqlite", True).parent)),
     "is a folder"),
    ("show: store is a folder",
     lambda t: ["show", "--workdir", str(_make(t, "ipbench.sqlite", True).parent)], "is a folder"),
    ("markup in --scheme", lambda t: _run("-s", "x[/]"), "'x[/]'"),
    ("markup in --set", lambda t: _run("--set", "x[/]=1"), "'x[/]'"),
    ("markup in a path", lambda t: _run("-d", "npz:/nonexistent/[b]x[/].npz"),
     "[b]x[/].npz"),
    ("markup in show", lambda t: ["show", "x[/]", "--workdir", str(_store(t))], "'x[/]'"),
]
# fmt: on


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 4), np.uint8))
    return buf.getvalue()


@pytest.mark.parametrize(("build", "named"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_and_records_nothing(tmp_path, monkeypatch, build, named):
    monkeypatch.chdir(tmp_path)  # a run that wrongly starts writes here, not in the checkout
    workdir = tmp_path / "wd"
    args = build(tmp_path)
    if "--workdir" not in args:
        args += ["--workdir", str(workdir)]
    res = CliRunner().invoke(app, args)
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert named in lines[0], lines[0]
    assert _recorded_runs(workdir) == 0
    assert not (tmp_path / "ipbench.sqlite").exists()  # nor a store in the current folder


def test_yaml_is_read_as_yaml_1_2():
    from ipbench.engine.expfile import read_yaml

    data = read_yaml("a: 1:30\nb: 0o17\nc: yes\nd: 017\ne: true\nf: .inf\n", "x.yaml")
    assert data == {"a": "1:30", "b": 15, "c": "yes", "d": 17, "e": True, "f": float("inf")}


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.mark.parametrize("command", [["runs"], ["show", "last"], ["leaderboard", "--no-tokens"]])
def test_reading_commands_work_on_a_read_only_store(finished, command):
    """As another user where the tests run as root (root writes anywhere)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop to another user")
    base = Path(tempfile.mkdtemp(prefix="ipbench-ro-"))
    try:
        base.chmod(0o755)
        wd = base / "wd"
        shutil.copytree(finished[0], wd)
        (base / "out").mkdir(mode=0o777)
        (base / "out").chmod(0o777)
        _read_only(wd)
        argv = [sys.executable, "-m", "ipbench", *command, "--workdir", str(wd)]
        if command[0] == "leaderboard":
            argv += ["--out", str(base / "out" / "board")]
        if os.geteuid() == 0:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        env = {**os.environ, "HOME": str(base / "out"), "MPLCONFIGDIR": str(base / "out")}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=base / "out")
        assert done.returncode == 0, done.stderr[-3000:]
        assert sorted(p.name for p in wd.iterdir()) == sorted(p.name for p in finished[0].iterdir())
    finally:
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)
