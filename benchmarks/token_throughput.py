"""Steps/s of ActiveDaemon's token-generator training loop against its bare networks.

bare: encoder + decoder forward/backward and an Adam step on a fixed batch in the loop's
      precision, nothing else: the upper bound for any loop over these networks.
loop variants: ``GeneratorTraining.step`` (the code training runs) on freshly drawn batches at
      full noise and image-loss weight, adding one part at a time: noise layers, SSIM, LPIPS
      (every step, and every k-th step). Target: the full loop within 0.9x of bare.

    python benchmarks/token_throughput.py                              # synthetic images
    python benchmarks/token_throughput.py --data-root ../shared/data --dataset cifar10
    python benchmarks/token_throughput.py --profile                    # op table of a step

Run it alone on the machine: a second job on two cores halves every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("IPBENCH_PROGRESS", "0")

from ipbench.ml.datasets import load_dataset
from ipbench.ml.training import autocast
from ipbench.schemes._poisoning.tokens.bch import IdentityCodec
from ipbench.schemes._poisoning.tokens.generator import GeneratorTraining, TokenConfig
from ipbench.schemes._poisoning.tokens.noise import NoiseConfig


def _time(fn, steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync()
    return steps / (time.perf_counter() - t0)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lpips-images", type=int, default=8, help="LPIPS on this many per batch")
    ap.add_argument("--profile", action="store_true", help="print the op table of 10 full steps")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is lent")
    args = ap.parse_args()
    data = load_dataset(args.dataset, root=args.data_root, download=False)
    x = data.train.x[:5000]
    n_bits = IdentityCodec(10).n_bits
    dev = torch.device(args.device)
    base = TokenConfig(batch_size=args.batch_size, noise=NoiseConfig())
    t = GeneratorTraining(x, n_bits, base, dev, seed=0)
    xb, bits = t.batch()
    print(
        f"{args.dataset} on {dev}: batch {args.batch_size}, precision {t.precision}, threads {torch.get_num_threads()}, "
        f"LPIPS {'real' if t.lpips is not None else 'missing: ' + t.lpips_reason}"
    )

    def bare() -> None:
        with autocast(dev, t.precision):
            res = t.enc(bits, xb.contiguous(memory_format=torch.channels_last)).float()
            logits = t.dec((xb + res).clamp(0, 1).contiguous(memory_format=torch.channels_last))
        loss = F.binary_cross_entropy_with_logits(logits.float(), bits)
        t.opt.zero_grad(set_to_none=True)
        loss.backward()
        t.opt.step()

    def loop(noise: float, w_img: float):
        def run() -> None:
            xb2, bits2 = t.batch()
            t.step(xb2, bits2, noise, w_img)

        return run

    rows = [("bare encoder+decoder (+STN) step", _time(bare, args.steps))]
    rows.append(("loop: secret loss, no noise", _time(loop(0.0, 0.0), args.steps)))
    rows.append(("loop: + noise layers", _time(loop(1.0, 0.0), args.steps)))
    lpips_model, t.lpips = t.lpips, None
    rows.append(("loop: + SSIM + YUV-L2 (no LPIPS)", _time(loop(1.0, 1.0), args.steps)))
    t.lpips = lpips_model
    if t.lpips is not None:
        rows.append(("loop: + SSIM + LPIPS every step", _time(loop(1.0, 1.0), args.steps)))
        t.cfg = dataclasses.replace(t.cfg, lpips_images=args.lpips_images)
        name = f"loop: + SSIM + LPIPS on {args.lpips_images} of {args.batch_size}"
        rows.append((name, _time(loop(1.0, 1.0), args.steps)))
    top = rows[0][1]
    print(f"{'configuration':42s} {'steps/s':>8s} {'ms/step':>8s} {'x bare':>7s}")
    for name, sps in rows:
        print(f"{name:42s} {sps:8.2f} {1000 / sps:8.1f} {sps / top:7.2f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        run = loop(1.0, 1.0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                run()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
