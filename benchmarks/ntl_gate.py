"""Why an NTL run locks or does not: the MMD gate on stored models.

NTL's loss subtracts min(1, alpha KL_aux) x min(1, beta MMD(source, auxiliary)) (``ipbench.schemes.ntl``):
the auxiliary domain is only pushed away once the MMD between patched and plain images' features
is already large. This reads stored NTL runs (and, optionally, the unprotected baseline with each
run's patch), and prints for each: accuracy on patched and on plain test images, the MMD of
``--mmd-images`` patched against as many plain images at the MMD's feature layer, and the gate.

    python benchmarks/ntl_gate.py --workdir RUNS --data-root DATA RUN [RUN ...] [--baseline RUN]

On CIFAR-10 quick (2026-11-26): the grid patch's model gates at 0.55, the 4x4 sticker's at
0.001, and the sticker run did not lock (``docs/schemes.md``, ntl).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from ipbench.ml.datasets import load_dataset
from ipbench.ml.training import to_float_images
from ipbench.plugin.contract import Protected
from ipbench.schemes.ntl import NTL, NTLConfig, feature_module, mmd
from ipbench.store.results import Store


def stored(store: Store, run: str, stage: str) -> Protected:
    rec = store.stage(run, stage)
    if rec is None or not rec.get("artifact"):
        raise SystemExit(f"run {run} has no stored {stage} stage in {store.workdir}")
    return Protected.load(rec["artifact"])


@torch.no_grad()
def gate_row(model: nn.Module, scheme: NTL, xp: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             n_mmd: int) -> str:  # fmt: skip
    """Accuracy on patched ``xp`` and plain ``x``, and the gate with the run's own settings."""
    c = scheme.config
    model = model.eval()
    feats: list[torch.Tensor] = []
    hook = feature_module(model, c.feature_layer).register_forward_hook(
        lambda _m, _a, out: feats.append(out.flatten(1))
    )
    try:
        acc_patched = 100 * (model(xp).argmax(1) == y).float().mean().item()
        f_patched = feats[-1]
        acc_plain = 100 * (model(x).argmax(1) == y).float().mean().item()
        f_plain = feats[-1]
    finally:
        hook.remove()
    d = mmd(f_patched[:n_mmd], f_plain[:n_mmd], c.mmd_kernels, c.mmd_kernel_mul).item()
    return (
        f"patched {acc_patched:.2f}%  plain {acc_plain:.2f}%  MMD {d:.4f}  "
        f"gate min(1, {c.beta:g} MMD) {min(1.0, c.beta * d):.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="stored ntl run ids")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--baseline", help="a run whose unprotected baseline gets each run's patch")
    ap.add_argument("--images", type=int, default=1000, help="test images for the accuracies")
    ap.add_argument("--mmd-images", type=int, default=500)
    args = ap.parse_args()
    store = Store(args.workdir, create=False)
    ds = load_dataset("cifar10", args.data_root)
    x, y = to_float_images(ds.test.x[: args.images]), ds.test.y[: args.images]
    base = stored(store, args.baseline, "baseline").model if args.baseline else None
    for run in args.runs:
        record = store.get_run(run, exact=True)
        if record is None or record.config.get("scheme") != "ntl":
            raise SystemExit(f"run {run} is not a stored ntl run in {store.workdir}")
        scheme = NTL(NTLConfig(**record.config["scheme_config"]))  # the run's own settings
        prot = stored(store, run, "protect")
        # patched as an authorized user sends them: the scheme's own credential
        xp = scheme.authorize(prot, "ntl-gate").transform(x)
        kind = scheme.config.patch
        row = gate_row(prot.model, scheme, xp, x, y, args.mmd_images)
        print(f"{run} ({kind}), protected: {row}")
        if base is not None:
            row = gate_row(base, scheme, xp, x, y, args.mmd_images)
            print(f"{run} ({kind}), its patch on the baseline: {row}")


if __name__ == "__main__":
    main()
