"""What a command's start costs: wall and CPU seconds of ``python -m ipbench list`` (every
plugin registered, nothing trained), best of N, and which heavy packages it imported. The
tests start the CLI in ~30 subprocesses, and a user pays it on every command.

    python benchmarks/cli_startup.py            # 5 starts
    python benchmarks/cli_startup.py --runs 10
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

HEAVY = ("torchvision", "timm", "matplotlib", "ray", "lpips", "scipy")


def one_start() -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``ipbench list`` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ipbench", "list"], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported_heavy() -> list[str]:
    code = (
        "import sys; from typer.testing import CliRunner; from ipbench.cli.main import app; "
        "CliRunner().invoke(app, ['list']); "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    times = [one_start() for _ in range(args.runs)]
    wall, cpu = min(t[0] for t in times), min(t[1] for t in times)
    print(f"ipbench list: best of {args.runs}: wall {wall:.2f} s, cpu {cpu:.2f} s")
    print("heavy packages imported:", ", ".join(imported_heavy()) or "none")


if __name__ == "__main__":
    main()
