"""One token-generator trajectory on a dataset's owner split, with its evaluation history,
then what the trained token costs and survives (docs/activedaemon.md's tables).

    python benchmarks/token_trajectory.py --data-root ../shared/data --steps 15000 \
        --noise-level 1 --image-loss paper --out runs/token-A

Checkpoints go to OUT/trajectory, so a killed run resumes where it stopped. Afterwards, on
500 test images with one fresh identity each: PSNR, bit accuracy (clean and under the noise
layers), id_rate at several strengths, and id_rate after JPEG.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import string
from pathlib import Path

import torch

os.environ.setdefault("IPBENCH_PROGRESS", "0")

from ipbench.ml.datasets import load_dataset
from ipbench.ml.datasets.base import make_splits
from ipbench.schemes._poisoning.tokens.bch import IdentityCodec
from ipbench.schemes._poisoning.tokens.generator import (
    TokenConfig,
    TokenGenerator,
    train_token_generator,
)
from ipbench.schemes._poisoning.tokens.noise import NoiseConfig, _jpeg, distort


def costs(gen: TokenGenerator, x: torch.Tensor, codec: IdentityCodec, level: float) -> None:
    rng = random.Random(0)
    users = ["".join(rng.choice(string.ascii_letters) for _ in range(8)) for _ in x]
    bits = codec.encode_many(users)

    def score(images: torch.Tensor) -> tuple[float, float]:
        probs = gen.decode_bits(images)
        acc = 100 * ((probs > 0.5).float() == bits).float().mean().item()
        ok = sum(d.identity == u for d, u in zip(codec.decode_many(probs), users, strict=True))
        return acc, 100 * ok / len(users)

    print(f"{'strength':>8s} {'PSNR':>6s} {'bit acc':>8s} {'noisy':>6s} {'id_rate':>8s}")
    for strength in (1.0, 0.75, 0.5, 0.25):
        gen.strength = strength
        xa = (gen.authorize(x, bits) * 255).round() / 255
        psnr = (10 * torch.log10(1 / (xa - x).pow(2).flatten(1).mean(1))).mean().item()
        acc, ids = score(xa)
        noisy, _ = score(
            distort(xa, NoiseConfig(), max(level, 1.0), torch.Generator().manual_seed(1))
        )
        print(f"{strength:8.2f} {psnr:6.2f} {acc:8.1f} {noisy:6.1f} {ids:8.1f}")
    gen.strength = 1.0
    xa = (gen.authorize(x, bits) * 255).round() / 255
    for q in (95, 75, 50):
        acc, ids = score(_jpeg(xa, q))
        print(f"JPEG {q}: bit acc {acc:.1f}, id_rate {ids:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=15_000)
    ap.add_argument("--image-loss", choices=("paper", "reference"), default="paper")
    ap.add_argument("--noise-level", type=float, default=1.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("ipbench.tokens.generator").setLevel(logging.DEBUG)  # one line per eval
    ds = load_dataset(args.dataset, root=args.data_root, download=False)
    owner = make_splits(ds, args.seed, 0.1).owner
    codec = IdentityCodec(10)
    cfg = TokenConfig(
        steps=args.steps, batch_size=32, secret_only_steps=200, secret_gate_acc=0.9,
        image_ramp_steps=1500, noise_ramp_steps=1000, image_loss=args.image_loss,
        noise_level=args.noise_level,
    )  # fmt: skip
    gen, stats = train_token_generator(
        owner.x, codec.n_bits, cfg, torch.device("cpu"), args.seed,
        checkpoint_dir=args.out / "trajectory",
    )  # fmt: skip
    gen.save(args.out)
    (args.out / "history.json").write_text(json.dumps(stats, indent=1, default=str))
    print(
        f"{stats['steps']} steps in {stats['wall_s']:.0f} s (resumed from {stats['resumed_from_step']})"
    )
    costs(gen, ds.test.x[:500].float() / 255, codec, args.noise_level)


if __name__ == "__main__":
    main()
