from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_fake_cifar
from PIL import Image

from ipbench.core.errors import (
    CorruptArtifactError,
    DatasetNotFoundError,
    IpbenchError,
    UnknownNameError,
)
from ipbench.ml.datasets import load_dataset, make_splits
from ipbench.ml.datasets.synthetic import generate


def test_synthetic_is_deterministic_balanced_and_uint8():
    a, b = generate(200, seed=3), generate(200, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, generate(200, seed=4).x)
    assert a.x.dtype == torch.uint8 and a.x.shape == (200, 3, 32, 32)
    assert torch.bincount(a.y, minlength=10).tolist() == [20] * 10
    ds = load_dataset("synthetic:500")
    assert (
        ds.num_classes == 10
        and len(ds.train) == 500
        and len(ds.test) == 100
        and ds.shape == (3, 32, 32)
    )


def test_dataset_is_loaded_once_and_cached():
    assert load_dataset("synthetic:100") is load_dataset("synthetic:100")


def test_cifar10_reader(fake_cifar_root: Path):
    ds = load_dataset("cifar10", str(fake_cifar_root))
    assert ds.num_classes == 10 and ds.classes[0] == "c0"
    assert ds.train.x.shape == (50, 3, 32, 32) and ds.test.x.shape == (20, 3, 32, 32)
    # The layout is red plane, green plane, blue plane of row-major 32x32 pixels.
    with open(fake_cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh)
    assert torch.equal(ds.train.x[0, 1].flatten(), torch.from_numpy(raw["data"][0, 1024:2048]))
    assert ds.train.y[:3].tolist() == raw["labels"][:3]


def test_cifar100_reader(tmp_path: Path):
    write_fake_cifar(tmp_path, n_train=40, n_test=10, classes=100)
    ds = load_dataset("cifar100", str(tmp_path))
    assert ds.num_classes == 100
    assert len(ds.train) == 40 and ds.classes[0] == "f0"


def test_missing_dataset_is_one_clear_error(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", str(tmp_path / "nowhere"))
    msg = str(info.value)
    assert "cifar-10-batches-py" in msg and "nowhere" in msg and "--data-root" in msg
    assert "\n" not in msg


def test_corrupt_and_malicious_pickles_are_refused(fake_cifar_root: Path):
    batch = fake_cifar_root / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:100])  # truncated
    with pytest.raises(CorruptArtifactError, match="data_batch_2"):
        load_dataset("cifar10", str(fake_cifar_root))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    batch.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CorruptArtifactError, match=r"refusing to load global builtins\.print"):
        load_dataset("cifar10", str(fake_cifar_root))


def test_cifar_wrong_shape_is_reported(fake_cifar_root: Path):
    batch = fake_cifar_root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}))
    with pytest.raises(CorruptArtifactError, match=r"expected data of shape \(N, 3072\)"):
        load_dataset("cifar10", str(fake_cifar_root))


def _write_idx(path: Path, arr: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_mnist_reader(tmp_path: Path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    ds = load_dataset("mnist", str(tmp_path))
    assert ds.train.x.shape == (30, 1, 28, 28) and ds.test.x.shape == (10, 1, 28, 28)
    assert ds.train.y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_gtsrb_reader(tmp_path: Path):
    base = tmp_path / "gtsrb" / "GTSRB"
    rng = np.random.default_rng(0)
    for cls in range(3):
        folder = base / "Training" / f"{cls:05d}"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40 + i, 37, 3), dtype=np.uint8)).save(
                folder / f"{i}.ppm"
            )
    test = base / "Final_Test" / "Images"
    test.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (30, 33, 3), dtype=np.uint8)).save(
            test / f"{i:05d}.ppm"
        )
        rows.append(f"{i:05d}.ppm;33;30;0;0;33;30;{i % 3}")
    (tmp_path / "gtsrb" / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset("gtsrb", str(tmp_path))
    assert ds.train.x.shape == (6, 3, 32, 32) and ds.test.x.shape == (4, 3, 32, 32)
    assert sorted(ds.train.y.tolist()) == [0, 0, 1, 1, 2, 2] and ds.test.y.tolist() == [0, 1, 2, 0]
    assert ds.num_classes == 43


def test_gtsrb_missing_test_split_is_named(tmp_path: Path):
    (tmp_path / "gtsrb" / "GTSRB" / "Training").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"GT-final_test\.csv"):
        load_dataset("gtsrb", str(tmp_path))


def test_npz_reader_accepts_nhwc_floats(tmp_path: Path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path, x_train=rng.random((12, 16, 16, 3)).astype(np.float32), y_train=np.arange(12) % 4,
        x_test=rng.integers(0, 256, (5, 3, 16, 16), dtype=np.uint8), y_test=np.arange(5) % 4,
    )  # fmt: skip
    ds = load_dataset(f"npz:{path}")
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape == (12, 3, 16, 16)
    assert ds.test.x.shape == (5, 3, 16, 16) and ds.num_classes == 4


def test_npz_missing_arrays_are_named(tmp_path: Path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(IpbenchError, match="missing arrays y_train, x_test, y_test"):
        load_dataset(f"npz:{path}")
    with pytest.raises(DatasetNotFoundError, match="no file"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


def test_imagefolder_reader(tmp_path: Path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / "imgs" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(
                    folder / f"{i}.png"
                )
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs'}:24")
    assert ds.train.x.shape == (6, 3, 24, 24) and ds.classes == ("cat", "dog") and len(ds.test) == 6


def test_unknown_dataset_lists_choices():
    with pytest.raises(UnknownNameError, match="valid datasets: cifar10, cifar100"):
        load_dataset("imagenet42")


def test_splits_are_disjoint_and_deterministic():
    ds = load_dataset("synthetic:1000")
    a = make_splits(ds, seed=1, attacker_fraction=0.2)
    b = make_splits(ds, seed=1, attacker_fraction=0.2)
    c = make_splits(ds, seed=2, attacker_fraction=0.2)
    assert torch.equal(a.owner_index, b.owner_index) and not torch.equal(
        a.owner_index, c.owner_index
    )
    assert len(a.attacker) == 200 and len(a.owner) == 800
    assert not set(a.owner_index.tolist()) & set(a.attacker_index.tolist())
    capped = make_splits(ds, seed=1, attacker_fraction=0.2, max_train=100, max_test=50)
    assert len(capped.owner) == 100 and len(capped.test) == 50
    with pytest.raises(IpbenchError, match="attacker_fraction"):
        make_splits(ds, seed=1, attacker_fraction=1.5)


def test_patches_are_natural_crops_deterministic_and_labelled_by_photograph():
    from ipbench.ml.datasets.patches import PHOTOGRAPHS, crops, load_photographs

    photos = load_photographs()
    assert len(photos) == len(PHOTOGRAPHS) and all(p.shape[0] == 3 for p in photos)
    assert max(min(p.shape[1:]) for p in photos) == 512  # the retina, capped
    a, b = crops(photos, 300, 32, seed=5), crops(photos, 300, 32, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, crops(photos, 300, 32, seed=6).x)
    assert a.x.dtype == torch.uint8 and a.x.shape == (300, 3, 32, 32)
    assert set(a.y.tolist()) == set(range(len(PHOTOGRAPHS)))
    # photographs, not noise: neighbouring pixels agree far more than across the image
    xf = a.x.float()
    assert (xf[..., 1:] - xf[..., :-1]).abs().mean() < 0.3 * (xf - xf.roll(16, -1)).abs().mean()
    ds = load_dataset("patches:40:16")
    assert ds.train.x.shape == (40, 3, 16, 16) and ds.num_classes == len(PHOTOGRAPHS)
    assert ds.classes[0] == "astronaut"


def test_patches_without_scikit_image_or_with_a_bad_size_is_one_clear_error(monkeypatch):
    import importlib.util

    from ipbench.ml.datasets import patches

    for arg, message in (("x", "needs integers"), ("5", "N >= 17"), ("100:4", "SIZE >= 8")):
        with pytest.raises(IpbenchError, match=message):
            patches.parse_arg(arg)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(IpbenchError, match="pip install scikit-image"):
        patches.load_photographs()
