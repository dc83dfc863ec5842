"""Does a scheme's smoke budget hold under any owner key? Each key is a fresh store (its own
random owner key, as a user without ``--demo-key`` gets), one Table I run per store.

Issue 33 asks this of ActiveDaemon: A_pd >= 60 and id_rate >= 50% over 5 random keys. The
table prints each key's fingerprint (public, one-way), Table I, the tracing columns and the
run's wall time, then the mean, the minimum and how many keys meet both floors.

    python benchmarks/smoke_keys.py                      # activedaemon, 5 keys
    python benchmarks/smoke_keys.py --scheme mlock --keys 3 --keep /tmp/keys
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from ipbench import api
from ipbench.core.owner import FINGERPRINT_FILE

COLUMNS = ["A_ad", "A_ud", "A_pd", "A_dec", "id_rate"]


def one_key(scheme: str, workdir: Path, preset: str, dataset: str) -> dict[str, object]:
    """Table I and tracing of one run in a fresh store under ``workdir``."""
    t0 = time.perf_counter()
    res = api.run(scheme, datasets=dataset, presets=preset, attacks="none", workdir=workdir)
    wall = time.perf_counter() - t0
    if res.failed:
        raise SystemExit(f"{scheme} failed under {workdir}: {res.failed[0]}")
    m = res.metrics[res.metrics.stage == "evaluate"].set_index("name").value
    row: dict[str, object] = {"key": (workdir / FINGERPRINT_FILE).read_text().strip()[:8]}
    row |= {c: float(m[c]) if c in m else float("nan") for c in COLUMNS}
    return row | {"wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scheme", default="activedaemon")
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--min-pd", type=float, default=60.0)
    ap.add_argument("--min-id-rate", type=float, default=50.0)
    ap.add_argument("--keep", type=Path, help="keep the stores here (default: a temporary folder)")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="ipbench-keys-"))
    try:
        rows = [
            one_key(args.scheme, root / f"key{i}", args.preset, args.dataset)
            for i in range(args.keys)
        ]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    stats = df[COLUMNS].agg(["mean", "min"])
    print(stats.to_string(float_format=lambda v: f"{v:.2f}"))
    ok = (df.A_pd >= args.min_pd) & (df.id_rate.fillna(0) >= args.min_id_rate)
    print(
        f"{int(ok.sum())} of {len(df)} keys meet A_pd >= {args.min_pd:g} and id_rate >= "
        f"{args.min_id_rate:g}%; mean wall {df.wall_s.mean():.1f} s per run"
    )


if __name__ == "__main__":
    main()
