"""What verifying stage digests costs: sha256 of the checkpoints a CIFAR-10 run writes.

Each network of a preset is saved as a stage saves it (safetensors), then a stage folder
holding it is written and read back through ``StageCache`` (manifest on write, full check on
read, as a run does once per stage per process). Prints the file size, the median seconds to
hash it and to verify a folder holding it, and that time as a share of a CIFAR-10 ``quick``
baseline's training time (``--baseline-s``; default: the 742.8 s README's campaign measured on
the shared 2-core CPU).

    python benchmarks/digest_cost.py                     # whitenet (quick), resnet18 (paper)
    python benchmarks/digest_cost.py --repeats 20 --baseline-s 600
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ipbench.core.integrity import sha256_file
from ipbench.core.tensorio import write_tensors
from ipbench.ml.models import ModelSpec, build_model
from ipbench.store.cache import StageCache

CIFAR = {"num_classes": 10, "in_channels": 3, "image_size": 32}
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="whitenet,resnet18")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--baseline-s", type=float, default=742.8)
    args = ap.parse_args()
    print(f"{'model':10} {'MB':>8} {'hash s':>9} {'verify s':>9} {'% of baseline':>14}")
    for name in args.models.split(","):
        hash_s, verify_s, mb = measure(name, args.repeats)
        share = 100 * verify_s / args.baseline_s
        print(f"{name:10} {mb:8.2f} {hash_s:9.4f} {verify_s:9.4f} {share:13.4f}%")


def measure(name: str, repeats: int) -> tuple[float, float, float]:
    """(seconds to hash, seconds to verify its stage folder, MB) for network ``name``."""
    spec = ModelSpec(name, CIFAR["num_classes"], CIFAR["in_channels"], CIFAR["image_size"],
                     MEAN, STD)  # fmt: skip
    model = build_model(spec)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "artifacts"
        folder, _ = StageCache(root).compute(
            "baseline", "k", lambda work: write_tensors(model.state_dict(), work / "m.st")
        )
        path = folder / "m.st"
        hash_s = median_s(lambda: sha256_file(path), repeats)
        # a fresh cache each time: what a new process pays to read the stage once
        verify_s = median_s(lambda: StageCache(root).lookup("baseline", "k"), repeats)
        return hash_s, verify_s, path.stat().st_size / 2**20


if __name__ == "__main__":
    main()
