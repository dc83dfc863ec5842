"""Shared fixtures. Tests never touch the network or ../shared: all data is made here."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ["IPBENCH_PROGRESS"] = "0"
# every epoch: the kill-and-resume tests stop at named epoch checkpoints
os.environ["IPBENCH_CHECKPOINT_EVERY_S"] = "0"
os.environ["IPBENCH_OFFLINE"] = "1"
# Every store a test makes gets the same owner key, so the secrets (and every number that
# depends on them) are the same from one test session to the next (ipbench.core.owner).
os.environ["IPBENCH_OWNER_KEY"] = "5eed" * 16
# Pretrained weights the user installed stay out of the tests (LPIPS is "missing" everywhere),
# except in the one test that checks them by their path.
from ipbench.ml.weights import lpips_weights_path

os.environ["IPBENCH_REAL_LPIPS_WEIGHTS"] = str(lpips_weights_path())
_EMPTY_CACHE = tempfile.mkdtemp(prefix="ipbench-test-cache-")
os.environ["IPBENCH_CACHE"] = _EMPTY_CACHE
os.environ["TORCH_HOME"] = str(Path(_EMPTY_CACHE) / "torch")


def write_fake_cifar(root: Path, n_train: int = 50, n_test: int = 20, classes: int = 10) -> Path:
    """A tiny ``cifar-10-batches-py`` (or ``cifar-100-python``) in the real pickle layout."""
    rng = np.random.default_rng(0)
    if classes == 10:
        folder, train_files, test_files, label_key = (
            root / "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "labels",
        )
        meta_file, meta = "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}
    else:
        folder, train_files, test_files, label_key = (
            root / "cifar-100-python",
            ["train"],
            ["test"],
            "fine_labels",
        )
        meta_file, meta = "meta", {"fine_label_names": [f"f{i}" for i in range(classes)]}
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, n: int) -> None:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(i % classes) for i in range(n)]
        with open(folder / name, "wb") as fh:
            pickle.dump(
                {"data": data, label_key: labels, "filenames": [f"{i}.png" for i in range(n)]}, fh
            )

    for name in train_files:
        dump(name, n_train // len(train_files))
    for name in test_files:
        dump(name, n_test)
    with open(folder / meta_file, "wb") as fh:
        pickle.dump(meta, fh)
    return folder


@pytest.fixture
def fake_cifar_root(tmp_path: Path) -> Path:
    write_fake_cifar(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _fresh_dataset_cache():
    from ipbench.ml.datasets import clear_cache

    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="session")
def activeguard_smoke(tmp_path_factory):
    """A watermarked, fingerprinted smoke ActiveGuard deployment and an unwatermarked model
    with the same recipe: (scheme, protected, plain, splits, trainer). Built once, shared by
    the scheme's tests and the attacks'."""
    import torch

    from ipbench.core.registry import presets
    from ipbench.engine.runner import model_spec_for
    from ipbench.ml.datasets import load_dataset, make_splits
    from ipbench.ml.models import build_model
    from ipbench.ml.training import Trainer
    from ipbench.schemes.activeguard import ActiveGuard, ActiveGuardConfig
    from ipbench.store.cache import StageCache

    ds = load_dataset("synthetic")
    splits = make_splits(ds, 0, 0.2, 1500, 500)
    spec = model_spec_for("tiny", ds)
    preset = presets.get("smoke")
    trainer = Trainer("cpu")
    torch.manual_seed(0)
    plain = build_model(spec)
    trainer.fit(plain, splits.owner.x, splits.owner.y, preset.train, seed=0)
    cache = StageCache(tmp_path_factory.mktemp("cache"))
    ctx = run_context(splits, spec, preset, trainer, lambda: plain, StageCache(cache.root))
    scheme = ActiveGuard(ActiveGuardConfig(cw_steps=200, fp_retries=3, fp_trials=2, wm_lambda=0.1))
    return scheme, scheme.protect(ctx), plain, splits, trainer


def run_context(splits, spec, preset, trainer, baseline=None, cache=None, seed=0):
    """The run context the runner builds, from parts a test made itself."""
    import torch

    from ipbench.plugin.context import RunContext, ThiefView

    return RunContext(
        spec, preset, seed, torch.device("cpu"), trainer, ThiefView(splits.attacker, splits.test),
        owner_split=splits.owner, baseline=baseline, cache=cache, key_seed=1_234_567 + seed,
    )  # fmt: skip


@pytest.fixture(scope="session")
def sticker_store(tmp_path_factory) -> Path:
    """One store for the smoke M-LOCK and ADIP deployments that several modules test and
    attack (the same request, so each is trained once per session)."""
    return tmp_path_factory.mktemp("sticker-store")


# The visible-token schemes' smoke deployments, as the lock tests and the attack tests request
# them: the 4x4 sticker covers 1.6% of the image, so the tiny net learns the task first and keys
# on the sticker only later (measured: A_pd 0-17 after 8 epochs, 87 after 20); M-LOCK gets 20
# epochs of protection training (the baseline keeps the preset's 4), ADIP 8.
STICKER_EPOCHS = {"adip": "8", "mlock": "20"}


@pytest.fixture(scope="session")
def scheme_smoke(tmp_path_factory):
    """``run(scheme, **overrides) -> (evaluate metrics, wall seconds)``: one smoke-preset run
    through the runner (no attacks), sharing one workdir so the baseline is trained once."""
    import time

    from ipbench.engine.runner import Runner, RunRequest

    workdir = tmp_path_factory.mktemp("scheme-smoke")
    done: dict[tuple, tuple[dict[str, float], float]] = {}

    def run(scheme: str, **overrides: str) -> tuple[dict[str, float], float]:
        key = (scheme, tuple(sorted(overrides.items())))
        if key not in done:
            req = RunRequest(
                scheme=scheme, preset="smoke", workdir=str(workdir), device="cpu",
                attacks="none", overrides=dict(overrides),
            )  # fmt: skip
            t0 = time.perf_counter()
            out = Runner(req, log=lambda _m: None).run()
            values = {m["name"]: m["value"] for m in out.metrics if m["stage"] == "evaluate"}
            done[key] = (values, time.perf_counter() - t0)
        return done[key]

    return run


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny finished run (baseline, protect, evaluate), copied by each corruption test."""
    from tiny_runs import run_tiny, values

    wd = tmp_path_factory.mktemp("finished") / "wd"
    return wd, values(run_tiny(wd))
