"""What ANP's mask loop costs per iteration in each layout and precision (docs/results.md, the
campaign's cuts): fp32 on the network as built (the loop before 2026-12-07), fp32 on a
channels-last copy (the default since), and bf16 autocast (``precision=preset``).

Random weights and images: the cost of an iteration does not depend on what the network learnt.

    python benchmarks/anp_precision.py                      # whitenet, 20 iterations
    OMP_NUM_THREADS=1 python benchmarks/anp_precision.py --iterations 50
"""

from __future__ import annotations

import argparse
import contextlib
import time
from unittest import mock

import torch

from ipbench.attacks import anp
from ipbench.attacks.anp import ANPConfig, learn_masks
from ipbench.ml.models import ModelSpec, build_model
from ipbench.ml.training import bf16_supported


def seconds_per_iteration(model_name: str, mode: str, iterations: int, images: int) -> float:
    """Seconds per mask step, one timing of ``iterations`` steps. ``fp32-as-built`` keeps the
    network in its built layout (the batches are still channels-last, as the loop makes them)."""
    spec = ModelSpec(model_name, 10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (images,), generator=g)
    model = build_model(spec)
    # the loop before 2026-12-07 ran on the network as built: undo the channels-last copy
    layout = (
        mock.patch.object(anp.torch.nn.Module, "to", lambda m, *a, **k: m)
        if mode == "fp32-as-built"
        else contextlib.nullcontext()
    )
    precision = "bf16" if mode == "bf16" else "fp32"
    start = time.perf_counter()
    with layout:
        learn_masks(model, x, y, ANPConfig(iterations=iterations), 0, precision)
    return (time.perf_counter() - start) / iterations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="whitenet")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--images", type=int, default=500, help="ANP's clean set (quick: 500)")
    args = ap.parse_args()
    modes = ["fp32-as-built", "fp32-channels-last"]
    if bf16_supported(torch.device("cpu")):
        modes.append("bf16")
    print(f"{args.model}, {args.iterations} iterations, torch threads {torch.get_num_threads()}")
    for mode in modes:
        s = seconds_per_iteration(args.model, mode, args.iterations, args.images)
        print(f"{mode:>20}: {s:.3f} s/iteration")


if __name__ == "__main__":
    main()
